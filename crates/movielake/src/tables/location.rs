//! Where the tables of a lake are, and how delta-rs reaches them: a local folder as `file://`,
//! a blob lake as `az://<container>/<path>` with the same kind of credential the lake uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Once;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::TableError;
use crate::lake::{AZURITE_KEY, AzureAuth};

/// The lake the tables live in.
#[derive(Clone)]
pub enum TableLocation {
    /// A folder: `<root>/<container>/<path>`.
    Local(PathBuf),
    /// A blob endpoint (`https://<account>.blob.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`) and how to sign in to it.
    Azure { endpoint: Url, auth: AzureAuth },
    /// The lake's location could not be turned into a table location; every table operation
    /// fails with this message.
    Unavailable(String),
}

impl std::fmt::Debug for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableLocation::Local(root) => write!(f, "Local({})", root.display()),
            // Never print a SAS.
            TableLocation::Azure { endpoint, .. } => write!(f, "Azure({endpoint})"),
            TableLocation::Unavailable(why) => write!(f, "Unavailable({why})"),
        }
    }
}

/// delta-rs knows `az://` only once its Azure handlers are registered.
fn register_azure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| deltalake::azure::register_handlers(None));
}

impl TableLocation {
    /// The tables of the lake at `location` (`MOVIELAKE_LAKE`), signed in as
    /// [`crate::config::open_lake`] signs in to it.
    pub fn for_lake(location: &str, sas: Option<&str>) -> Result<Self, TableError> {
        let invalid = |message: String| TableError::Invalid {
            table: location.to_string(),
            message,
        };
        let location = location.trim();
        if location.starts_with("https://") || location.starts_with("http://") {
            let endpoint = Url::parse(location).map_err(|e| invalid(format!("not a URL: {e}")))?;
            let auth = match sas {
                Some(sas) if !sas.trim().is_empty() => AzureAuth::Sas(sas.trim().trim_start_matches('?').to_string()),
                _ if location.contains("/devstoreaccount1") => AzureAuth::AzuriteDevKey,
                _ => AzureAuth::TokenCredential,
            };
            return Ok(TableLocation::Azure { endpoint, auth });
        }
        let folder = location.strip_prefix("file://").unwrap_or(location);
        if folder.is_empty() || location.contains("://") && !location.starts_with("file://") {
            return Err(invalid(
                "not a lake location (a folder or an http(s) blob endpoint)".into(),
            ));
        }
        let root = std::path::absolute(folder).map_err(|e| invalid(format!("cannot resolve the folder: {e}")))?;
        Ok(TableLocation::Local(root))
    }

    /// The URL of table `name` and the storage options delta-rs needs to reach it.
    fn url_and_options(&self, name: &str) -> Result<(Url, HashMap<String, String>), TableError> {
        let invalid = |message: String| TableError::Invalid {
            table: name.to_string(),
            message,
        };
        let clean = name.trim_matches('/');
        if clean.is_empty() || clean.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(invalid(
                "a table name is `<container>/<path>`, e.g. silver/events/watch".into(),
            ));
        }
        match self {
            TableLocation::Unavailable(why) => Err(invalid(why.clone())),
            TableLocation::Local(root) => {
                let dir = root.join(clean);
                // delta-rs refuses a local table location that is not a folder yet.
                std::fs::create_dir_all(&dir)
                    .map_err(|e| invalid(format!("cannot create the folder {}: {e}", dir.display())))?;
                let url = Url::from_directory_path(&dir)
                    .map_err(|()| invalid(format!("{} is not an absolute folder", dir.display())))?;
                Ok((url, HashMap::new()))
            }
            TableLocation::Azure { endpoint, auth } => {
                register_azure();
                let url = Url::parse(&format!("az://{clean}/")).map_err(|e| invalid(e.to_string()))?;
                let mut options = HashMap::new();
                match auth {
                    AzureAuth::AzuriteDevKey => {
                        // Reached through our own store (see `azurite.rs`); these options are
                        // what the log store reads besides.
                        options.insert("account_name".into(), "devstoreaccount1".into());
                        options.insert("access_key".into(), AZURITE_KEY.into());
                        options.insert("endpoint".into(), endpoint.as_str().trim_end_matches('/').into());
                        options.insert("allow_http".into(), "true".into());
                    }
                    AzureAuth::Sas(sas) => {
                        options.insert("account_name".into(), account_of(endpoint).map_err(invalid)?);
                        options.insert("sas_key".into(), sas.clone());
                    }
                    AzureAuth::TokenCredential => {
                        options.insert("account_name".into(), account_of(endpoint).map_err(invalid)?);
                        // In App Service / Functions the identity endpoint is announced in the
                        // environment; object_store reads IDENTITY_HEADER itself. Elsewhere the
                        // developer's `az login`.
                        match std::env::var("IDENTITY_ENDPOINT") {
                            Ok(identity) if !identity.trim().is_empty() => {
                                options.insert("msi_endpoint".into(), identity);
                                if let Ok(id) = std::env::var("AZURE_CLIENT_ID")
                                    && !id.trim().is_empty()
                                {
                                    options.insert("client_id".into(), id.trim().into());
                                }
                            }
                            _ => {
                                options.insert("use_azure_cli".into(), "true".into());
                            }
                        }
                    }
                }
                Ok((url, options))
            }
        }
    }

    /// Opens table `name` at `version` (latest when `None`); a table that does not exist yet is
    /// returned without a version when no particular version was asked for.
    pub(super) async fn open(&self, name: &str, version: Option<u64>) -> Result<DeltaTable, TableError> {
        let (url, options) = self.url_and_options(name)?;
        let mut builder = DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| classify(name, e))?
            .with_storage_options(options);
        if let TableLocation::Azure {
            endpoint,
            auth: AzureAuth::AzuriteDevKey,
        } = self
        {
            let container = url.host_str().unwrap_or_default();
            let store = super::azurite::container_store(endpoint.as_str(), AZURITE_KEY, container).map_err(|e| {
                TableError::Invalid {
                    table: name.to_string(),
                    message: format!("Azurite: {e}"),
                }
            })?;
            builder = builder.with_storage_backend(store, url);
        }
        if let Some(v) = version {
            // `DeltaTable::load` would read the latest version; the builder keeps the one asked.
            return builder.with_version(v).load().await.map_err(|e| classify(name, e));
        }
        let mut table = builder.build().map_err(|e| classify(name, e))?;
        match table.load().await {
            Ok(()) => Ok(table),
            Err(DeltaTableError::NotATable(_)) => Ok(table),
            Err(e) => Err(classify(name, e)),
        }
    }
}

/// `acct` of `https://acct.blob.core.windows.net`.
fn account_of(endpoint: &Url) -> Result<String, String> {
    endpoint
        .host_str()
        .and_then(|h| h.strip_suffix(".blob.core.windows.net"))
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("{endpoint}: tables need an https://<account>.blob.core.windows.net endpoint"))
}

/// A delta-rs error, by what the caller does next.
pub(super) fn classify(table: &str, e: DeltaTableError) -> TableError {
    let message = e.to_string();
    let table = table.to_string();
    match e {
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => TableError::Storage { table, message },
        // The log moved while it was read (a commit landing between list and read).
        DeltaTableError::InvalidVersion(_) => TableError::Storage { table, message },
        _ => TableError::Invalid { table, message },
    }
}
