//! Blob storage: the `BlobStore` trait, its filesystem (default) and S3 backends, their settings.
//!
//! Both backends keep the same contract (the integration suite runs against each): keys are
//! validated by [`validate_key`] before any I/O, deleting a missing key succeeds, listings are
//! sorted, and a blob is either wholly present under its key or absent.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncWriteExt};

/// Longest accepted key, in bytes (the S3 limit).
pub const MAX_KEY_BYTES: usize = 1024;

// ------------------------------------------------------------------------------------------------
// Settings
// ------------------------------------------------------------------------------------------------

/// `[storage]` in the settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    pub filesystem: FilesystemSettings,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Filesystem,
    S3,
}

/// `[storage.filesystem]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FilesystemSettings {
    /// Where blobs live; unset or empty means `<data_dir>/blobs`.
    #[serde(deserialize_with = "empty_as_none")]
    pub root: Option<PathBuf>,
}

/// `[storage.s3]`: any S3-compatible service (AWS, MinIO, RustFS, ...).
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Base URL such as `http://127.0.0.1:9000`; unset or empty means AWS for `region`.
    #[serde(deserialize_with = "empty_as_none")]
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Unset or empty: credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the
    /// AWS profile.
    #[serde(deserialize_with = "empty_as_none")]
    pub access_key: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub secret_key: Option<String>,
    /// `http://endpoint/bucket/key` rather than `http://bucket.endpoint/key`; self-hosted
    /// services usually need it.
    pub path_style: bool,
    /// Create the bucket at start-up when it does not exist.
    pub create_bucket: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".to_owned(),
            bucket: "avatar-platform".to_owned(),
            access_key: None,
            secret_key: None,
            path_style: true,
            create_bucket: true,
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("path_style", &self.path_style)
            .field("create_bucket", &self.create_bucket)
            .finish()
    }
}

/// The settings files spell "not set" as `""`; treat it like a missing value.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value.filter(|value| !value.trim().is_empty()).map(T::from))
}

// ------------------------------------------------------------------------------------------------
// Contract
// ------------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found: {0}")]
    NotFound(String),
    #[error("invalid blob key: {0}")]
    InvalidKey(String),
    /// The backend refused or failed; the message never carries credentials.
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What `head` knows about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    pub content_type: Option<String>,
}

/// A streaming reader over one blob.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Stores `data` under `key`, replacing any previous blob.
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<(), StorageError>;

    /// Stores everything `reader` yields under `key` without holding it all in memory;
    /// returns the number of bytes stored.
    async fn put_stream(
        &self,
        key: &str,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        content_type: &str,
    ) -> Result<u64, StorageError>;

    /// The whole blob; [`StorageError::NotFound`] when there is none.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;

    /// A streaming read of the blob; [`StorageError::NotFound`] when there is none.
    async fn open(&self, key: &str) -> Result<BlobReader, StorageError>;

    /// Size and content type, or `None` when there is no blob under `key`.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError>;

    /// Removes the blob; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Every key starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Readiness probe: the backend answers and accepts writes (filesystem) or requests (S3).
    async fn check(&self) -> Result<(), StorageError>;

    fn backend_name(&self) -> &'static str;
}

/// The one gate every key passes before any backend touches it.
///
/// Rejects: empty keys, keys over [`MAX_KEY_BYTES`], a leading `/`, empty, `.` or `..`
/// segments, backslashes and control characters (NUL included). Together these make sure a
/// key maps to exactly one path below the filesystem root, and to the same object on S3.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let reject = |reason: &str| Err(StorageError::InvalidKey(format!("{key:?}: {reason}")));
    if key.is_empty() {
        return reject("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return reject("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return reject("starts with `/`");
    }
    if key.contains('\\') {
        return reject("contains a backslash");
    }
    if key.chars().any(char::is_control) {
        return reject("contains a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return reject("contains an empty segment (`//` or a trailing `/`)"),
            "." | ".." => return reject("contains a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Picks and prepares the configured backend. The filesystem root defaults to
/// `<data_dir>/blobs`; the S3 bucket is created first when `create_bucket` is set.
pub async fn build_blob_store(
    settings: &StorageSettings,
    data_dir: &Path,
) -> Result<Arc<dyn BlobStore>, StorageError> {
    match settings.backend {
        StorageBackend::Filesystem => {
            let root = settings
                .filesystem
                .root
                .clone()
                .unwrap_or_else(|| data_dir.join("blobs"));
            Ok(Arc::new(FilesystemBlobStore::new(root)?))
        }
        StorageBackend::S3 => {
            let store = S3BlobStore::new(&settings.s3)?;
            if settings.s3.create_bucket {
                store.ensure_bucket().await?;
            }
            Ok(Arc::new(store))
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Filesystem
// ------------------------------------------------------------------------------------------------

/// Blobs as files under one root directory, for single-machine deployments.
///
/// Layout: `objects/<key>` holds the bytes, `meta/<key>` the content type, `tmp/` uploads in
/// progress. A write goes to `tmp/` (same filesystem, so the final rename is atomic) and is
/// synced before it is renamed into place: a crash leaves at most a stray file in `tmp/`,
/// never a partial blob under a key. (A crash between writing the content type and the bytes
/// of an overwrite can pair the old bytes with the new content type.) Like most filesystems-as-object-stores, `a` and `a/b`
/// cannot both be keys (one would need to be a file and a directory at once).
#[derive(Debug, Clone)]
pub struct FilesystemBlobStore {
    objects: PathBuf,
    meta: PathBuf,
    tmp: PathBuf,
}

/// Buffer between an upload stream and its temporary file.
const FILESYSTEM_WRITE_BUFFER_BYTES: usize = 256 * 1024;

impl FilesystemBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: PathBuf) -> Result<Self, StorageError> {
        for sub in ["objects", "meta", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Canonical paths, so containment checks compare like with like.
        let root = std::fs::canonicalize(&root)?;
        Ok(Self {
            objects: root.join("objects"),
            meta: root.join("meta"),
            tmp: root.join("tmp"),
        })
    }

    fn object_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.objects.join(key))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.meta.join(key)
    }

    fn temp_file(&self) -> TempFile {
        TempFile {
            path: Some(self.tmp.join(uuid::Uuid::new_v4().simple().to_string())),
        }
    }

    /// Refuses a path that, through a symlinked directory, resolves outside `base`. Checks the
    /// nearest directory that exists, so it also runs before directories are created.
    async fn ensure_inside(path: &Path, base: &Path) -> Result<(), StorageError> {
        let mut ancestor = path.parent();
        while let Some(dir) = ancestor {
            match tokio::fs::canonicalize(dir).await {
                Ok(real) if real.starts_with(base) => return Ok(()),
                Ok(_) => {
                    return Err(StorageError::InvalidKey(format!(
                        "{} resolves outside the storage root",
                        path.display()
                    )));
                }
                Err(error) if is_missing(&error) => ancestor = dir.parent(),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Moves a finished temporary file to `destination`, creating directories as needed.
    async fn commit(
        &self,
        temp: TempFile,
        destination: &Path,
        base: &Path,
    ) -> Result<(), StorageError> {
        let Some(source) = temp.path.as_deref() else {
            return Err(StorageError::Backend(
                "temporary file already committed".into(),
            ));
        };
        Self::ensure_inside(destination, base).await?;
        if let Some(parent) = destination.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        match tokio::fs::rename(source, destination).await {
            Ok(()) => {}
            // A concurrent delete pruned the freshly created directory: recreate it once.
            Err(error) if error.kind() == ErrorKind::NotFound => {
                if let Some(parent) = destination.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::rename(source, destination).await?;
            }
            Err(error) => return Err(error.into()),
        }
        temp.disarm();
        Ok(())
    }

    async fn write_meta(&self, key: &str, content_type: &str) -> Result<(), StorageError> {
        let temp = self.temp_file();
        write_synced(temp.path()?, content_type.as_bytes()).await?;
        self.commit(temp, &self.meta_path(key), &self.meta).await
    }

    async fn read_meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        match tokio::fs::read_to_string(self.meta_path(key)).await {
            Ok(content_type) if content_type.is_empty() => Ok(None),
            Ok(content_type) => Ok(Some(content_type)),
            Err(error) if is_missing(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Removes now-empty directories from `path` up to (not including) `base`, so deleted
    /// prefixes do not linger and block a future key of the same name.
    async fn prune_empty_dirs(path: &Path, base: &Path) {
        let mut current = path.parent();
        while let Some(dir) = current {
            if dir == base || !dir.starts_with(base) {
                break;
            }
            // Fails (and stops) on the first non-empty directory.
            if tokio::fs::remove_dir(dir).await.is_err() {
                break;
            }
            current = dir.parent();
        }
    }

    /// Opens the blob's file, or NotFound (also when the key names a directory).
    async fn open_file(&self, key: &str) -> Result<tokio::fs::File, StorageError> {
        let path = self.object_path(key)?;
        Self::ensure_inside(&path, &self.objects).await?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|error| not_found_or(error, key))?;
        if !file.metadata().await?.is_file() {
            return Err(StorageError::NotFound(key.to_owned()));
        }
        Ok(file)
    }
}

#[async_trait]
impl BlobStore for FilesystemBlobStore {
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<(), StorageError> {
        let path = self.object_path(key)?;
        Self::ensure_inside(&path, &self.objects).await?;
        let temp = self.temp_file();
        write_synced(temp.path()?, &data).await?;
        // Metadata once the bytes are safely down, before they become visible: a failed
        // upload changes nothing, and a new blob never appears without its content type.
        self.write_meta(key, content_type).await?;
        self.commit(temp, &path, &self.objects).await
    }

    async fn put_stream(
        &self,
        key: &str,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        content_type: &str,
    ) -> Result<u64, StorageError> {
        let path = self.object_path(key)?;
        Self::ensure_inside(&path, &self.objects).await?;
        let temp = self.temp_file();
        let file = tokio::fs::File::create(temp.path()?).await?;
        let mut writer = tokio::io::BufWriter::with_capacity(FILESYSTEM_WRITE_BUFFER_BYTES, file);
        let size = tokio::io::copy(reader, &mut writer).await?;
        writer.flush().await?;
        writer.get_mut().sync_all().await?;
        drop(writer);
        self.write_meta(key, content_type).await?;
        self.commit(temp, &path, &self.objects).await?;
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.object_path(key)?;
        Self::ensure_inside(&path, &self.objects).await?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(error) => Err(not_found_or(error, key)),
        }
    }

    async fn open(&self, key: &str) -> Result<BlobReader, StorageError> {
        Ok(Box::pin(self.open_file(key).await?))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError> {
        let path = self.object_path(key)?;
        Self::ensure_inside(&path, &self.objects).await?;
        let metadata = match tokio::fs::metadata(&path).await {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return Ok(None),
            Err(error) if is_missing(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(Some(BlobMeta {
            size: metadata.len(),
            content_type: self.read_meta(key).await?,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.object_path(key)?;
        Self::ensure_inside(&path, &self.objects).await?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Self::prune_empty_dirs(&path, &self.objects).await,
            Err(error) if is_missing(&error) => {}
            Err(error) => return Err(error.into()),
        }
        let meta = self.meta_path(key);
        match tokio::fs::remove_file(&meta).await {
            Ok(()) => Self::prune_empty_dirs(&meta, &self.meta).await,
            Err(error) if is_missing(&error) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Walk only the directory the prefix pins down (when it is a valid key path);
        // the string filter below keeps the answer exact either way.
        let start = match prefix.rsplit_once('/') {
            Some((dir, _)) if validate_key(dir).is_ok() => self.objects.join(dir),
            _ => self.objects.clone(),
        };
        let mut keys = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(error) if is_missing(&error) => continue,
                Err(error) => return Err(error.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let file_type = entry.file_type().await?;
                let path = entry.path();
                if file_type.is_dir() {
                    pending.push(path);
                } else if file_type.is_file()
                    && let Some(key) = key_of(&path, &self.objects)
                    && key.starts_with(prefix)
                {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StorageError> {
        if !tokio::fs::metadata(&self.objects).await?.is_dir() {
            return Err(StorageError::Backend(format!(
                "{} is not a directory",
                self.objects.display()
            )));
        }
        let probe = self.temp_file();
        tokio::fs::write(probe.path()?, b"ok").await?;
        tokio::fs::remove_file(probe.path()?).await?;
        probe.disarm();
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "filesystem"
    }
}

/// A file in `tmp/` that is removed unless committed: errors and cancelled uploads leave
/// nothing behind (only a process crash can).
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn path(&self) -> Result<&Path, StorageError> {
        self.path
            .as_deref()
            .ok_or_else(|| StorageError::Backend("temporary file already committed".into()))
    }

    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Blocking, but a single unlink; Drop cannot await.
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn write_synced(path: &Path, data: &[u8]) -> Result<(), StorageError> {
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(data).await?;
    file.sync_all().await?;
    Ok(())
}

/// The key of a file below `base`, if its path is one a key can name.
fn key_of(path: &Path, base: &Path) -> Option<String> {
    let relative = path.strip_prefix(base).ok()?;
    let segments: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    let key = segments?.join("/");
    validate_key(&key).is_ok().then_some(key)
}

/// Missing file, or a path through/at a directory where a key expects a file.
fn is_missing(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
}

fn not_found_or(error: std::io::Error, key: &str) -> StorageError {
    if is_missing(&error) {
        StorageError::NotFound(key.to_owned())
    } else {
        StorageError::Io(error)
    }
}

// ------------------------------------------------------------------------------------------------
// S3
// ------------------------------------------------------------------------------------------------

/// Blobs in one bucket of an S3-compatible service (rust-s3).
///
/// `open` streams the object body (rust-s3's `get_object_stream`) rather than buffering it.
pub struct S3BlobStore {
    bucket: Box<s3::Bucket>,
    region: s3::Region,
    credentials: s3::creds::Credentials,
    path_style: bool,
    /// For Debug and error messages; never includes credentials.
    endpoint: String,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    pub fn new(settings: &S3Settings) -> Result<Self, StorageError> {
        let region = match settings.endpoint.as_deref() {
            Some(endpoint) => s3::Region::Custom {
                region: settings.region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_owned(),
            },
            None => settings.region.parse().map_err(|error| {
                StorageError::Backend(format!("invalid S3 region {:?}: {error}", settings.region))
            })?,
        };
        let credentials = match settings.access_key.as_deref() {
            Some(access_key) => s3::creds::Credentials::new(
                Some(access_key),
                settings.secret_key.as_deref(),
                None,
                None,
                None,
            ),
            // Environment (AWS_ACCESS_KEY_ID, ...) or the AWS profile.
            None => s3::creds::Credentials::new(None, None, None, None, None),
        }
        .map_err(|_| {
            StorageError::Backend(
                "no S3 credentials: set storage.s3.access_key and storage.s3.secret_key, \
                 or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .into(),
            )
        })?;
        let endpoint = region.endpoint();
        let mut bucket = s3::Bucket::new(&settings.bucket, region.clone(), credentials.clone())
            .map_err(|error| s3_error("configure bucket", &settings.bucket, error))?;
        if settings.path_style {
            bucket.set_path_style();
        }
        Ok(Self {
            bucket,
            region,
            credentials,
            path_style: settings.path_style,
            endpoint,
        })
    }

    /// Creates the bucket; one that already exists (HTTP 409) counts as success.
    ///
    /// Does not ask `Bucket::exists()` first: it lists all buckets and some S3-compatible
    /// servers answer in a shape rust-s3 cannot parse (s3s-fs omits `<Owner>`).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        let name = self.bucket.name();
        let config = s3::BucketConfiguration::default();
        let created = if self.path_style {
            s3::Bucket::create_with_path_style(
                &name,
                self.region.clone(),
                self.credentials.clone(),
                config,
            )
            .await
        } else {
            s3::Bucket::create(&name, self.region.clone(), self.credentials.clone(), config).await
        };
        match created {
            Ok(response)
                if (200..300).contains(&response.response_code)
                    || response.response_code == 409 =>
            {
                Ok(())
            }
            Ok(response) => Err(StorageError::Backend(format!(
                "create bucket {name} at {}: HTTP {}",
                self.endpoint, response.response_code
            ))),
            Err(s3::error::S3Error::HttpFailWithBody(409, _)) => Ok(()),
            Err(error) => Err(s3_error("create bucket", &name, error)),
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        self.bucket
            .put_object_with_content_type(key, &data, content_type)
            .await
            .map_err(|error| s3_error("put", key, error))?;
        Ok(())
    }

    async fn put_stream(
        &self,
        key: &str,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        content_type: &str,
    ) -> Result<u64, StorageError> {
        validate_key(key)?;
        // Below one part (8 MiB) rust-s3 sends a single PUT; above, a multipart upload that it
        // aborts on failure, so no partial object becomes visible.
        let mut reader = reader;
        let response = self
            .bucket
            .put_object_stream_with_content_type(&mut reader, key, content_type)
            .await
            .map_err(|error| s3_error("put", key, error))?;
        Ok(response.uploaded_bytes() as u64)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        validate_key(key)?;
        let response = self
            .bucket
            .get_object(key)
            .await
            .map_err(|error| s3_error("get", key, error))?;
        Ok(response.bytes().clone())
    }

    async fn open(&self, key: &str) -> Result<BlobReader, StorageError> {
        validate_key(key)?;
        let response = self
            .bucket
            .get_object_stream(key)
            .await
            .map_err(|error| s3_error("get", key, error))?;
        let body = response.bytes.map_err(std::io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(body)))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError> {
        validate_key(key)?;
        match self.bucket.head_object(key).await {
            Ok((_, 404)) => Ok(None),
            Ok((head, _)) => Ok(Some(BlobMeta {
                size: head
                    .content_length
                    .and_then(|length| u64::try_from(length).ok())
                    .unwrap_or(0),
                content_type: head.content_type,
            })),
            Err(error) => match s3_error("head", key, error) {
                StorageError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        match self.bucket.delete_object(key).await {
            Ok(_) => Ok(()),
            Err(error) => match s3_error("delete", key, error) {
                StorageError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let pages = self
            .bucket
            .list(prefix.to_owned(), None)
            .await
            .map_err(|error| s3_error("list", prefix, error))?;
        let mut keys: Vec<String> = pages
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|object| object.key)
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.bucket
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .map_err(|error| s3_error("list", "", error))?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "s3"
    }
}

/// Longest part of an S3 error body kept in a message.
const S3_ERROR_BODY_CHARS: usize = 300;

/// Maps rust-s3's error: HTTP 404 is NotFound, the rest a Backend error naming the operation.
/// Requests are signed in headers, so neither URLs nor bodies carry the secret key.
fn s3_error(operation: &str, key: &str, error: s3::error::S3Error) -> StorageError {
    match error {
        // A missing bucket is a deployment problem, not a missing blob.
        s3::error::S3Error::HttpFailWithBody(404, body) if !body.contains("NoSuchBucket") => {
            StorageError::NotFound(key.to_owned())
        }
        s3::error::S3Error::HttpFailWithBody(status, body) => {
            let body: String = body.chars().take(S3_ERROR_BODY_CHARS).collect();
            StorageError::Backend(format!("S3 {operation} {key:?}: HTTP {status}: {body}"))
        }
        other => StorageError::Backend(format!("S3 {operation} {key:?}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_accepted() {
        for key in [
            "a",
            "projects/0190/documents/0191/original.pdf",
            "with space/ünïcode.txt",
            "dots.in.name/..hidden../x..y",
            &"k".repeat(MAX_KEY_BYTES),
        ] {
            assert!(validate_key(key).is_ok(), "{key:?} should be valid");
        }
    }

    #[test]
    fn keys_that_could_escape_or_alias_are_rejected() {
        for key in [
            "",
            "/abs",
            "../x",
            "a/../b",
            "a/..",
            "..",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "..\\x",
            "nul\0byte",
            "line\nbreak",
            &"k".repeat(MAX_KEY_BYTES + 1),
        ] {
            assert!(
                matches!(validate_key(key), Err(StorageError::InvalidKey(_))),
                "{key:?} should be rejected"
            );
        }
    }

    #[test]
    fn key_length_is_counted_in_bytes() {
        let key = "é".repeat(MAX_KEY_BYTES / 2 + 1);
        assert!(validate_key(&key).is_err());
    }

    #[test]
    fn empty_settings_strings_mean_unset() {
        let settings: S3Settings = serde_json::from_value(serde_json::json!({
            "endpoint": "", "access_key": "", "secret_key": "  ", "bucket": "b"
        }))
        .expect("valid settings");
        assert!(settings.endpoint.is_none());
        assert!(settings.access_key.is_none());
        assert!(settings.secret_key.is_none());
        assert!(settings.path_style && settings.create_bucket);
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let settings = S3Settings {
            secret_key: Some("hunter2".into()),
            ..S3Settings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("***"));
    }

    #[test]
    fn backend_names_are_lowercase() {
        let settings: StorageSettings =
            serde_json::from_value(serde_json::json!({ "backend": "s3" })).expect("valid");
        assert_eq!(settings.backend, StorageBackend::S3);
        assert_eq!(
            StorageSettings::default().backend,
            StorageBackend::Filesystem
        );
    }
}
