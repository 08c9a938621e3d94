//! Settings, read once at start-up. Every setting here is documented in the README.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use movielake_core::{ContractError, ContractSet};

use crate::lake::{AzureAuth, AzureBlobLake, Lake, LakeError, LocalLake};

include!(concat!(env!("OUT_DIR"), "/embedded_contracts.rs"));

/// The lake every container lives in.
pub const CONTAINERS: &[&str] = &["bronze", "silver", "quarantine", "gold", "ops"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("MOVIELAKE_LAKE={0:?} is not a lake location")]
    BadLake(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot read contracts from {dir}: {message}")]
    ContractsUnreadable { dir: String, message: String },
    #[error(transparent)]
    Contract(#[from] ContractError),
}

impl ConfigError {
    pub fn hint(&self) -> &'static str {
        match self {
            ConfigError::BadLake(_) => {
                "use a folder (./lake, file:///data/lake), https://<account>.blob.core.windows.net, or Azurite's http://127.0.0.1:10000/devstoreaccount1"
            }
            ConfigError::Lake(_) => "check the lake URL and that this identity may read and write blobs",
            ConfigError::ContractsUnreadable { .. } => {
                "point MOVIELAKE_CONTRACTS (or --contracts) at the folder holding <dataset>.toml files"
            }
            ConfigError::Contract(_) => "fix the contract file at the line shown; nothing was processed",
        }
    }
}

/// Opens the lake named by `location` (`MOVIELAKE_LAKE`); `None` means the local `./lake`.
/// `sas` (`MOVIELAKE_LAKE_SAS`) signs requests to a blob lake instead of the managed identity.
/// On Azurite's development account the containers are created if missing (in Azure, Terraform
/// creates them and the Function's identity is not allowed to).
pub async fn open_lake(location: Option<&str>, sas: Option<&str>) -> Result<Arc<dyn Lake>, ConfigError> {
    let location = location.map(str::trim).filter(|l| !l.is_empty()).unwrap_or("./lake");
    if location.starts_with("https://") || location.starts_with("http://") {
        let auth = match sas {
            Some(sas) if !sas.trim().is_empty() => AzureAuth::Sas(sas.trim().trim_start_matches('?').to_string()),
            _ if location.contains("/devstoreaccount1") => AzureAuth::AzuriteDevKey,
            _ => AzureAuth::TokenCredential,
        };
        let is_azurite = matches!(auth, AzureAuth::AzuriteDevKey);
        let lake = AzureBlobLake::new(location, auth)?;
        if is_azurite {
            // Not fatal: the handler must come up (and answer 500s) even while storage is down.
            if let Err(e) = lake.ensure_containers(CONTAINERS).await {
                tracing::warn!(error = %e, "could not create the lake containers on Azurite");
            }
        }
        return Ok(Arc::new(lake));
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(ConfigError::BadLake(location.to_string()));
    }
    let folder = location.strip_prefix("file://").unwrap_or(location);
    if folder.is_empty() {
        return Err(ConfigError::BadLake(location.to_string()));
    }
    Ok(Arc::new(LocalLake::new(folder)))
}

/// Loads every `*.toml` of `dir`; without a folder, `./contracts` if present, else the copies
/// embedded at build time. One malformed file refuses them all.
pub fn load_contracts(dir: Option<&Path>) -> Result<ContractSet, ConfigError> {
    let dir: Option<PathBuf> = match dir {
        Some(d) => Some(d.to_path_buf()),
        None => Some(PathBuf::from("contracts")).filter(|d| d.is_dir()),
    };
    let Some(dir) = dir else {
        return Ok(ContractSet::load(EMBEDDED_CONTRACTS.iter().copied())?);
    };
    let unreadable = |e: std::io::Error| ConfigError::ContractsUnreadable {
        dir: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).map_err(unreadable)?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::ContractsUnreadable {
            dir: dir.display().to_string(),
            message: "no .toml files".into(),
        });
    }
    Ok(ContractSet::load(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))?)
}
