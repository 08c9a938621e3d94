//! The Entra ID credential of the lake (and of the Event Hubs producer).

use super::*;

/// Managed identity in Azure, `az` / `azd` on a developer machine: the first source that
/// yields a token is used from then on.
#[derive(Debug)]
pub(crate) struct LakeCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: AtomicUsize,
}

impl LakeCredential {
    pub(crate) fn from_environment() -> azure_core::Result<Self> {
        let user_assigned_id = std::env::var("AZURE_CLIENT_ID")
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .map(UserAssignedId::ClientId);
        let managed = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id,
            ..Default::default()
        }));
        let developer = DeveloperToolsCredential::new(None);
        // App Service / Functions announce their identity endpoint; elsewhere try the developer
        // tools first so a laptop does not wait on the VM metadata endpoint.
        let in_app_service = std::env::var_os("IDENTITY_ENDPOINT").is_some();
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        let mut errors = Vec::new();
        let mut add = |name: &'static str, c: azure_core::Result<Arc<dyn TokenCredential>>| match c {
            Ok(c) => sources.push((name, c)),
            Err(e) => errors.push(format!("{name}: {e}")),
        };
        let managed = managed.map(|c| c as Arc<dyn TokenCredential>);
        let developer = developer.map(|c| c as Arc<dyn TokenCredential>);
        if in_app_service {
            add("ManagedIdentityCredential", managed);
            add("DeveloperToolsCredential", developer);
        } else {
            add("DeveloperToolsCredential", developer);
            add("ManagedIdentityCredential", managed);
        }
        if sources.is_empty() {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                errors.join("; "),
            ));
        }
        Ok(Self {
            sources,
            chosen: AtomicUsize::new(usize::MAX),
        })
    }
}

#[async_trait]
impl TokenCredential for LakeCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some((_, source)) = self.sources.get(self.chosen.load(Ordering::Relaxed)) {
            return source.get_token(scopes, options).await;
        }
        let mut errors = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    self.chosen.store(index, Ordering::Relaxed);
                    tracing::info!(credential = name, "authenticated to Azure");
                    return Ok(token);
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            errors.join("; "),
        ))
    }
}
