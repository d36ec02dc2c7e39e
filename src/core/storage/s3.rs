//! Blobs in a bucket of an S3-compatible service (rust-s3).

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use secrecy::ExposeSecret;
use tokio::io::AsyncRead;

use super::{BlobMeta, BlobReader, BlobStore, S3Settings, StorageError, validate_key};

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
                settings.secret_key.as_ref().map(|key| key.expose_secret()),
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
