//! The lake port: one small trait, and its adapters.
//!
//! Paths are `<container>/<key>` (`bronze/tmdb/...`): the first segment is the container (a
//! folder for [`LocalLake`], a blob container for [`AzureBlobLake`]).

mod azure;
pub mod blocking;
mod local;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

pub(crate) use azure::AZURITE_KEY;
pub use azure::{AzureAuth, AzureBlobLake};
pub use local::LocalLake;

/// An opaque version tag of a stored object; changes whenever its bytes change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a put treats an object that is already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Write only if nothing is at the path (bronze, deterministic outputs).
    Create,
    /// Replace whatever is there.
    Overwrite,
    /// Replace only if the object is still at this version (compare-and-swap).
    IfMatch(ETag),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bytes: Bytes,
    pub etag: ETag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub path: String,
    pub size: u64,
    pub etag: ETag,
}

/// Lake errors, grouped by what the caller does next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LakeError {
    /// Nothing at that path: the caller decides whether that is an error.
    #[error("{path}: not found in the lake")]
    NotFound { path: String },
    /// `PutMode::Create` found an object there: for idempotent writers, carry on.
    #[error("{path}: already exists (create-only write refused)")]
    AlreadyExists { path: String },
    /// `PutMode::IfMatch` lost a race: re-read and try again.
    #[error("{path}: changed since it was read (ETag precondition failed); re-read and retry")]
    PreconditionFailed { path: String },
    /// Storage unreachable, throttled or timed out: fail the invocation so the host retries.
    #[error("{path}: storage unavailable ({message}); retry later")]
    Transient { path: String, message: String },
    /// Anything else (permissions, bad path, corrupt response): a person has to look.
    #[error("{path}: {message}")]
    Other { path: String, message: String },
}

impl LakeError {
    pub fn is_transient(&self) -> bool {
        matches!(self, LakeError::Transient { .. })
    }
}

/// The body of a streamed write: chunks in order. An `Err` item aborts the write: nothing is
/// published, whatever was already sent (a conversion that failed half-way leaves no part).
pub type Chunks = futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>;

#[async_trait]
pub trait Lake: Send + Sync + fmt::Debug {
    async fn get(&self, path: &str) -> Result<Object, LakeError>;
    /// Bytes `range` of the object (clamped to its end), for reading large objects piece by piece.
    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, LakeError>;
    async fn put(&self, path: &str, bytes: Bytes, mode: PutMode) -> Result<ETag, LakeError>;
    /// Like `put`, for objects too large to hold in memory: the object appears whole when the
    /// stream ends (a block list commit, a rename), or not at all.
    async fn put_stream(&self, path: &str, chunks: Chunks, mode: PutMode) -> Result<ETag, LakeError>;
    /// Removes an object; nothing there is fine (deleting twice is a no-op). Bronze is never
    /// deleted: adapters refuse `bronze/` paths.
    async fn delete(&self, path: &str) -> Result<(), LakeError>;
    /// Every object whose path starts with `prefix`, sorted by path. The prefix must name a
    /// container (`silver/`, `ops/runs/`); listing across containers is not supported.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError>;
    /// Where this lake is, for messages and manifests (never holds a secret).
    fn describe(&self) -> String;
}

/// Bronze is immutable: a delete there is refused whatever the adapter.
pub fn refuse_bronze_delete(path: &str) -> Result<(), LakeError> {
    if path.starts_with("bronze/") {
        return Err(LakeError::Other {
            path: path.to_string(),
            message: "bronze is never deleted".into(),
        });
    }
    Ok(())
}

/// Splits `container/key`, refusing anything that could escape the lake (`..`, empty segments,
/// backslashes, absolute paths). Shared by every adapter so they all accept the same names.
pub fn split_path(path: &str) -> Result<(&str, &str), LakeError> {
    let bad = |why: &str| LakeError::Other {
        path: path.to_string(),
        message: format!("invalid lake path: {why}"),
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err(bad("must be relative, with '/' separators and no NUL"));
    }
    let (container, key) = path.split_once('/').ok_or_else(|| bad("no key after the container"))?;
    if !is_container_name(container) {
        return Err(bad("container must be 3-63 lowercase letters, digits or '-'"));
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad("empty, '.' or '..' segment"));
        }
    }
    Ok((container, key))
}

/// Like [`split_path`] for a listing prefix: the key part may be empty or end with '/'.
pub fn split_prefix(prefix: &str) -> Result<(&str, &str), LakeError> {
    let bad = |why: &str| LakeError::Other {
        path: prefix.to_string(),
        message: format!("invalid lake prefix: {why}"),
    };
    let (container, key) = prefix.split_once('/').unwrap_or((prefix, ""));
    if !is_container_name(container) {
        return Err(bad("must start with a container name"));
    }
    if prefix.contains('\\') || prefix.contains('\0') || key.starts_with('/') {
        return Err(bad("backslash, NUL or empty segment"));
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("'.' or '..' segment"));
    }
    Ok((container, key))
}

fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}
