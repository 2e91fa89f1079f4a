//! The streaming writer: an object of any size with bounded memory, visible only once finished.
//!
//! Data is cut into parts of [`PART_SIZE`]. The first full part starts a multipart upload
//! (object_store's: S3's multipart API, or a staging file next to the target on `file://`);
//! each part uploads in the background while the next one fills, and the writer waits for it
//! before it sends another, so it never holds more than two parts. An object smaller than one
//! part is sent with one plain put at `finish`. Nothing is visible under the key until `finish`
//! completes the upload; `abort`, a failure, or dropping the writer aborts it.

use crate::error::BlobError;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The size of an uploaded part (S3 wants at least 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// What a finished write stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Bytes in the object.
    pub size: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
}

impl BlobInfo {
    /// The size and hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            size: u64::try_from(bytes.len()).expect("a slice's length fits in u64"),
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// A part being uploaded in the background, and its size.
type InFlight = (JoinHandle<object_store::Result<()>>, usize);

/// Writes one object in pieces; see the module's documentation.
#[derive(Debug)]
pub struct BlobWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    key: String,
    /// The part being filled.
    buf: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: Option<InFlight>,
    hasher: Sha256,
    written: u64,
    /// A call failed: the upload is in an unknown state, only `abort` (or drop) is left.
    failed: bool,
}

impl BlobWriter {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path, key: &str) -> Self {
        Self {
            store,
            path,
            key: key.to_string(),
            buf: Vec::new(),
            upload: None,
            in_flight: None,
            hasher: Sha256::new(),
            written: 0,
            failed: false,
        }
    }

    /// Appends `data`. Waits while a full part has to wait for the previous one to upload.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), BlobError> {
        self.check_usable()?;
        self.hasher.update(data);
        self.written += u64::try_from(data.len()).expect("a slice's length fits in u64");
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(PART_SIZE);
            }
            let take = (PART_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == PART_SIZE {
                let result = self.send_part().await;
                self.fail_on_error(result)?;
            }
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes the writer holds in memory now: the part being filled and the part uploading.
    /// Never more than two parts ([`PART_SIZE`]).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.in_flight.as_ref().map_or(0, |(_, n)| *n)
    }

    /// Stores what was written under the key, replacing any object there, and makes it visible.
    pub async fn finish(mut self) -> Result<BlobInfo, BlobError> {
        self.check_usable()?;
        let result = self.complete().await;
        self.fail_on_error(result)?;
        Ok(BlobInfo {
            size: self.written,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }

    /// Gives up: nothing becomes visible, and the parts already uploaded are discarded.
    pub async fn abort(mut self) -> Result<(), BlobError> {
        if let Some((task, _)) = self.in_flight.take() {
            task.abort();
            let _ = task.await;
        }
        match self.upload.take() {
            Some(mut upload) => upload
                .abort()
                .await
                .map_err(|e| BlobError::from_store(e, &self.key)),
            None => Ok(()),
        }
    }

    async fn complete(&mut self) -> object_store::Result<()> {
        if self.upload.is_none() {
            // Smaller than a part: one plain put.
            let data = Bytes::from(std::mem::take(&mut self.buf));
            self.store.put(&self.path, PutPayload::from(data)).await?;
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.send_part().await?;
        }
        self.wait_in_flight().await?;
        let upload = self.upload.as_mut().expect("checked above");
        upload.complete().await?;
        // Completed: nothing to abort any more.
        self.upload = None;
        Ok(())
    }

    /// Uploads the filled part in the background once the previous part is done.
    async fn send_part(&mut self) -> object_store::Result<()> {
        if self.upload.is_none() {
            self.upload = Some(self.store.put_multipart(&self.path).await?);
        }
        self.wait_in_flight().await?;
        let data = std::mem::take(&mut self.buf);
        let len = data.len();
        let upload = self.upload.as_mut().expect("created above");
        let part = upload.put_part(PutPayload::from(Bytes::from(data)));
        self.in_flight = Some((tokio::spawn(part), len));
        Ok(())
    }

    async fn wait_in_flight(&mut self) -> object_store::Result<()> {
        let Some((task, _)) = self.in_flight.take() else {
            return Ok(());
        };
        task.await
            .map_err(|e| object_store::Error::JoinError { source: e })?
    }

    fn check_usable(&self) -> Result<(), BlobError> {
        if self.failed {
            return Err(BlobError::Backend(format!(
                "the writer of {:?} failed earlier; abort it",
                self.key
            )));
        }
        Ok(())
    }

    fn fail_on_error<T>(&mut self, result: object_store::Result<T>) -> Result<T, BlobError> {
        result.map_err(|e| {
            self.failed = true;
            BlobError::from_store(e, &self.key)
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some((task, _)) = self.in_flight.take() {
            task.abort();
        }
        // An upload never completed: abort it in the background (outside a runtime, the
        // upload is simply never completed, so nothing becomes visible either way).
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
