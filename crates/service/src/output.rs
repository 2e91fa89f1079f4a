//! The whole output of a finished evaluation, byte for byte: from the blob store when the stream
//! outgrew the preview the event log keeps (or was not UTF-8), else from the event log (which
//! then holds all of it).

use crate::{Action, Context, Service, store_error};
use assay_api::{ApiError, ErrorCode};
use assay_blob::{BlobError, Blobs};
use assay_domain::{OutputStream, Role};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use std::ops::Range;

/// The bytes of a body, chunk by chunk.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// One whole output stream, ready to be read (whole or a range of it).
pub struct OutputBody {
    /// Bytes in the whole stream.
    pub size: u64,
    /// The stream's SHA-256 (hex), when the blob store holds it: a strong validator (ETag).
    pub sha256: Option<String>,
    source: Source,
}

enum Source {
    Inline(Bytes),
    Blob { blobs: Blobs, key: String },
}

impl OutputBody {
    /// The bytes in `range` (`[start, end)`, inside `0..size`: the caller checked it against
    /// [`OutputBody::size`]), or all of them. A blob is streamed, never held whole.
    pub async fn read(self, range: Option<Range<u64>>) -> Result<ByteStream, ApiError> {
        match self.source {
            Source::Inline(bytes) => {
                let bytes = match range {
                    Some(r) => {
                        let start = usize::try_from(r.start).map_err(ApiError::internal)?;
                        let end = usize::try_from(r.end).map_err(ApiError::internal)?;
                        bytes.slice(start.min(bytes.len())..end.min(bytes.len()))
                    }
                    None => bytes,
                };
                Ok(stream::once(async move { Ok(bytes) }).boxed())
            }
            Source::Blob { blobs, key } => {
                let read = blobs.read(&key, range).await.map_err(blob_error)?;
                Ok(read
                    .stream
                    .map(|chunk| chunk.map_err(std::io::Error::other))
                    .boxed())
            }
        }
    }
}

/// A blob store failure as the API says it: a moment's trouble is worth a retry (503); an
/// object that is not there (or anything else) is the server's fault, logged with its key.
fn blob_error(e: BlobError) -> ApiError {
    if e.is_retryable() {
        tracing::warn!(error = %e, "the blob store failed for a moment");
        ApiError::new(
            ErrorCode::Unavailable,
            "the output store is briefly unavailable; retry",
        )
        .with_retry_after(1)
    } else {
        ApiError::internal(e)
    }
}

impl Service {
    /// One output stream of a finished evaluation the caller may see, whole. While it runs,
    /// a 409 `not_finished` (its live output is on the event stream).
    pub async fn output(
        &self,
        ctx: &Context,
        id: &str,
        stream: Result<OutputStream, ApiError>,
    ) -> Result<OutputBody, ApiError> {
        self.allow(ctx, Action::EvaluationOutput, Role::Viewer)
            .await?;
        let stream = stream?;
        let ev = self.visible(&ctx.caller, id).await?;
        if !ev.status.is_terminal() {
            return Err(ApiError::new(
                ErrorCode::NotFinished,
                format!(
                    "evaluation {id} is {}: its whole output exists once it ends (follow it \
                     live on /v1/evaluations/{id}/events)",
                    ev.status
                ),
            ));
        }
        let blob = ev.result.as_ref().and_then(|r| match stream {
            OutputStream::Stdout => r.stdout_blob.clone(),
            OutputStream::Stderr => r.stderr_blob.clone(),
        });
        if let Some(blob) = blob {
            let Some(blobs) = self.blobs() else {
                return Err(ApiError::internal(format!(
                    "the output of {id} is in the blob store ({}), and this server has none \
                     (--blob)",
                    blob.key
                )));
            };
            return Ok(OutputBody {
                size: blob.size,
                sha256: Some(blob.sha256),
                source: Source::Blob {
                    blobs: blobs.clone(),
                    key: blob.key,
                },
            });
        }
        let output = self.store().output(id).await.map_err(store_error)?;
        let text = match stream {
            OutputStream::Stdout => output.stdout,
            OutputStream::Stderr => output.stderr,
        };
        Ok(OutputBody {
            size: text.len() as u64,
            sha256: None,
            source: Source::Inline(Bytes::from(text)),
        })
    }
}
