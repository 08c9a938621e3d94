//! One suite, every adapter: the same behaviour from a folder and from Azure Blob Storage.

use std::sync::Arc;

use bytes::Bytes;
use movielake::lake::{AzureAuth, AzureBlobLake, Lake, LakeError, LocalLake, PutMode};

use crate::support::{azurite_endpoint, unique};

async fn suite(lake: Arc<dyn Lake>, run: &str) {
    let p = |key: &str| format!("ops/{run}/{key}");

    // get of nothing
    assert!(
        matches!(lake.get(&p("missing")).await, Err(LakeError::NotFound { .. })),
        "missing object"
    );

    // create-only, then refused
    let first = lake
        .put(&p("a/one.json"), Bytes::from_static(b"first"), PutMode::Create)
        .await
        .expect("create");
    let got = lake.get(&p("a/one.json")).await.expect("get");
    assert_eq!((got.bytes.as_ref(), &got.etag), (b"first".as_ref(), &first));
    let again = lake
        .put(&p("a/one.json"), Bytes::from_static(b"second"), PutMode::Create)
        .await;
    assert!(
        matches!(again, Err(LakeError::AlreadyExists { .. })),
        "create-only must refuse: {again:?}"
    );
    assert_eq!(lake.get(&p("a/one.json")).await.expect("get").bytes.as_ref(), b"first");

    // overwrite changes the ETag
    let second = lake
        .put(&p("a/one.json"), Bytes::from_static(b"second"), PutMode::Overwrite)
        .await
        .expect("overwrite");
    assert_ne!(second, first);
    assert_eq!(lake.get(&p("a/one.json")).await.expect("get").etag, second);

    // if-match: current wins, stale refused and changes nothing
    let third = lake
        .put(
            &p("a/one.json"),
            Bytes::from_static(b"third"),
            PutMode::IfMatch(second.clone()),
        )
        .await
        .expect("if-match");
    let stale = lake
        .put(&p("a/one.json"), Bytes::from_static(b"stale"), PutMode::IfMatch(second))
        .await;
    assert!(
        matches!(stale, Err(LakeError::PreconditionFailed { .. })),
        "stale ETag must be refused: {stale:?}"
    );
    let now = lake.get(&p("a/one.json")).await.expect("get");
    assert_eq!((now.bytes.as_ref(), now.etag), (b"third".as_ref(), third));
    let absent = lake
        .put(&p("a/absent"), Bytes::from_static(b"x"), PutMode::IfMatch(first))
        .await;
    assert!(
        matches!(absent, Err(LakeError::NotFound { .. })),
        "if-match on nothing: {absent:?}"
    );

    // empty and large objects round-trip
    lake.put(&p("empty"), Bytes::new(), PutMode::Create)
        .await
        .expect("empty");
    assert!(lake.get(&p("empty")).await.expect("get empty").bytes.is_empty());
    let large: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    lake.put(&p("large.bin"), Bytes::from(large.clone()), PutMode::Create)
        .await
        .expect("large");
    assert!(
        lake.get(&p("large.bin")).await.expect("get large").bytes == large,
        "large object differs"
    );

    // list: by prefix (not only by folder), sorted, with sizes and ETags that match get
    for key in ["list/b2", "list/a1", "list/a2/deep.json", "listing-other"] {
        lake.put(&p(key), Bytes::from(key.as_bytes().to_vec()), PutMode::Create)
            .await
            .expect("put for list");
    }
    let listed = lake.list(&p("list/a")).await.expect("list");
    let paths: Vec<&str> = listed.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, vec![p("list/a1"), p("list/a2/deep.json")]);
    for meta in &listed {
        let obj = lake.get(&meta.path).await.expect("get listed");
        assert_eq!((meta.size, &meta.etag), (obj.bytes.len() as u64, &obj.etag));
    }
    assert_eq!(lake.list(&p("list/")).await.expect("list folder").len(), 3);
    assert!(lake.list(&p("nothing-here/")).await.expect("empty list").is_empty());
    assert!(lake.list("gold/").await.is_ok(), "a container prefix lists");

    // paths that could escape the lake are refused before any IO
    for bad in ["ops/../etc/passwd", "/ops/x", "ops//x", "OPS/x", "ops", "ops/a\\b"] {
        let r = lake.put(bad, Bytes::from_static(b"x"), PutMode::Overwrite).await;
        assert!(
            matches!(r, Err(LakeError::Other { .. })),
            "{bad} must be refused: {r:?}"
        );
    }

    // concurrent create-only writers of one name: exactly one wins
    let contenders: Vec<_> = (0..12)
        .map(|i| {
            let (lake, path) = (lake.clone(), p("race/winner"));
            tokio::spawn(async move {
                (
                    i,
                    lake.put(&path, Bytes::from(format!("writer {i}")), PutMode::Create)
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for c in contenders {
        match c.await.expect("task") {
            (i, Ok(_)) => winners.push(i),
            (_, Err(LakeError::AlreadyExists { .. })) => {}
            (_, Err(e)) => panic!("unexpected error in the race: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create-only writer wins");
    let stored = lake.get(&p("race/winner")).await.expect("winner");
    assert_eq!(stored.bytes, Bytes::from(format!("writer {}", winners[0])));

    // compare-and-swap under contention: no increment is lost
    lake.put(&p("counter"), Bytes::from_static(b"0"), PutMode::Create)
        .await
        .expect("counter");
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (lake, path) = (lake.clone(), p("counter"));
            tokio::spawn(async move {
                for _ in 0..5 {
                    loop {
                        let cur = lake.get(&path).await.expect("read counter");
                        let n: u64 = std::str::from_utf8(&cur.bytes).expect("utf8").parse().expect("number");
                        match lake
                            .put(&path, Bytes::from((n + 1).to_string()), PutMode::IfMatch(cur.etag))
                            .await
                        {
                            Ok(_) => break,
                            Err(LakeError::PreconditionFailed { .. }) => continue,
                            Err(e) => panic!("cas: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(lake.get(&p("counter")).await.expect("counter").bytes.as_ref(), b"30");

    streaming(lake.as_ref(), &p("stream")).await;

    // delete: gone, then a no-op; bronze refused.
    lake.put(&p("gone.txt"), Bytes::from_static(b"x"), PutMode::Create)
        .await
        .expect("put");
    lake.delete(&p("gone.txt")).await.expect("delete");
    assert!(matches!(
        lake.get(&p("gone.txt")).await,
        Err(LakeError::NotFound { .. })
    ));
    lake.delete(&p("gone.txt")).await.expect("deleting nothing is fine");
    assert!(matches!(
        lake.delete(&format!("bronze/{run}/x.json")).await,
        Err(LakeError::Other { .. })
    ));
}

/// Streamed writes and ranged reads: a 20 MiB object in 1 MiB chunks (several Azure blocks),
/// create-only for the whole object, an aborted stream leaves nothing, ranges are clamped.
async fn streaming(lake: &dyn Lake, base: &str) {
    use futures::stream::{self, StreamExt as _};
    let chunk = |i: u8| Bytes::from(vec![i; 1 << 20]);
    let whole: Vec<u8> = (0..20u8).flat_map(|i| vec![i; 1 << 20]).collect();
    let path = format!("{base}/big.bin");
    let chunks = stream::iter((0..20u8).map(move |i| Ok(chunk(i)))).boxed();
    let etag = lake
        .put_stream(&path, chunks, PutMode::Create)
        .await
        .expect("streamed create");
    let got = lake.get(&path).await.expect("get streamed");
    assert_eq!(got.bytes.len(), whole.len());
    assert!(got.bytes.as_ref() == whole.as_slice(), "streamed bytes differ");
    assert_eq!(got.etag, etag);

    let again = stream::iter([Ok(Bytes::from_static(b"other"))]).boxed();
    assert!(
        matches!(
            lake.put_stream(&path, again, PutMode::Create).await,
            Err(LakeError::AlreadyExists { .. })
        ),
        "create-only holds for streamed writes"
    );

    let range = lake
        .get_range(&path, 3 * (1 << 20) - 2..3 * (1 << 20) + 2)
        .await
        .expect("range");
    assert_eq!(range.as_ref(), &[2, 2, 3, 3]);
    let tail = lake
        .get_range(&path, whole.len() as u64 - 3..whole.len() as u64 + 100)
        .await
        .expect("tail");
    assert_eq!(tail.as_ref(), &[19, 19, 19], "a range past the end is clamped");
    let past = lake
        .get_range(&path, whole.len() as u64 + 10..whole.len() as u64 + 20)
        .await
        .expect("past");
    assert!(past.is_empty());
    assert!(matches!(
        lake.get_range(&format!("{base}/missing"), 0..10).await,
        Err(LakeError::NotFound { .. })
    ));

    let aborted_path = format!("{base}/aborted.bin");
    let aborted = stream::iter([Ok(chunk(1)), Err(std::io::Error::other("producer failed half-way"))]).boxed();
    assert!(lake.put_stream(&aborted_path, aborted, PutMode::Create).await.is_err());
    assert!(
        matches!(lake.get(&aborted_path).await, Err(LakeError::NotFound { .. })),
        "an aborted stream publishes nothing"
    );
    let empty = stream::iter(Vec::<Result<Bytes, std::io::Error>>::new()).boxed();
    lake.put_stream(&format!("{base}/empty"), empty, PutMode::Overwrite)
        .await
        .expect("empty object");
    assert!(
        lake.get(&format!("{base}/empty"))
            .await
            .expect("empty")
            .bytes
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_lake_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    suite(Arc::new(LocalLake::new(dir.path())), &unique("local")).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(".movielake/tmp"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temp files left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_blob_lake_conforms_on_azurite() {
    let Some(endpoint) = azurite_endpoint() else { return };
    let lake = AzureBlobLake::new(&endpoint, AzureAuth::AzuriteDevKey).expect("azurite lake");
    lake.ensure_containers(&["ops", "gold"]).await.expect("containers");
    suite(Arc::new(lake), &unique("azure")).await;
}

#[tokio::test]
async fn unreachable_storage_is_transient() {
    let lake = AzureBlobLake::new("http://127.0.0.1:9/devstoreaccount1", AzureAuth::AzuriteDevKey).expect("lake");
    let r = lake.get("ops/x").await;
    assert!(
        matches!(r, Err(LakeError::Transient { .. })),
        "connection refused must be transient: {r:?}"
    );
}
