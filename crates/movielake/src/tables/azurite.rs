//! Azurite's blob store for delta-rs, on whatever port Azurite listens.
//!
//! delta-rs reads a table's log from a version on with `list_with_offset`, which object_store
//! 0.13 sends to Azure as the `startFrom` parameter. Azurite (3.35) ignores that parameter
//! (Azure/Azurite#2619) and lists from the start, so the log looks like it begins again at
//! version 0 and delta-rs stops with "Invalid table version". object_store filters on the
//! client itself in its emulator mode, but that mode takes Azurite's address from the
//! environment (AZURITE_BLOB_STORAGE_URL) rather than from the lake's URL; this store does the
//! same filtering for an Azurite at any address. Azure itself never comes through here.

use std::fmt;
use std::sync::Arc;

use deltalake::logstore::object_store::azure::MicrosoftAzureBuilder;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

/// The container `container` of the Azurite at `endpoint` (`http://host:port/devstoreaccount1`).
pub(super) fn container_store(
    endpoint: &str,
    account_key: &str,
    container: &str,
) -> object_store::Result<Arc<dyn ObjectStore>> {
    let inner = MicrosoftAzureBuilder::new()
        .with_account("devstoreaccount1")
        .with_access_key(account_key)
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_allow_http(true)
        .with_container_name(container)
        .build()?;
    Ok(Arc::new(ListFromOffset(Arc::new(inner))))
}

/// Delegates everything, and lists from an offset by filtering a full listing.
struct ListFromOffset(Arc<dyn ObjectStore>);

impl fmt::Debug for ListFromOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListFromOffset({})", self.0)
    }
}

impl fmt::Display for ListFromOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Azurite({})", self.0)
    }
}

#[async_trait::async_trait]
impl ObjectStore for ListFromOffset {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let offset = offset.clone();
        self.0
            .list(prefix)
            .try_filter(move |meta| futures::future::ready(meta.location > offset))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}
