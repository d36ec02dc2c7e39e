//! Blobs as files under one root directory (the default backend).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{BlobMeta, BlobReader, BlobStore, StorageError, validate_key};

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
