//! One folder lake for every fault test: a hook sees each call of the lake port and says
//! whether it goes through, fails, or goes through and then never returns.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use movielake::lake::{Chunks, ETag, Lake, LakeError, LocalLake, Object, ObjectMeta, PutMode};
use tokio::sync::mpsc::UnboundedSender;

/// Which call of the lake port the hook is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Get,
    GetRange,
    Put,
    PutStream,
    Delete,
    List,
}

impl Call {
    /// `put` and `put_stream`: the calls that write an object.
    pub fn writes(self) -> bool {
        matches!(self, Call::Put | Call::PutStream)
    }
}

/// What the lake does with one call.
pub enum Fault {
    /// The call goes to the folder lake.
    Pass,
    /// The call fails with this error and the folder is not touched.
    Fail(LakeError),
    /// The call is made, its path is sent, and it never returns: a process frozen (or killed)
    /// right after that write, with nothing of it running afterwards.
    FreezeAfter(UnboundedSender<String>),
}

/// A storage outage at `path`: the error the host must retry.
pub fn outage(path: &str) -> Fault {
    Fault::Fail(LakeError::Transient {
        path: path.into(),
        message: "injected outage".into(),
    })
}

type Hook = Box<dyn Fn(Call, &str) -> Fault + Send + Sync>;

pub struct FaultyLake {
    inner: LocalLake,
    describe: Option<String>,
    hook: Hook,
}

impl fmt::Debug for FaultyLake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyLake").field("inner", &self.inner).finish()
    }
}

impl FaultyLake {
    pub fn new(inner: LocalLake, hook: impl Fn(Call, &str) -> Fault + Send + Sync + 'static) -> Self {
        FaultyLake {
            inner,
            describe: None,
            hook: Box::new(hook),
        }
    }

    /// Says it is `describe` (e.g. a blob account, so that BlobCreated URLs can name it).
    pub fn describing(mut self, describe: &str) -> Self {
        self.describe = Some(describe.to_string());
        self
    }

    async fn around<T>(
        &self,
        call: Call,
        path: &str,
        go: impl Future<Output = Result<T, LakeError>>,
    ) -> Result<T, LakeError> {
        match (self.hook)(call, path) {
            Fault::Pass => go.await,
            Fault::Fail(e) => Err(e),
            Fault::FreezeAfter(tell) => {
                go.await?;
                let _ = tell.send(path.to_string());
                std::future::pending().await
            }
        }
    }
}

#[async_trait]
impl Lake for FaultyLake {
    async fn get(&self, path: &str) -> Result<Object, LakeError> {
        self.around(Call::Get, path, self.inner.get(path)).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, LakeError> {
        self.around(Call::GetRange, path, self.inner.get_range(path, range))
            .await
    }
    async fn put(&self, path: &str, bytes: Bytes, mode: PutMode) -> Result<ETag, LakeError> {
        self.around(Call::Put, path, self.inner.put(path, bytes, mode)).await
    }
    async fn put_stream(&self, path: &str, chunks: Chunks, mode: PutMode) -> Result<ETag, LakeError> {
        self.around(Call::PutStream, path, self.inner.put_stream(path, chunks, mode))
            .await
    }
    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        self.around(Call::Delete, path, self.inner.delete(path)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError> {
        self.around(Call::List, prefix, self.inner.list(prefix)).await
    }
    fn describe(&self) -> String {
        self.describe.clone().unwrap_or_else(|| self.inner.describe())
    }
}
