//! Blob storage: the `BlobStore` trait and its settings; the filesystem backend (default) is in
//! `filesystem.rs`, the S3 one in `s3.rs`.
//!
//! Both backends keep the same contract (the integration suite runs against each): keys are
//! validated by [`validate_key`] before any I/O, deleting a missing key succeeds, listings are
//! sorted, and a blob is either wholly present under its key or absent.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use tokio::io::AsyncRead;

mod filesystem;
mod s3;

pub use filesystem::FilesystemBlobStore;
pub use s3::S3BlobStore;

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
    pub secret_key: Option<SecretString>,
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
