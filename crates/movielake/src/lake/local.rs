//! `LocalLake`: the lake as a folder, the embedded default.
//!
//! Every write goes to a temp file first and is then published atomically: create-only with
//! `link` (which refuses an existing name), overwrite and if-match with `rename`. If-match and
//! overwrite hold a lake-wide file lock between the check and the rename, so a compare-and-swap
//! cannot interleave with another writer, across processes too.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ETag, Lake, LakeError, Object, ObjectMeta, PutMode, split_path, split_prefix};

/// Bookkeeping folder beside the containers; never listed.
const META_DIR: &str = ".movielake";

#[derive(Debug)]
pub struct LocalLake {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalLake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalLake { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, path: &str) -> Result<PathBuf, LakeError> {
        let (container, key) = split_path(path)?;
        Ok(self.root.join(container).join(key))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        work: impl FnOnce() -> Result<T, LakeError> + Send + 'static,
    ) -> Result<T, LakeError> {
        tokio::task::spawn_blocking(work).await.map_err(|e| LakeError::Other {
            path: path.to_string(),
            message: format!("local lake task failed: {e}"),
        })?
    }
}

/// Deletes a temp file when dropped (after publishing it is a second link, or already renamed).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn etag_of(meta: &fs::Metadata) -> ETag {
    // A published file is never modified in place (every write is a new inode renamed or linked
    // into place), so inode + size + mtime identifies one version.
    ETag(format!(
        "{:x}-{:x}-{:x}{:09}",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

fn io_error(path: &str, action: &str, e: io::Error) -> LakeError {
    let message = format!("{action} failed: {e}");
    match e.kind() {
        io::ErrorKind::NotFound => LakeError::NotFound { path: path.to_string() },
        io::ErrorKind::AlreadyExists => LakeError::AlreadyExists { path: path.to_string() },
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => LakeError::Transient {
            path: path.to_string(),
            message,
        },
        _ => LakeError::Other {
            path: path.to_string(),
            message,
        },
    }
}

#[async_trait]
impl Lake for LocalLake {
    async fn get(&self, path: &str) -> Result<Object, LakeError> {
        let file = self.file(path)?;
        let p = path.to_string();
        self.blocking(path, move || {
            let mut f = File::open(&file).map_err(|e| io_error(&p, "open", e))?;
            let meta = f.metadata().map_err(|e| io_error(&p, "stat", e))?;
            if meta.is_dir() {
                return Err(LakeError::NotFound { path: p });
            }
            let mut buf = Vec::with_capacity(meta.len() as usize);
            f.read_to_end(&mut buf).map_err(|e| io_error(&p, "read", e))?;
            Ok(Object {
                bytes: Bytes::from(buf),
                etag: etag_of(&meta),
            })
        })
        .await
    }

    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, LakeError> {
        let file = self.file(path)?;
        let p = path.to_string();
        self.blocking(path, move || {
            use std::io::{Seek, SeekFrom};
            let mut f = File::open(&file).map_err(|e| io_error(&p, "open", e))?;
            let size = f.metadata().map_err(|e| io_error(&p, "stat", e))?.len();
            let (start, end) = (range.start.min(size), range.end.min(size));
            f.seek(SeekFrom::Start(start)).map_err(|e| io_error(&p, "seek", e))?;
            let mut buf = vec![0; end.saturating_sub(start) as usize];
            f.read_exact(&mut buf).map_err(|e| io_error(&p, "read", e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn put_stream(&self, path: &str, mut chunks: super::Chunks, mode: PutMode) -> Result<ETag, LakeError> {
        use futures::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let target = self.file(path)?;
        let meta_dir = self.root.join(META_DIR);
        let tmp_dir = meta_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(|e| io_error(path, "create temp folder", e))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}-{n}.tmp", std::process::id()));
        // Removes the temp file however this ends, also when the future is dropped mid-stream
        // (a cancelled upload would otherwise leave up to a whole file behind).
        let _cleanup = RemoveOnDrop(tmp.clone());
        let written: Result<(), LakeError> = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_error(path, "create temp file", e))?;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| LakeError::Other {
                    path: path.to_string(),
                    message: format!("write aborted by its producer: {e}"),
                })?;
                f.write_all(&chunk).await.map_err(|e| io_error(path, "write", e))?;
            }
            f.sync_all().await.map_err(|e| io_error(path, "sync", e))?;
            Ok(())
        }
        .await;
        written?;
        let p = path.to_string();
        self.blocking(path, move || {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| io_error(&p, "create folder", e))?;
            }
            publish_file(&p, &tmp, &target, &meta_dir, mode)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        super::refuse_bronze_delete(path)?;
        let file = self.file(path)?;
        let p = path.to_string();
        self.blocking(path, move || match fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&p, "delete", e)),
        })
        .await
    }

    async fn put(&self, path: &str, bytes: Bytes, mode: PutMode) -> Result<ETag, LakeError> {
        let target = self.file(path)?;
        let meta_dir = self.root.join(META_DIR);
        let p = path.to_string();
        self.blocking(path, move || {
            let tmp_dir = meta_dir.join("tmp");
            fs::create_dir_all(&tmp_dir).map_err(|e| io_error(&p, "create temp folder", e))?;
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| io_error(&p, "create folder", e))?;
            }
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = tmp_dir.join(format!("{}-{n}.tmp", std::process::id()));
            let result = publish(&p, &tmp, &target, &meta_dir, &bytes, mode);
            let _ = fs::remove_file(&tmp);
            result
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError> {
        let (container, key_prefix) = split_prefix(prefix)?;
        let base = self.root.join(container);
        let container = container.to_string();
        let key_prefix = key_prefix.to_string();
        let p = prefix.to_string();
        self.blocking(prefix, move || {
            // Walk only the folder the prefix is certainly inside of.
            let dir_part = key_prefix.rsplit_once('/').map_or("", |(d, _)| d);
            let start = if dir_part.is_empty() {
                base.clone()
            } else {
                base.join(dir_part)
            };
            let mut out = Vec::new();
            walk(&start, &base, &mut |key, meta| {
                if key.starts_with(&key_prefix) {
                    out.push(ObjectMeta {
                        path: format!("{container}/{key}"),
                        size: meta.len(),
                        etag: etag_of(meta),
                    });
                }
            })
            .map_err(|e| io_error(&p, "list", e))?;
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

fn publish(
    path: &str,
    tmp: &Path,
    target: &Path,
    meta_dir: &Path,
    bytes: &[u8],
    mode: PutMode,
) -> Result<ETag, LakeError> {
    let mut f = File::create(tmp).map_err(|e| io_error(path, "create temp file", e))?;
    f.write_all(bytes).map_err(|e| io_error(path, "write", e))?;
    f.sync_all().map_err(|e| io_error(path, "sync", e))?;
    drop(f);
    publish_file(path, tmp, target, meta_dir, mode)
}

/// Publishes a written, synced temp file at `target` under `mode`.
fn publish_file(path: &str, tmp: &Path, target: &Path, meta_dir: &Path, mode: PutMode) -> Result<ETag, LakeError> {
    let etag = etag_of(&fs::metadata(tmp).map_err(|e| io_error(path, "stat", e))?);
    match mode {
        PutMode::Create => {
            fs::hard_link(tmp, target).map_err(|e| io_error(path, "publish", e))?;
        }
        PutMode::Overwrite => {
            let _lock = lake_lock(meta_dir, path)?;
            fs::rename(tmp, target).map_err(|e| io_error(path, "publish", e))?;
        }
        PutMode::IfMatch(expected) => {
            let _lock = lake_lock(meta_dir, path)?;
            let current = fs::metadata(target).map_err(|e| io_error(path, "stat", e))?;
            if etag_of(&current) != expected {
                return Err(LakeError::PreconditionFailed { path: path.to_string() });
            }
            fs::rename(tmp, target).map_err(|e| io_error(path, "publish", e))?;
        }
    }
    Ok(etag)
}

/// An exclusive lock on the lake's lock file, released when dropped.
fn lake_lock(meta_dir: &Path, path: &str) -> Result<File, LakeError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(meta_dir.join("lock"))
        .map_err(|e| io_error(path, "open lock file", e))?;
    file.lock().map_err(|e| io_error(path, "lock", e))?;
    Ok(file)
}

fn walk(dir: &Path, base: &Path, visit: &mut dyn FnMut(&str, &fs::Metadata)) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            walk(&path, base, visit)?;
        } else if let Ok(rel) = path.strip_prefix(base)
            && let Some(key) = rel.to_str()
        {
            visit(key, &meta);
        }
    }
    Ok(())
}
