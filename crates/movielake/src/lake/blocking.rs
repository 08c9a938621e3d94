//! Synchronous views of the lake for the core's streaming converters, which read an
//! `io::Read` and write through a [`PartSink`] on a blocking thread (`spawn_blocking`).
//!
//! [`LakeReader`] reads an object range by range (one range fetched ahead, so the network and
//! the parser overlap); [`LakeSink`] streams each part into [`Lake::put_stream`] while it is
//! being encoded. Memory stays at a few chunks whatever the object size.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use movielake_core::output::files::PartSink;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ETag, Lake, LakeError, PutMode};

/// Bytes per ranged read and per chunk sent to an upload.
pub const CHUNK: usize = 8 * 1024 * 1024;

/// The first storage failure the adapters met. The converters above them see I/O errors through
/// layers (a gzip decoder, the CSV reader, the Parquet writer) that may turn them into text; the
/// caller reads this to know a failure was the storage's (retry) and not the file's.
#[derive(Debug, Clone, Default)]
pub struct StorageFailure(Arc<std::sync::Mutex<Option<LakeError>>>);

impl StorageFailure {
    fn record(&self, e: &LakeError) {
        if let Ok(mut slot) = self.0.lock()
            && slot.is_none()
        {
            *slot = Some(e.clone());
        }
    }

    pub fn take(&self) -> Option<LakeError> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A task that never finished (the runtime is shutting down): retry later.
fn task_failed(path: &str, e: tokio::task::JoinError) -> LakeError {
    LakeError::Transient {
        path: path.to_string(),
        message: format!("storage task stopped: {e}"),
    }
}

/// Reads a lake object as a stream. Must be used off the async runtime (a blocking thread).
pub struct LakeReader {
    lake: Arc<dyn Lake>,
    path: String,
    handle: Handle,
    /// Offset of the next range to request.
    next_offset: u64,
    current: Bytes,
    ahead: Option<JoinHandle<Result<Bytes, LakeError>>>,
    done: bool,
    failure: StorageFailure,
    /// Total bytes handed out, for progress.
    pub read: u64,
}

impl LakeReader {
    pub fn new(lake: Arc<dyn Lake>, path: &str, handle: Handle, failure: StorageFailure) -> Self {
        LakeReader {
            failure,
            lake,
            path: path.to_string(),
            handle,
            next_offset: 0,
            current: Bytes::new(),
            ahead: None,
            done: false,
            read: 0,
        }
    }

    fn request(&mut self) -> JoinHandle<Result<Bytes, LakeError>> {
        let (lake, path, start) = (self.lake.clone(), self.path.clone(), self.next_offset);
        self.next_offset += CHUNK as u64;
        self.handle
            .spawn(async move { lake.get_range(&path, start..start + CHUNK as u64).await })
    }

    fn refill(&mut self) -> io::Result<()> {
        let pending = match self.ahead.take() {
            Some(pending) => pending,
            None => self.request(),
        };
        let chunk = self
            .handle
            .block_on(pending)
            .map_err(|e| task_failed(&self.path, e))
            .and_then(|r| r)
            .map_err(|e| {
                self.failure.record(&e);
                io::Error::other(e)
            })?;
        // A short range is the end of the object.
        if chunk.len() < CHUNK {
            self.done = true;
        } else {
            self.ahead = Some(self.request());
        }
        self.current = chunk;
        Ok(())
    }
}

impl Read for LakeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        self.read += n as u64;
        Ok(n)
    }
}

impl Drop for LakeReader {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
    }
}

type Upload = JoinHandle<Result<ETag, LakeError>>;

/// Streams output parts into the lake (overwrite: part names and bytes are deterministic).
pub struct LakeSink {
    lake: Arc<dyn Lake>,
    handle: Handle,
    failure: StorageFailure,
}

impl LakeSink {
    pub fn new(lake: Arc<dyn Lake>, handle: Handle, failure: StorageFailure) -> Self {
        LakeSink { lake, handle, failure }
    }
}

/// What a part sends its upload: chunks, then `End`. A channel that closes without `End` (the
/// part was dropped: the conversion failed) turns into an error item, so the upload aborts and
/// publishes nothing, however full the channel was.
enum Piece {
    Chunk(Bytes),
    End,
}

/// One part being written: bytes are buffered to [`CHUNK`] and sent to its upload task.
pub struct LakePart {
    sender: Option<mpsc::Sender<Piece>>,
    buffer: Vec<u8>,
    upload: Option<Upload>,
    handle: Handle,
    path: String,
    failure: StorageFailure,
}

impl LakePart {
    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| io::Error::other("part already closed"))?;
        if sender.blocking_send(Piece::Chunk(chunk)).is_err() {
            // The upload ended early: its error says why.
            return Err(self.upload_error());
        }
        Ok(())
    }

    fn upload_error(&mut self) -> io::Error {
        let failure = match self.upload.take().map(|u| self.handle.block_on(u)) {
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => task_failed(&self.path, e),
            _ => LakeError::Transient {
                path: self.path.clone(),
                message: "the upload stopped".into(),
            },
        };
        self.failure.record(&failure);
        io::Error::other(failure)
    }
}

impl io::Write for LakePart {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
            self.send(chunk)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartSink for LakeSink {
    type Part = LakePart;

    fn open(&mut self, path: &str) -> io::Result<LakePart> {
        let (sender, receiver) = mpsc::channel::<Piece>(2);
        let chunks = futures::stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(Piece::Chunk(bytes)) => Some((Ok(bytes), Some(receiver))),
                Some(Piece::End) => None,
                None => Some((
                    Err(io::Error::other("the conversion stopped before the part was complete")),
                    None,
                )),
            }
        })
        .boxed();
        let (lake, p) = (self.lake.clone(), path.to_string());
        let upload = self
            .handle
            .spawn(async move { lake.put_stream(&p, chunks, PutMode::Overwrite).await });
        Ok(LakePart {
            sender: Some(sender),
            buffer: Vec::with_capacity(CHUNK),
            upload: Some(upload),
            handle: self.handle.clone(),
            path: path.to_string(),
            failure: self.failure.clone(),
        })
    }

    fn commit(&mut self, path: &str, mut part: LakePart) -> io::Result<()> {
        let rest = Bytes::from(std::mem::take(&mut part.buffer));
        if !rest.is_empty() {
            part.send(rest)?;
        }
        // `End` completes the stream: the upload publishes the object.
        if let Some(sender) = part.sender.take()
            && sender.blocking_send(Piece::End).is_err()
        {
            return Err(part.upload_error());
        }
        let upload = part
            .upload
            .take()
            .ok_or_else(|| io::Error::other("part already closed"))?;
        // Waiting here keeps at most one finished part in flight per table, and reports a
        // failed upload on the part that caused it.
        self.handle
            .block_on(upload)
            .map_err(|e| task_failed(path, e))
            .and_then(|r| r)
            .map_err(|e| {
                self.failure.record(&e);
                io::Error::other(e)
            })?;
        Ok(())
    }
}

/// The lake error inside an I/O error from these adapters, if that is what it is.
pub fn lake_error(e: &io::Error) -> Option<&LakeError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<LakeError>())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::lake::LocalLake;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_part_dropped_half_way_publishes_nothing_and_a_committed_one_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path()));
        let handle = Handle::current();
        let task_lake = lake.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = LakeSink::new(task_lake, handle, StorageFailure::default());
            // More than the channel holds, so the upload is mid-way when the part is dropped.
            let mut part = sink.open("silver/t/dropped.parquet").expect("open");
            for _ in 0..5 {
                part.write_all(&vec![7u8; CHUNK]).expect("write");
            }
            drop(part);
            let mut part = sink.open("silver/t/whole.parquet").expect("open");
            for _ in 0..3 {
                part.write_all(&vec![1u8; CHUNK]).expect("write");
            }
            part.write_all(b"tail").expect("write");
            sink.commit("silver/t/whole.parquet", part).expect("commit");
        })
        .await
        .expect("blocking task");
        // Give an (incorrectly) surviving upload of the dropped part time to publish.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(matches!(
            lake.get("silver/t/dropped.parquet").await,
            Err(LakeError::NotFound { .. })
        ));
        let whole = lake.get("silver/t/whole.parquet").await.expect("whole").bytes;
        assert_eq!(whole.len(), 3 * CHUNK + 4);
        assert!(whole.ends_with(b"tail"));
    }
}
