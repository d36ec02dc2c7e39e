//! The BlobStore contract, run unchanged against the filesystem backend and against a real
//! S3-protocol server (s3s-fs) started inside the test process; plus what only one backend
//! can show (escaping the root, an unreachable endpoint).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use avatar_platform::core::storage::{
    BlobMeta, BlobStore, FilesystemBlobStore, S3BlobStore, S3Settings, StorageBackend,
    StorageError, StorageSettings, build_blob_store,
};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ------------------------------------------------------------------------------------------------
// In-process S3 server
// ------------------------------------------------------------------------------------------------

/// A real S3-protocol server (s3s-fs over a temporary directory) listening on 127.0.0.1.
/// It stops accepting connections when dropped.
pub struct TestS3 {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    _dir: TempDir,
    accept_loop: JoinHandle<()>,
}

impl TestS3 {
    /// Settings for a bucket on this server, path-style, created on start-up.
    pub fn settings(&self, bucket: &str) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key: Some(self.access_key.clone()),
            secret_key: Some(self.secret_key.clone().into()),
            path_style: true,
            create_bucket: true,
        }
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Starts an S3 server on a random port of 127.0.0.1, requiring SigV4 with its own keys.
pub async fn start_s3_server() -> TestS3 {
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("temporary directory for s3s-fs");
    let filesystem = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs over the temporary dir");
    let access_key = "test-access-key".to_owned();
    let secret_key = format!("test-secret-{}", uuid::Uuid::new_v4().simple());
    let service = {
        let mut builder = s3s::service::S3ServiceBuilder::new(filesystem);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        builder.build()
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the S3 server");
    let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    TestS3 {
        endpoint,
        access_key,
        secret_key,
        _dir: dir,
        accept_loop,
    }
}

fn install_crypto_provider() {
    // reqwest (inside rust-s3) needs one process-wide rustls provider; the app installs the
    // same one at start-up.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

// ------------------------------------------------------------------------------------------------
// The contract
// ------------------------------------------------------------------------------------------------

const MIB: usize = 1024 * 1024;

/// Everything a `BlobStore` promises. Uses keys under `contract/` only.
pub async fn blob_store_contract(store: Arc<dyn BlobStore>) {
    let store = store.as_ref();
    readiness_check_passes(store).await;
    put_then_get_returns_the_same_bytes(store).await;
    put_replaces_an_existing_blob(store).await;
    empty_blobs_are_blobs(store).await;
    streamed_upload_of_many_megabytes_round_trips(store).await;
    failed_streamed_upload_leaves_the_previous_blob(store).await;
    missing_blobs_are_reported_as_missing(store).await;
    delete_removes_and_is_idempotent(store).await;
    list_returns_sorted_keys_under_the_prefix_only(store).await;
    keys_with_spaces_and_unicode_round_trip(store).await;
    invalid_keys_are_rejected_by_every_operation(store).await;
}

async fn readiness_check_passes(store: &dyn BlobStore) {
    store.check().await.expect("check() on a healthy backend");
}

async fn put_then_get_returns_the_same_bytes(store: &dyn BlobStore) {
    let key = "contract/roundtrip/hello.txt";
    store
        .put(key, Bytes::from_static(b"hello, blobs"), "text/plain")
        .await
        .expect("put");
    assert_eq!(
        store.get(key).await.expect("get"),
        Bytes::from_static(b"hello, blobs")
    );
    assert_eq!(
        store.head(key).await.expect("head"),
        Some(BlobMeta {
            size: 12,
            content_type: Some("text/plain".into())
        })
    );
    assert_eq!(read_all(store, key).await, b"hello, blobs");
}

async fn put_replaces_an_existing_blob(store: &dyn BlobStore) {
    let key = "contract/overwrite.json";
    store
        .put(key, Bytes::from_static(b"first version"), "text/plain")
        .await
        .expect("first put");
    store
        .put(key, Bytes::from_static(b"{}"), "application/json")
        .await
        .expect("second put");
    assert_eq!(
        store.get(key).await.expect("get"),
        Bytes::from_static(b"{}")
    );
    assert_eq!(
        store.head(key).await.expect("head"),
        Some(BlobMeta {
            size: 2,
            content_type: Some("application/json".into())
        })
    );
}

async fn empty_blobs_are_blobs(store: &dyn BlobStore) {
    let key = "contract/empty";
    store
        .put(key, Bytes::new(), "application/octet-stream")
        .await
        .expect("put empty");
    assert_eq!(store.get(key).await.expect("get empty"), Bytes::new());
    assert_eq!(
        store.head(key).await.expect("head").map(|meta| meta.size),
        Some(0)
    );

    let mut nothing = ChunkedReader::new(Vec::new(), 1);
    let stored = store
        .put_stream("contract/empty-stream", &mut nothing, "text/plain")
        .await
        .expect("put_stream of an empty body");
    assert_eq!(stored, 0);
    assert_eq!(
        store.get("contract/empty-stream").await.expect("get"),
        Bytes::new()
    );
}

async fn streamed_upload_of_many_megabytes_round_trips(store: &dyn BlobStore) {
    // 12 MiB crosses rust-s3's 8 MiB part size: a multipart upload of two parts on S3.
    let body = pattern(12 * MIB);
    let key = "contract/large/twelve-mebibytes.bin";
    let mut reader = ChunkedReader::new(body.clone(), 100_003);
    let stored = store
        .put_stream(key, &mut reader, "application/x-test")
        .await
        .expect("put_stream 12 MiB");
    assert_eq!(
        stored,
        body.len() as u64,
        "put_stream reports the bytes stored"
    );
    assert_eq!(
        store.head(key).await.expect("head"),
        Some(BlobMeta {
            size: body.len() as u64,
            content_type: Some("application/x-test".into())
        })
    );
    let streamed = read_all(store, key).await;
    assert!(
        streamed == body,
        "open() yields the bytes that were streamed in"
    );
    let whole = store.get(key).await.expect("get 12 MiB");
    assert!(
        whole == body,
        "get() yields the bytes that were streamed in"
    );
}

async fn failed_streamed_upload_leaves_the_previous_blob(store: &dyn BlobStore) {
    let key = "contract/atomic/document.bin";
    store
        .put(key, Bytes::from_static(b"previous"), "text/plain")
        .await
        .expect("put");
    // Fails after 9 MiB: past the first part of a multipart upload on S3.
    let mut failing = ChunkedReader::new(pattern(9 * MIB), 1 << 20).failing_at_end();
    let outcome = store
        .put_stream(key, &mut failing, "application/octet-stream")
        .await;
    assert!(
        outcome.is_err(),
        "a reader error fails the upload: {outcome:?}"
    );
    assert_eq!(
        store.get(key).await.expect("the previous blob is intact"),
        Bytes::from_static(b"previous")
    );
    assert_eq!(
        store.head(key).await.expect("head"),
        Some(BlobMeta {
            size: 8,
            content_type: Some("text/plain".into())
        }),
        "and so is its content type"
    );

    let fresh = "contract/atomic/never-written.bin";
    let mut failing = ChunkedReader::new(pattern(MIB), 64 * 1024).failing_at_end();
    assert!(
        store
            .put_stream(fresh, &mut failing, "text/plain")
            .await
            .is_err()
    );
    assert_eq!(
        store.head(fresh).await.expect("head"),
        None,
        "no partial blob"
    );
}

async fn missing_blobs_are_reported_as_missing(store: &dyn BlobStore) {
    let key = "contract/missing/nothing-here";
    assert_eq!(store.head(key).await.expect("head of a missing key"), None);
    assert!(
        matches!(store.get(key).await, Err(StorageError::NotFound(ref missing)) if missing == key),
        "get of a missing key is NotFound"
    );
    assert!(
        matches!(store.open(key).await, Err(StorageError::NotFound(_))),
        "open of a missing key is NotFound"
    );
}

async fn delete_removes_and_is_idempotent(store: &dyn BlobStore) {
    let key = "contract/delete/me.txt";
    store
        .put(key, Bytes::from_static(b"bye"), "text/plain")
        .await
        .expect("put");
    store.delete(key).await.expect("delete");
    assert!(matches!(
        store.get(key).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(store.head(key).await.expect("head"), None);
    store.delete(key).await.expect("deleting again is fine");
    store
        .delete("contract/delete/never-existed")
        .await
        .expect("deleting a missing key is fine");
    // The key's name is free for reuse, also as a "directory".
    store
        .put(
            "contract/delete/me.txt/child",
            Bytes::from_static(b"x"),
            "text/plain",
        )
        .await
        .expect("put below a deleted key");
}

async fn list_returns_sorted_keys_under_the_prefix_only(store: &dyn BlobStore) {
    for key in [
        "contract/list/b.txt",
        "contract/list/a/2.txt",
        "contract/list/a/1.txt",
        "contract/listing-other/x.txt",
        "contract/other/list/y.txt",
    ] {
        store
            .put(key, Bytes::from_static(b"."), "text/plain")
            .await
            .expect("put for listing");
    }
    assert_eq!(
        store.list("contract/list/").await.expect("list"),
        [
            "contract/list/a/1.txt",
            "contract/list/a/2.txt",
            "contract/list/b.txt"
        ]
    );
    assert_eq!(
        store.list("contract/list/a/").await.expect("list"),
        ["contract/list/a/1.txt", "contract/list/a/2.txt"]
    );
    // A prefix is a string prefix, not a directory.
    assert_eq!(
        store.list("contract/list").await.expect("list"),
        [
            "contract/list/a/1.txt",
            "contract/list/a/2.txt",
            "contract/list/b.txt",
            "contract/listing-other/x.txt"
        ]
    );
    assert_eq!(
        store.list("contract/list/a/1").await.expect("list"),
        ["contract/list/a/1.txt"]
    );
    assert!(
        store
            .list("contract/nothing/")
            .await
            .expect("list")
            .is_empty()
    );
    let everything = store.list("").await.expect("list everything");
    assert!(everything.contains(&"contract/other/list/y.txt".to_owned()));
    assert!(
        everything.windows(2).all(|pair| pair[0] < pair[1]),
        "sorted"
    );
}

async fn keys_with_spaces_and_unicode_round_trip(store: &dyn BlobStore) {
    let key = "contract/names/ä b+c (1).txt";
    store
        .put(key, Bytes::from_static(b"named"), "text/plain")
        .await
        .expect("put");
    assert_eq!(
        store.get(key).await.expect("get"),
        Bytes::from_static(b"named")
    );
    assert_eq!(
        store.list("contract/names/").await.expect("list"),
        [key.to_owned()]
    );
    store.delete(key).await.expect("delete");
    assert_eq!(store.head(key).await.expect("head"), None);
}

async fn invalid_keys_are_rejected_by_every_operation(store: &dyn BlobStore) {
    for key in ["../x", "/abs", "a/../b", "", "a\\b", "nul\0"] {
        let invalid = |result: Result<(), StorageError>, operation: &str| {
            assert!(
                matches!(result, Err(StorageError::InvalidKey(_))),
                "{operation} with key {key:?} must be InvalidKey, got {result:?}"
            );
        };
        invalid(
            store.put(key, Bytes::from_static(b"x"), "text/plain").await,
            "put",
        );
        let mut reader = ChunkedReader::new(b"x".to_vec(), 1);
        invalid(
            store
                .put_stream(key, &mut reader, "text/plain")
                .await
                .map(drop),
            "put_stream",
        );
        invalid(store.get(key).await.map(drop), "get");
        invalid(store.open(key).await.map(drop), "open");
        invalid(store.head(key).await.map(drop), "head");
        invalid(store.delete(key).await, "delete");
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

async fn read_all(store: &dyn BlobStore, key: &str) -> Vec<u8> {
    let mut reader = store.open(key).await.expect("open");
    let mut data = Vec::new();
    reader
        .read_to_end(&mut data)
        .await
        .expect("read the stream");
    data
}

/// Bytes that differ from part to part, so misordered or repeated parts are caught.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Serves `data` in reads of at most `chunk` bytes (uploads must not rely on full reads);
/// optionally fails once the data is exhausted, like a client that disconnects.
struct ChunkedReader {
    data: Vec<u8>,
    position: usize,
    chunk: usize,
    fail_at_end: bool,
}

impl ChunkedReader {
    fn new(data: Vec<u8>, chunk: usize) -> Self {
        Self {
            data,
            position: 0,
            chunk,
            fail_at_end: false,
        }
    }

    fn failing_at_end(mut self) -> Self {
        self.fail_at_end = true;
        self
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let remaining = self.data.len() - self.position;
        if remaining == 0 && self.fail_at_end {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client went away",
            )));
        }
        let take = remaining.min(self.chunk).min(buf.remaining());
        let start = self.position;
        buf.put_slice(&self.data[start..start + take]);
        self.position += take;
        Poll::Ready(Ok(()))
    }
}

fn entries_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn filesystem_backend_passes_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FilesystemBlobStore::new(dir.path().join("blobs")).expect("filesystem store");
    blob_store_contract(Arc::new(store)).await;
    assert!(
        entries_in(&dir.path().join("blobs/tmp")).is_empty(),
        "no temporary files are left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_passes_contract() {
    let server = start_s3_server().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let settings = StorageSettings {
        backend: StorageBackend::S3,
        s3: server.settings("contract-bucket"),
        ..StorageSettings::default()
    };
    let store = build_blob_store(&settings, data_dir.path())
        .await
        .expect("S3 store with its bucket created");
    assert_eq!(store.backend_name(), "s3");
    blob_store_contract(store).await;
}

#[tokio::test]
async fn build_blob_store_defaults_to_filesystem_under_the_data_dir() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let store = build_blob_store(&StorageSettings::default(), data_dir.path())
        .await
        .expect("default store");
    assert_eq!(store.backend_name(), "filesystem");
    store
        .put("a/b.txt", Bytes::from_static(b"x"), "text/plain")
        .await
        .expect("put");
    assert!(data_dir.path().join("blobs").is_dir());
    assert!(!store.list("").await.expect("list").is_empty());
}

#[tokio::test]
async fn filesystem_backend_refuses_to_write_outside_its_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside dir");
    let root = dir.path().join("root");
    let store = FilesystemBlobStore::new(root.clone()).expect("filesystem store");

    for key in [
        "../outside/x",
        "../../outside/x",
        "a/../../../outside/x",
        "/tmp/x",
    ] {
        let result = store.put(key, Bytes::from_static(b"x"), "text/plain").await;
        assert!(
            matches!(result, Err(StorageError::InvalidKey(_))),
            "{key:?}: {result:?}"
        );
    }
    // A symlinked directory inside the root does not lead out of it either.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, root.join("objects/link")).expect("symlink");
        for key in ["link/escape.txt", "link/deeper/escape.txt"] {
            let result = store.put(key, Bytes::from_static(b"x"), "text/plain").await;
            assert!(
                matches!(result, Err(StorageError::InvalidKey(_))),
                "{key:?}: {result:?}"
            );
            let mut reader = ChunkedReader::new(b"x".to_vec(), 1);
            let streamed = store.put_stream(key, &mut reader, "text/plain").await;
            assert!(
                matches!(streamed, Err(StorageError::InvalidKey(_))),
                "{streamed:?}"
            );
        }
        std::fs::write(outside.join("secret.txt"), b"secret").expect("outside file");
        assert!(matches!(
            store.get("link/secret.txt").await,
            Err(StorageError::InvalidKey(_))
        ));
    }
    assert_eq!(
        entries_in(&outside),
        ["secret.txt"],
        "nothing was written outside"
    );
    assert!(entries_in(&dir.path().join("root/tmp")).is_empty());
}

#[tokio::test]
async fn filesystem_directories_are_not_blobs() {
    // On S3 a "directory" is only a shared key prefix; on disk it is a real directory, which
    // must still read as "no blob here". (s3s-fs, the test S3 server, answers 500 for it, so
    // this is not part of the shared contract.)
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FilesystemBlobStore::new(dir.path().to_path_buf()).expect("filesystem store");
    store
        .put("folder/file.txt", Bytes::from_static(b"x"), "text/plain")
        .await
        .expect("put");
    assert!(matches!(
        store.get("folder").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store.open("folder").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(store.head("folder").await.expect("head"), None);
    assert!(matches!(
        store.get("folder/file.txt/below-a-file").await,
        Err(StorageError::NotFound(_))
    ));
    store
        .delete("folder")
        .await
        .expect("deleting a directory name is a no-op");
    assert_eq!(store.list("").await.expect("list"), ["folder/file.txt"]);
}

#[tokio::test]
async fn filesystem_check_fails_when_the_root_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("blobs");
    let store = FilesystemBlobStore::new(root.clone()).expect("filesystem store");
    store.check().await.expect("healthy");
    std::fs::remove_dir_all(&root).expect("remove root");
    assert!(store.check().await.is_err());
}

#[tokio::test]
async fn s3_check_fails_when_nothing_listens() {
    install_crypto_provider();
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key: Some("key".into()),
        secret_key: Some("not-in-messages".into()),
        ..S3Settings::default()
    };
    let store = S3BlobStore::new(&settings).expect("configuring needs no connection");
    let error = store
        .check()
        .await
        .expect_err("check against a closed port");
    assert!(matches!(error, StorageError::Backend(_)), "{error:?}");
    assert!(!error.to_string().contains("not-in-messages"));
    assert!(!format!("{store:?}").contains("not-in-messages"));

    let storage = StorageSettings {
        backend: StorageBackend::S3,
        s3: settings,
        ..StorageSettings::default()
    };
    let data_dir = tempfile::tempdir().expect("temp dir");
    assert!(
        build_blob_store(&storage, data_dir.path()).await.is_err(),
        "start-up fails when the bucket cannot be ensured"
    );
}

#[tokio::test]
async fn s3_ensure_bucket_is_idempotent_and_credentials_are_checked() {
    let server = start_s3_server().await;
    let store = S3BlobStore::new(&server.settings("idempotent")).expect("store");
    // Before the bucket exists readiness fails, as a backend error rather than "no such blob".
    let missing_bucket = store.check().await;
    assert!(
        matches!(missing_bucket, Err(StorageError::Backend(ref message)) if message.contains("NoSuchBucket")),
        "{missing_bucket:?}"
    );
    store.ensure_bucket().await.expect("create");
    store.ensure_bucket().await.expect("already exists is fine");
    store.check().await.expect("healthy");

    let mut wrong = server.settings("idempotent");
    wrong.secret_key = Some("wrong-secret".into());
    let rejected = S3BlobStore::new(&wrong).expect("store");
    let error = rejected.check().await.expect_err("wrong secret");
    assert!(!error.to_string().contains("wrong-secret"), "{error}");
}
