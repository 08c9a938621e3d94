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
use movielake_core::files::PartSink;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ETag, Lake, LakeError, PutMode};

/// Bytes per ranged read and per chunk sent to an upload.
pub const CHUNK: usize = 8 * 1024 * 1024;

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
    /// Total bytes handed out, for progress.
    pub read: u64,
}

impl LakeReader {
    pub fn new(lake: Arc<dyn Lake>, path: &str, handle: Handle) -> Self {
        LakeReader {
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
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
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
}

impl LakeSink {
    pub fn new(lake: Arc<dyn Lake>, handle: Handle) -> Self {
        LakeSink { lake, handle }
    }
}

/// One part being written: bytes are buffered to [`CHUNK`] and sent to its upload task.
pub struct LakePart {
    sender: Option<mpsc::Sender<Result<Bytes, io::Error>>>,
    buffer: Vec<u8>,
    upload: Option<Upload>,
    handle: Handle,
}

impl LakePart {
    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| io::Error::other("part already closed"))?;
        if sender.blocking_send(Ok(chunk)).is_err() {
            // The upload ended early: its error says why.
            return Err(self.upload_error());
        }
        Ok(())
    }

    fn upload_error(&mut self) -> io::Error {
        match self.upload.take().map(|u| self.handle.block_on(u)) {
            Some(Ok(Err(e))) => io::Error::other(e),
            Some(Err(e)) => io::Error::other(e),
            _ => io::Error::other("the upload stopped"),
        }
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

impl Drop for LakePart {
    fn drop(&mut self) {
        // Dropped without commit (the conversion failed): abort, so nothing is published.
        if let Some(sender) = self.sender.take() {
            let _ = sender.try_send(Err(io::Error::other("conversion stopped before the part was complete")));
        }
    }
}

impl PartSink for LakeSink {
    type Part = LakePart;

    fn open(&mut self, path: &str) -> io::Result<LakePart> {
        let (sender, receiver) = mpsc::channel::<Result<Bytes, io::Error>>(2);
        let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
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
        })
    }

    fn commit(&mut self, path: &str, mut part: LakePart) -> io::Result<()> {
        let rest = Bytes::from(std::mem::take(&mut part.buffer));
        if !rest.is_empty() {
            part.send(rest)?;
        }
        // Closing the channel ends the stream: the upload publishes the object.
        part.sender = None;
        let upload = part
            .upload
            .take()
            .ok_or_else(|| io::Error::other("part already closed"))?;
        // Waiting here keeps at most one finished part in flight per table, and reports a
        // failed upload on the part that caused it.
        self.handle
            .block_on(upload)
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        let _ = path;
        Ok(())
    }
}

/// The lake error inside an I/O error from these adapters, if that is what it is.
pub fn lake_error(e: &io::Error) -> Option<&LakeError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<LakeError>())
}
