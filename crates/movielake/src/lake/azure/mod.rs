//! [`AzureBlobLake`]: the lake on Azure Blob Storage (or Azurite), through `azure_storage_blob`.
//!
//! A lake path `<container>/<key>` is blob `<key>` in container `<container>`. ETags are kept in
//! their quoted HTTP form (`"0x8DC..."`) whichever way the service spelled them (the ETag header
//! is quoted, Azure's list XML is not), so one from `get`, `put` or `list` compares equal to the
//! others and is accepted by [`PutMode::IfMatch`].
//!
//! Auth is one of [`AzureAuth`]: an Entra ID token (managed identity in Azure, `az`/`azd` on a
//! developer machine; https only), a SAS appended to every request URL, or a SAS signed locally
//! with Azurite's published development key. A SAS never appears in `Debug`, `describe()` or an
//! error message.

use std::{
    fmt,
    num::NonZero,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    error::ErrorKind,
    http::{
        ClientOptions, Context, Etag, ExponentialRetryOptions, NoFormat, RequestContent, RetryOptions, Url,
        policies::{Policy, PolicyResult},
        request::Request,
    },
};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use azure_storage_blob::{
    BlobClient, BlobServiceClient, BlobServiceClientOptions,
    models::{
        BlobClientDownloadOptions, BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
        BlockBlobClientCommitBlockListOptions, BlockBlobClientCommitBlockListResultHeaders, BlockLookupList, HttpRange,
        ListBlobsIncludeItem,
    },
};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

mod credential;
mod sas;
pub(crate) use sas::AZURITE_KEY;

use super::{ETag, Lake, LakeError, Object, ObjectMeta, PutMode, split_path, split_prefix};
pub(crate) use credential::LakeCredential;
use sas::SasPolicy;
#[cfg(test)]
use sas::azurite_account_sas;

/// How [`AzureBlobLake`] authenticates.
#[derive(Clone)]
pub enum AzureAuth {
    /// azure_identity DeveloperToolsCredential / ManagedIdentityCredential chain (in Azure:
    /// managed identity; honours AZURE_CLIENT_ID for a user-assigned identity). Token credentials
    /// are only sent over https.
    TokenCredential,
    /// A SAS token (query string without leading '?') appended to every request URL.
    Sas(String),
    /// Azurite's published development account (`devstoreaccount1` with its well-known key): an
    /// account SAS signed locally with HMAC-SHA256, renewed before it expires.
    AzuriteDevKey,
}

impl AzureAuth {
    /// The Entra ID credential behind [`AzureAuth::TokenCredential`], for the crate's other Azure
    /// clients (the Event Hubs producer, the SQL source's Entra tokens): `lake::azure` is
    /// private, so it is reached through here.
    pub(crate) fn token_credential() -> azure_core::Result<Arc<dyn TokenCredential>> {
        Ok(Arc::new(LakeCredential::from_environment()?))
    }
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureAuth::TokenCredential => f.write_str("TokenCredential"),
            AzureAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
            AzureAuth::AzuriteDevKey => f.write_str("AzuriteDevKey"),
        }
    }
}

/// The lake on Azure Blob Storage. Cheap to share: one HTTP pipeline for every container.
pub struct AzureBlobLake {
    /// Service endpoint without query or trailing '/', e.g. `https://acct.blob.core.windows.net`.
    endpoint: String,
    auth_kind: &'static str,
    service: BlobServiceClient,
    /// Secrets to scrub from error messages (the SAS token, when there is a fixed one).
    secrets: Vec<String>,
}

impl fmt::Debug for AzureBlobLake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBlobLake")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth_kind)
            .finish_non_exhaustive()
    }
}

// The lake is shared across tasks; fail the build, not a caller, if that ever stops holding.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AzureBlobLake>();
};

/// Bodies up to this size go up in one Put Blob request; larger ones as staged blocks plus a
/// Put Block List that carries the same preconditions.
const SINGLE_SHOT_UPLOAD_MAX: u64 = 256 * 1024 * 1024;
/// Block size of streamed writes: large enough for throughput, small enough to bound memory.
const STREAM_BLOCK_SIZE: usize = 8 * 1024 * 1024;

impl AzureBlobLake {
    /// endpoint examples: "https://acct.blob.core.windows.net", "http://127.0.0.1:10000/devstoreaccount1"
    /// (Azurite path-style URL: account name in the path).
    pub fn new(endpoint: &str, auth: AzureAuth) -> Result<Self, LakeError> {
        let bad = |message: String| LakeError::Other {
            path: endpoint_for_messages(endpoint),
            message,
        };
        let mut url = Url::parse(endpoint.trim()).map_err(|e| bad(format!("invalid storage endpoint URL: {e}")))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(bad("storage endpoint must be an http:// or https:// URL".into()));
        }
        if url.cannot_be_a_base() || url.host_str().is_none() {
            return Err(bad("storage endpoint must be an absolute URL with a host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "storage endpoint must not carry a query string; pass a SAS as AzureAuth::Sas".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("storage endpoint must not carry user info".into()));
        }
        let trimmed = url.path().trim_end_matches('/').to_string();
        url.set_path(&trimmed);
        let described = url.as_str().trim_end_matches('/').to_string();

        let mut client_options = ClientOptions {
            // The Functions host retries a failed invocation; keep the SDK's own retries short.
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                max_retries: 4,
                max_total_elapsed: azure_core::time::Duration::seconds(30),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut secrets = Vec::new();
        let (credential, auth_kind): (Option<Arc<dyn TokenCredential>>, &'static str) = match auth {
            AzureAuth::TokenCredential => {
                if url.scheme() != "https" {
                    return Err(bad(
                        "token credentials are only sent over https; use an https endpoint, or a SAS \
                         (AzureAuth::Sas / AzureAuth::AzuriteDevKey) for http"
                            .into(),
                    ));
                }
                let credential = LakeCredential::from_environment().map_err(|e| {
                    bad(format!(
                        "cannot set up an Entra ID credential: {}",
                        describe_error(&e, &[])
                    ))
                })?;
                (Some(Arc::new(credential)), "token-credential")
            }
            AzureAuth::Sas(token) => {
                let token = token.trim().trim_start_matches('?').to_string();
                if token.is_empty() || !token.split('&').any(|pair| pair.starts_with("sig=")) {
                    return Err(bad("the SAS token has no sig= parameter".into()));
                }
                secrets.push(token.clone());
                client_options.per_call_policies.push(Arc::new(SasPolicy::fixed(token)));
                (None, "sas")
            }
            AzureAuth::AzuriteDevKey => {
                client_options.per_call_policies.push(Arc::new(SasPolicy::azurite()));
                (None, "azurite-dev-key")
            }
        };

        let service = BlobServiceClient::new(
            url,
            credential,
            Some(BlobServiceClientOptions {
                client_options,
                ..Default::default()
            }),
        )
        .map_err(|e| {
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            bad(format!(
                "cannot create the blob client: {}",
                describe_error(&e, &secrets)
            ))
        })?;
        Ok(Self {
            endpoint: described,
            auth_kind,
            service,
            secrets,
        })
    }

    /// Create these containers if missing (used by tests, and by local runs against Azurite).
    /// Existing containers are fine.
    pub async fn ensure_containers(&self, names: &[&str]) -> Result<(), LakeError> {
        for name in names {
            match split_prefix(name) {
                Ok((_, "")) => {}
                _ => {
                    return Err(LakeError::Other {
                        path: (*name).to_string(),
                        message: "invalid container name: 3-63 lowercase letters, digits or '-'".into(),
                    });
                }
            }
            let container = self.service.blob_container_client(name);
            match container.create(None).await {
                Ok(_) => {
                    tracing::info!(container = %name, lake = %self.endpoint, "created container")
                }
                Err(e) if status_of(&e) == Some(409) => {} // ContainerAlreadyExists (or being deleted)
                Err(e) => return Err(self.map_error(name, e)),
            }
        }
        Ok(())
    }

    fn blob(&self, container: &str, key: &str) -> BlobClient {
        self.service.blob_container_client(container).blob_client(key)
    }

    /// The catch-all mapping from an SDK error to a lake error (callers handle the
    /// operation-specific statuses first).
    fn map_error(&self, path: &str, err: azure_core::Error) -> LakeError {
        let path = path.to_string();
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let message = describe_error(&err, &secrets);
        match err.kind() {
            ErrorKind::HttpResponse { status, .. } => match u16::from(*status) {
                408 | 429 | 500 | 502 | 503 | 504 => LakeError::Transient { path, message },
                401 | 403 => LakeError::Other {
                    path,
                    message: format!(
                        "authorization failed ({message}); check that the identity has the \
                         'Storage Blob Data Contributor' role on the storage account or container \
                         (role assignments take a few minutes to apply), or that the SAS is valid, \
                         unexpired and grants read/add/create/write/list on blobs"
                    ),
                },
                _ => LakeError::Other { path, message },
            },
            ErrorKind::Connection | ErrorKind::Io => LakeError::Transient { path, message },
            ErrorKind::Credential => LakeError::Other {
                path,
                message: format!(
                    "could not get an Entra ID token ({message}); in Azure check the managed \
                     identity (and AZURE_CLIENT_ID for a user-assigned one), locally run `az login`"
                ),
            },
            _ => LakeError::Other { path, message },
        }
    }
}

#[async_trait]
impl Lake for AzureBlobLake {
    async fn get(&self, path: &str) -> Result<Object, LakeError> {
        let (container, key) = split_path(path)?;
        let blob = self.blob(container, key);
        // Blobs over one partition (4 MiB) are read as parallel ranges pinned to the first
        // range's ETag, so those later requests can fail too: the same mapping for both.
        let read_error = |e: azure_core::Error| match status_of(&e) {
            // BlobNotFound or ContainerNotFound (or deleted mid-read); any other 404 (a wrong
            // endpoint path, say) is not "nothing there" and falls through to Other.
            Some(404) if matches!(error_code_of(&e), None | Some("BlobNotFound" | "ContainerNotFound")) => {
                LakeError::NotFound { path: path.to_string() }
            }
            // ConditionNotMet on a later range: the blob was replaced mid-read; reading again
            // will see one consistent version.
            Some(412) => LakeError::Transient {
                path: path.to_string(),
                message: "the blob changed while it was being read".into(),
            },
            _ => self.map_error(path, e),
        };
        let download = blob.download(None).await.map_err(read_error)?;
        let etag = download.properties.etag.as_ref().map(|e| normalize_etag(e.as_ref()));
        let bytes = download.body.collect().await.map_err(read_error)?;
        let etag = etag.ok_or_else(|| LakeError::Other {
            path: path.to_string(),
            message: "the storage service returned no ETag".into(),
        })?;
        Ok(Object {
            bytes,
            etag: ETag(etag),
        })
    }

    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, LakeError> {
        let (container, key) = split_path(path)?;
        let blob = self.blob(container, key);
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        let options = BlobClientDownloadOptions {
            range: Some(HttpRange::new(range.start, range.end - range.start)),
            ..Default::default()
        };
        let read_error = |e: azure_core::Error| match status_of(&e) {
            Some(404) if matches!(error_code_of(&e), None | Some("BlobNotFound" | "ContainerNotFound")) => {
                LakeError::NotFound { path: path.to_string() }
            }
            // InvalidRange: the range starts at or past the end of the blob.
            Some(416) => LakeError::Other {
                path: path.to_string(),
                message: "416 range not satisfiable".into(),
            },
            _ => self.map_error(path, e),
        };
        match blob.download(Some(options)).await {
            Ok(download) => download.body.collect().await.map_err(read_error),
            Err(e) if status_of(&e) == Some(416) => Ok(Bytes::new()),
            Err(e) => Err(read_error(e)),
        }
    }

    async fn put_stream(&self, path: &str, mut chunks: super::Chunks, mode: PutMode) -> Result<ETag, LakeError> {
        use futures::StreamExt as _;
        let (container, key) = split_path(path)?;
        let blob = self.blob(container, key).block_blob_client();
        if !matches!(mode, PutMode::IfMatch(_)) {
            self.ensure_containers(&[container]).await?;
        }
        // Blocks are staged as the chunks come (uncommitted blocks are invisible), then one
        // conditional Put Block List publishes the blob: create-only and if-match hold for the
        // whole object, and an aborted stream leaves nothing (Azure drops uncommitted blocks).
        // Block ids unique to this upload: two writers racing on one name must never commit each
        // other's uncommitted blocks (ids are per blob, and all of one blob's ids share a length).
        let upload = upload_id();
        let mut block_ids: Vec<Vec<u8>> = Vec::new();
        let mut pending = bytes::BytesMut::new();
        let stage = async |data: Bytes, ids: &mut Vec<Vec<u8>>| -> Result<(), LakeError> {
            let id = format!("{upload:032x}-{:010}", ids.len()).into_bytes();
            let len = data.len() as u64;
            let content: RequestContent<Bytes, NoFormat> = data.into();
            blob.stage_block(&id, len, content, None)
                .await
                .map_err(|e| self.map_error(path, e))?;
            ids.push(id);
            Ok(())
        };
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| LakeError::Other {
                path: path.to_string(),
                message: format!("write aborted by its producer: {e}"),
            })?;
            pending.extend_from_slice(&chunk);
            if pending.len() >= STREAM_BLOCK_SIZE {
                let data = pending.split().freeze();
                stage(data, &mut block_ids).await?;
            }
        }
        if !pending.is_empty() || block_ids.is_empty() {
            stage(pending.split().freeze(), &mut block_ids).await?;
        }
        let mut options = BlockBlobClientCommitBlockListOptions::default();
        match &mode {
            PutMode::Create => options.if_none_match = Some(Etag::from("*")),
            PutMode::Overwrite => {}
            PutMode::IfMatch(etag) => options.if_match = Some(Etag::from(normalize_etag(&etag.0))),
        }
        let list = BlockLookupList {
            latest: Some(block_ids),
            ..Default::default()
        };
        let content = list.try_into().map_err(|e| self.map_error(path, e))?;
        match blob.commit_block_list(content, Some(options)).await {
            Ok(response) => {
                let etag = response.etag().map_err(|e| self.map_error(path, e))?;
                etag.map(|e| ETag(normalize_etag(e.as_ref())))
                    .ok_or_else(|| LakeError::Other {
                        path: path.to_string(),
                        message: "the storage service returned no ETag for the write".into(),
                    })
            }
            Err(e) => match (&mode, status_of(&e)) {
                (PutMode::Create, Some(409 | 412)) => Err(LakeError::AlreadyExists { path: path.to_string() }),
                (PutMode::IfMatch(_), Some(404)) => Err(LakeError::NotFound { path: path.to_string() }),
                (PutMode::IfMatch(_), Some(412)) => Err(LakeError::PreconditionFailed { path: path.to_string() }),
                _ => Err(self.map_error(path, e)),
            },
        }
    }

    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        super::refuse_bronze_delete(path)?;
        let (container, key) = split_path(path)?;
        match self.blob(container, key).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.map_error(path, e)),
        }
    }

    async fn put(&self, path: &str, bytes: Bytes, mode: PutMode) -> Result<ETag, LakeError> {
        let (container, key) = split_path(path)?;
        let blob = self.blob(container, key);
        let mut result = upload(&blob, bytes.clone(), &mode).await;
        // Like LocalLake, which creates folders as needed: a write into a missing container
        // creates it. (An if-match write has nothing to compare against: NotFound, below.)
        if let Err(e) = &result
            && !matches!(mode, PutMode::IfMatch(_))
            && error_code_of(e) == Some("ContainerNotFound")
        {
            self.ensure_containers(&[container]).await?;
            result = upload(&blob, bytes, &mode).await;
        }
        match result {
            Ok(result) => {
                let etag = result.etag.as_ref().map(|e| normalize_etag(e.as_ref()));
                etag.map(ETag).ok_or_else(|| LakeError::Other {
                    path: path.to_string(),
                    message: "the storage service returned no ETag for the write".into(),
                })
            }
            Err(e) => match (&mode, status_of(&e)) {
                // 409 BlobAlreadyExists (what Azure and Azurite answer); 412 ConditionNotMet is
                // the other spelling of the same refusal.
                (PutMode::Create, Some(409 | 412)) => Err(LakeError::AlreadyExists { path: path.to_string() }),
                // BlobNotFound / ContainerNotFound: nothing to compare against.
                (PutMode::IfMatch(_), Some(404)) => Err(LakeError::NotFound { path: path.to_string() }),
                // ConditionNotMet: also the answer for a blob that does not exist, so look.
                (PutMode::IfMatch(_), Some(412)) => match blob.exists().await {
                    Ok(false) => Err(LakeError::NotFound { path: path.to_string() }),
                    Ok(true) => Err(LakeError::PreconditionFailed { path: path.to_string() }),
                    Err(e) => Err(self.map_error(path, e)),
                },
                _ => Err(self.map_error(path, e)),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError> {
        let (container, key_prefix) = split_prefix(prefix)?;
        let client = self.service.blob_container_client(container);
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!key_prefix.is_empty()).then(|| key_prefix.to_string()),
            // For hdi_isfolder: accounts with a hierarchical namespace list directories as blobs.
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let mut pages = client
            .list_blobs(Some(options))
            .map_err(|e| self.map_error(prefix, e))?
            .into_pages();
        let mut out = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if error_code_of(&e) == Some("ContainerNotFound") => return Ok(Vec::new()),
                Err(e) => return Err(self.map_error(prefix, e)),
            };
            let page = page.into_model().map_err(|e| self.map_error(prefix, e))?;
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                let is_folder = item
                    .metadata
                    .as_ref()
                    .and_then(|m| m.values.as_ref())
                    .and_then(|v| v.iter().find(|(k, _)| k.eq_ignore_ascii_case("hdi_isfolder")))
                    .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
                if is_folder {
                    continue;
                }
                let path = format!("{container}/{name}");
                let properties = item.properties.as_ref();
                let etag = properties
                    .and_then(|p| p.etag.as_ref())
                    .map(|e| normalize_etag(e.as_ref()));
                let Some(etag) = etag else {
                    return Err(LakeError::Other {
                        path,
                        message: "the storage service listed the blob without an ETag".into(),
                    });
                };
                let size = properties.and_then(|p| p.content_length).unwrap_or(0);
                out.push(ObjectMeta {
                    path,
                    size,
                    etag: ETag(etag),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        // Names are unique within a container and pages follow name order, so this only guards
        // against an emulator repeating an entry across a page boundary.
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }

    fn describe(&self) -> String {
        self.endpoint.clone()
    }
}

/// A value no other upload of this or another process uses: time, process id and a counter,
/// mixed through SHA-256.
fn upload_id() -> u128 {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let seed = format!(
        "{}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let digest = <Sha256 as sha2::Digest>::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// One upload with the preconditions of `mode`: a single Put Blob up to
/// [`SINGLE_SHOT_UPLOAD_MAX`], staged blocks and a conditional Put Block List above.
async fn upload(
    blob: &BlobClient,
    bytes: Bytes,
    mode: &PutMode,
) -> azure_core::Result<azure_storage_blob::models::BlobClientUploadResult> {
    let mut options = BlobClientUploadOptions {
        partition_size: NonZero::new(SINGLE_SHOT_UPLOAD_MAX),
        ..Default::default()
    };
    match mode {
        PutMode::Create => options.if_none_match = Some(Etag::from("*")),
        PutMode::Overwrite => {}
        PutMode::IfMatch(etag) => options.if_match = Some(Etag::from(normalize_etag(&etag.0))),
    }
    // `RequestContent::from` is an inherent fn taking Vec<u8>; the From<Bytes> impl avoids a copy.
    let content: RequestContent<Bytes, NoFormat> = bytes.into();
    blob.upload(content, Some(options)).await
}

// ---------------------------------------------------------------------------------------------
// Errors

fn status_of(err: &azure_core::Error) -> Option<u16> {
    err.http_status().map(u16::from)
}

fn error_code_of(err: &azure_core::Error) -> Option<&str> {
    match err.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// A one-line description of an SDK error with every secret scrubbed: for HTTP errors the status,
/// the storage error code and the first line of the service's message; otherwise the error chain.
fn describe_error(err: &azure_core::Error, secrets: &[&str]) -> String {
    let text = match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let mut text = format!("HTTP {}", u16::from(*status));
            if let Some(code) = error_code {
                text.push(' ');
                text.push_str(code);
            }
            let service_message = raw_response
                .as_ref()
                .and_then(|r| std::str::from_utf8(r.body()).ok())
                .and_then(|body| xml_element(body, "Message"))
                .and_then(|m| m.lines().next())
                .map(str::trim)
                .filter(|m| !m.is_empty());
            if let Some(m) = service_message {
                text.push_str(": ");
                text.push_str(m);
            }
            text
        }
        _ => {
            let mut parts: Vec<String> = Vec::new();
            let mut current: Option<&dyn std::error::Error> = Some(err);
            while let Some(e) = current {
                let part = e.to_string();
                if !part.is_empty() && parts.last() != Some(&part) {
                    parts.push(part);
                }
                current = e.source();
            }
            if parts.is_empty() {
                format!("{} error", err.kind())
            } else {
                parts.join(": ")
            }
        }
    };
    redact(&text, secrets)
}

fn xml_element<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let len = body.get(start..)?.find(&close)?;
    body.get(start..start + len)
}

/// Removes `secrets`, and the query string of every URL, from `text` (transport errors quote
/// the request URL, which carries the SAS).
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|s| rest.find(s)).min() {
        let (before, url_and_more) = rest.split_at(at);
        out.push_str(before);
        let end = url_and_more
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<' | ']'))
            .unwrap_or(url_and_more.len());
        let (url, after) = url_and_more.split_at(end);
        match url.split_once('?') {
            Some((base, _query)) => {
                out.push_str(base);
                out.push_str("?<redacted>");
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "<redacted>");
    }
    // Belt and braces: a bare `sig=` anywhere else.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("sig=") {
        let (before, from_sig) = rest.split_at(at + "sig=".len());
        result.push_str(before);
        let end = from_sig
            .find(|c: char| c == '&' || c.is_whitespace() || matches!(c, '"' | '\'' | ')'))
            .unwrap_or(from_sig.len());
        let (value, after) = from_sig.split_at(end);
        if !value.is_empty() {
            result.push_str("<redacted>");
        }
        rest = after;
    }
    result.push_str(rest);
    result
}

/// For messages about an endpoint we could not use: scheme, host and path only (no query,
/// fragment or user info, which could hold a secret).
fn endpoint_for_messages(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    let cut = endpoint.find(['?', '#']).unwrap_or(endpoint.len());
    let endpoint = endpoint.get(..cut).unwrap_or_default();
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => endpoint.to_string(),
    }
}

/// The quoted HTTP form of an ETag: Azure quotes it in headers but not in list XML.
fn normalize_etag(raw: &str) -> String {
    let raw = raw.trim();
    if raw.starts_with('"') || raw.starts_with("W/\"") {
        raw.to_string()
    } else {
        format!("\"{raw}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_normalized_to_the_quoted_form() {
        assert_eq!(normalize_etag("0x8DC1"), "\"0x8DC1\"");
        assert_eq!(normalize_etag("\"0x8DC1\""), "\"0x8DC1\"");
        assert_eq!(normalize_etag("W/\"abc\""), "W/\"abc\"");
    }

    #[test]
    fn redact_removes_sas_and_url_queries() {
        let sas = "sv=2021-08-06&ss=b&sig=abc%2Bdef%3D";
        let text = format!(
            "error sending request for url (http://127.0.0.1:10000/devstoreaccount1/c/k?comp=list&{sas}): refused; sig=xyz"
        );
        let out = redact(&text, &[sas]);
        assert!(!out.contains("abc%2Bdef"), "{out}");
        assert!(!out.contains("xyz"), "{out}");
        assert!(
            out.contains("http://127.0.0.1:10000/devstoreaccount1/c/k?<redacted>"),
            "{out}"
        );
    }

    #[test]
    fn azurite_sas_has_the_expected_shape() {
        let expiry = DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let sas = azurite_account_sas(expiry);
        assert!(
            sas.starts_with("sv=2021-08-06&ss=b&srt=sco&sp=racwdl&se=2030-01-02T03%3A04%3A05Z&spr=https%2Chttp&sig=")
        );
        // Deterministic for a given expiry.
        assert_eq!(sas, azurite_account_sas(expiry));
    }

    #[test]
    fn new_rejects_endpoints_with_queries_and_token_over_http() {
        let err = AzureBlobLake::new(
            "https://a.blob.core.windows.net/?sv=1&sig=secret",
            AzureAuth::AzuriteDevKey,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("query string") && !err.contains("secret"), "{err}");
        let err = AzureBlobLake::new("http://127.0.0.1:10000/devstoreaccount1", AzureAuth::TokenCredential)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("https"), "{err}");
        let err = AzureBlobLake::new(
            "https://user:pw@a.blob.core.windows.net/x?sig=s",
            AzureAuth::AzuriteDevKey,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("https://a.blob.core.windows.net/x: "), "{err}");
    }

    #[test]
    fn debug_and_describe_hide_the_sas() {
        let lake = AzureBlobLake::new(
            "https://acct.blob.core.windows.net/",
            AzureAuth::Sas("sv=2022-11-02&sig=topsecret".into()),
        );
        let Ok(lake) = lake else {
            panic!("valid endpoint rejected")
        };
        assert_eq!(lake.describe(), "https://acct.blob.core.windows.net");
        let debug = format!("{lake:?} {:?}", AzureAuth::Sas("sig=topsecret".into()));
        assert!(!debug.contains("topsecret"), "{debug}");
    }
}
