//! `Blobs`: the operations Assay needs on large objects, the same on every backend.
//!
//! A concrete type rather than a trait of Assay's own: object_store's `ObjectStore` already is
//! the seam between backends, and what Assay adds (key rules, streaming writes with a hash,
//! ranges with clear errors, prefix semantics) is the same code for all of them.
//!
//! Semantics every backend shares (the conformance suite pins them):
//! - A list or delete prefix matches whole segments: `a/b` covers `a/b/x`, not `a/bc` nor the
//!   object `a/b` itself; the empty prefix covers everything.
//! - A read range `[start, end)` must start inside the object (`start < size`, or `start == 0`
//!   on the empty object) and not end before it starts; an `end` past the object is cut at its
//!   end, so `start..u64::MAX` reads to the end.
//! - On `file://`, a key cannot be both an object and the parent of another (`a/b` and
//!   `a/b/c`): they are a file and a directory. Give objects and "directories" distinct names.

use crate::error::BlobError;
use crate::key::{key_path, prefix_path};
use crate::open::backend;
use crate::url::BlobUrl;
use crate::writer::{BlobInfo, BlobWriter};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use std::ops::Range;
use std::sync::Arc;

/// A store of large objects under one [`BlobUrl`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: BlobUrl,
    store: Arc<dyn ObjectStore>,
}

/// An object being read: its total size, the range returned, and the bytes as a stream of
/// chunks.
pub struct BlobRead {
    /// The size of the whole object.
    pub size: u64,
    /// The byte range `stream` yields.
    pub range: Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, BlobError>>,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl Blobs {
    /// Opens the store `url` names. `file://` creates the directory if it is missing. `s3://`
    /// reads, through `env`: `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (optional; `http://`
    /// is allowed), `AWS_REGION` or `AWS_DEFAULT_REGION` (default `us-east-1`), and the
    /// secrets `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (both required) and
    /// `AWS_SESSION_TOKEN`, each of which may instead be given as `<NAME>_FILE`, a file holding
    /// the value. Requests are path-style. Opening does not contact the server: a wrong
    /// endpoint or credentials show at the first operation.
    pub async fn open(
        url: &BlobUrl,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, BlobError> {
        let store = backend(url, env).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.clone(),
                store,
            }),
        })
    }

    /// [`Blobs::open`] with the process's environment.
    pub async fn open_env(url: &BlobUrl) -> Result<Self, BlobError> {
        Self::open(url, &|name| std::env::var(name).ok()).await
    }

    /// The URL this store was opened with.
    pub fn url(&self) -> &BlobUrl {
        &self.inner.url
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// A streaming writer for `key`; see [`BlobWriter`].
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let path = key_path(key)?;
        Ok(BlobWriter::new(Arc::clone(self.store()), path, key))
    }

    /// Stores a small object whole, replacing any object at `key`.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<BlobInfo, BlobError> {
        let path = key_path(key)?;
        let info = BlobInfo::of(&bytes);
        self.store()
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| BlobError::from_store(e, key))?;
        Ok(info)
    }

    /// Stores a small object only if `key` is free: [`BlobError::AlreadyExists`] otherwise,
    /// and the object there is unchanged.
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<BlobInfo, BlobError> {
        let path = key_path(key)?;
        let info = BlobInfo::of(&bytes);
        self.store()
            .put_opts(&path, PutPayload::from(bytes), PutMode::Create.into())
            .await
            .map_err(|e| BlobError::from_store(e, key))?;
        Ok(info)
    }

    /// The size of the object at `key`, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let path = key_path(key)?;
        match self.store().head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(BlobError::from_store(e, key)),
        }
    }

    /// Reads the object at `key`, whole (`None`) or the byte range `[start, end)` (see the
    /// module's documentation for the range rules). Never holds the object in one buffer.
    pub async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobRead, BlobError> {
        let path = key_path(key)?;
        let Some(asked) = range else {
            let got = self
                .store()
                .get(&path)
                .await
                .map_err(|e| BlobError::from_store(e, key))?;
            let size = got.meta.size;
            let range = got.range.clone();
            return Ok(BlobRead {
                size,
                range,
                stream: chunks(got.into_stream(), key),
            });
        };
        let size = self
            .store()
            .head(&path)
            .await
            .map_err(|e| BlobError::from_store(e, key))?
            .size;
        // The empty object has no byte to start at, yet reading it from 0 is reading it whole.
        let from_start_of_empty = asked.start == 0 && size == 0;
        if asked.start > asked.end || (asked.start >= size && !from_start_of_empty) {
            return Err(BlobError::InvalidRange {
                key: key.to_string(),
                start: asked.start,
                end: asked.end,
                size,
            });
        }
        let range = asked.start..asked.end.min(size);
        if range.is_empty() {
            return Ok(BlobRead {
                size,
                range,
                stream: stream::empty().boxed(),
            });
        }
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(range.clone())));
        let got = self
            .store()
            .get_opts(&path, options)
            .await
            .map_err(|e| BlobError::from_store(e, key))?;
        Ok(BlobRead {
            size,
            range,
            stream: chunks(got.into_stream(), key),
        })
    }

    /// The whole object at `key` in one buffer: for small objects and tests.
    pub async fn read_all(&self, key: &str) -> Result<Bytes, BlobError> {
        let read = self.read(key, None).await?;
        let capacity = usize::try_from(read.size).map_err(|_| {
            BlobError::Backend(format!(
                "{key:?} ({} bytes) does not fit in memory",
                read.size
            ))
        })?;
        let mut out = BytesMut::with_capacity(capacity);
        let mut stream = read.stream;
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Deletes the object at `key`; no object there is fine.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = key_path(key)?;
        match self.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BlobError::from_store(e, key)),
        }
    }

    /// Deletes every object under `prefix` (whole segments; `""` is everything) and returns how
    /// many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        let keys = self.list(prefix).await?;
        let paths: Vec<object_store::Result<Path>> = keys
            .iter()
            .map(|(k, _)| {
                key_path(k).map_err(|e| object_store::Error::Generic {
                    store: "assay-blob",
                    source: Box::new(e),
                })
            })
            .collect();
        let mut deleted = self.store().delete_stream(stream::iter(paths).boxed());
        let mut count = 0u64;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => count += 1,
                // Deleted by someone else meanwhile: gone all the same, not counted.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BlobError::from_store(e, prefix)),
            }
        }
        Ok(count)
    }

    /// The objects under `prefix` (whole segments; `""` is everything) with their sizes, sorted
    /// by key. Keys are relative to the store, as given to `put`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, BlobError> {
        let path = prefix_path(prefix)?;
        let under = format!("{prefix}/");
        let mut out: Vec<(String, u64)> = self
            .store()
            .list(path.as_ref())
            .map_err(|e| BlobError::from_store(e, prefix))
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_filter(|(key, _)| {
                futures::future::ready(prefix.is_empty() || key.starts_with(&under))
            })
            .try_collect()
            .await?;
        out.sort_unstable();
        Ok(out)
    }
}

/// An object_store byte stream as blob chunks, errors naming `key`.
fn chunks(
    s: BoxStream<'static, object_store::Result<Bytes>>,
    key: &str,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    let key = key.to_string();
    s.map_err(move |e| BlobError::from_store(e, &key)).boxed()
}
