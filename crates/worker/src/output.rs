//! Output of a run → the evaluation's event log (in order, fenced, coalesced, valid UTF-8)
//! and, for streams longer than the preview, the blob store (whole, byte for byte, written as
//! the program runs so that memory stays bounded whatever the stream's size).

use crate::retry::{lease_lost, retrying};
use assay_blob::{BlobError, BlobWriter, Blobs};
use assay_domain::OutputStream;
use assay_sandbox::{OutputBudget, RunEvent};
use assay_store::bus::LocalBus;
use assay_store::{BlobRef, Store, now_millis};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Output chunks already waiting are merged into one event up to this size.
pub const COALESCE_BYTES: usize = 64 * 1024;

/// Output a run may have waiting between its sandbox and the stores (its [`OutputBudget`]):
/// beyond it, the program waits on its pipe until its output is stored, so a worker holds at
/// most this (plus the blob writer's parts) whatever the program writes.
pub const OUTPUT_BUDGET_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of each stream that go to the event log (live, and the evaluation's inline preview)
/// when the whole stream goes to the blob store.
pub const PREVIEW_BYTES: usize = 64 * 1024;

/// Where whole streams go: the blob store, under the attempt's own prefix
/// (`outputs/<id>/<attempt>.<token>`), so that no two attempts ever write the same object.
#[derive(Clone)]
pub struct Spill {
    pub blobs: Blobs,
    pub prefix: String,
}

/// How the forwarding ended.
#[derive(Debug)]
pub enum Forwarded {
    /// Every chunk is stored: the preview in the event log, and the streams that do not fit in
    /// it (or are not UTF-8) in the blob store.
    All(Outputs),
    /// The lease is gone: another worker owns the evaluation; this run must stop.
    LeaseLost,
    /// The blob store refused a write: the output cannot be kept whole, so the attempt fails
    /// (a platform error, retried).
    BlobFailed(String),
}

/// The streams of a run as stored.
#[derive(Debug, Default)]
pub struct Outputs {
    pub stdout: StreamOutput,
    pub stderr: StreamOutput,
}

#[derive(Debug, Default)]
pub struct StreamOutput {
    /// Bytes the program wrote (under the output limit).
    pub bytes: u64,
    /// The whole stream in the blob store, when the event log holds only its preview.
    pub blob: Option<BlobRef>,
}

/// One stream on its way to the event log and the blob store.
#[derive(Default)]
struct Sink {
    utf8: Utf8Carry,
    /// The stream's first bytes (up to the preview), written to the blob store if the stream
    /// outgrows the preview or is not UTF-8.
    head: Vec<u8>,
    total: u64,
    writer: Option<BlobWriter>,
}

impl Sink {
    /// Takes `data`; returns the text for the event log (the part inside the preview, or all
    /// of it without a blob store).
    async fn take(
        &mut self,
        data: &[u8],
        spill: Option<&Spill>,
        stream: OutputStream,
    ) -> Result<String, BlobError> {
        let before = usize::try_from(self.total).unwrap_or(usize::MAX);
        self.total += data.len() as u64;
        let Some(spill) = spill else {
            return Ok(self.utf8.push(data));
        };
        let live = data.len().min(PREVIEW_BYTES.saturating_sub(before));
        let text = if live > 0 {
            self.utf8.push(&data[..live])
        } else {
            String::new()
        };
        if let Some(w) = &mut self.writer {
            w.write(data).await?;
        } else if self.head.len() + data.len() <= PREVIEW_BYTES {
            self.head.extend_from_slice(data);
        } else {
            let mut w = spill.blobs.writer(&key(spill, stream)).await?;
            w.write(&std::mem::take(&mut self.head)).await?;
            w.write(data).await?;
            self.writer = Some(w);
        }
        Ok(text)
    }

    /// Ends the stream: publishes its object if it has one.
    async fn finish(
        &mut self,
        spill: Option<&Spill>,
        stream: OutputStream,
    ) -> Result<StreamOutput, BlobError> {
        let blob = match (self.writer.take(), spill) {
            (Some(w), Some(spill)) => Some((key(spill, stream), w.finish().await?)),
            (None, Some(spill)) if std::str::from_utf8(&self.head).is_err() => {
                let key = key(spill, stream);
                let info = spill
                    .blobs
                    .put(&key, std::mem::take(&mut self.head).into())
                    .await?;
                Some((key, info))
            }
            _ => None,
        };
        Ok(StreamOutput {
            bytes: self.total,
            blob: blob.map(|(key, info)| BlobRef {
                key,
                size: info.size,
                sha256: info.sha256,
            }),
        })
    }
}

fn key(spill: &Spill, stream: OutputStream) -> String {
    let name = match stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    };
    format!("{}/{name}", spill.prefix)
}

/// Stores the run's output until the sandbox drops its sender: the event log gets each
/// stream's preview (all of it without a blob store), the blob store each stream that does not
/// fit in the preview. Chunks that are already waiting on the same stream are written as one
/// event: a program printing many small lines costs a few transactions, not one each.
pub async fn forward(
    store: Arc<dyn Store>,
    bus: LocalBus,
    id: String,
    token: String,
    spill: Option<Spill>,
    rx: UnboundedReceiver<RunEvent>,
    budget: OutputBudget,
) -> Forwarded {
    let forwarded = forward_all(store, bus, id, token, spill, rx, &budget).await;
    if !matches!(forwarded, Forwarded::All(_)) {
        // Nothing takes the run's output any more: its sandbox must not wait for budget.
        budget.close();
    }
    forwarded
}

async fn forward_all(
    store: Arc<dyn Store>,
    bus: LocalBus,
    id: String,
    token: String,
    spill: Option<Spill>,
    mut rx: UnboundedReceiver<RunEvent>,
    budget: &OutputBudget,
) -> Forwarded {
    let mut sinks = [Sink::default(), Sink::default()];
    let mut held: Option<RunEvent> = None;
    let append = |stream: OutputStream, text: String| {
        let (store, id, token) = (store.clone(), id.clone(), token.clone());
        async move {
            retrying("storing output", || {
                store.append_output(&id, &token, stream, &text, now_millis())
            })
            .await
        }
    };
    loop {
        let event = match held.take() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => break,
            },
        };
        let RunEvent::Output { stream, mut data } = event else {
            continue;
        };
        while data.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(RunEvent::Output {
                    stream: s,
                    data: more,
                }) if s == stream => data.extend_from_slice(&more),
                Ok(other) => {
                    held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let text = match sinks[index(stream)]
            .take(&data, spill.as_ref(), stream)
            .await
        {
            Ok(text) => text,
            Err(e) => return Forwarded::BlobFailed(e.to_string()),
        };
        if !text.is_empty() {
            match append(stream, text).await {
                Ok(_) => bus.publish_events(&id),
                Err(e) if lease_lost(&e) => return Forwarded::LeaseLost,
                // The run goes on; what could not be stored is missing from the log (and said
                // so).
                Err(e) => tracing::error!(evaluation = %id, error = %e, "could not store output"),
            }
        }
        // Stored: the sandbox may send as much again.
        budget.release(data.len());
    }
    let mut outputs = Outputs::default();
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        let sink = &mut sinks[index(stream)];
        // A stream that went to the blob store: its preview ends at its last whole character
        // (the bytes of a character cut by the preview's end are in the blob), so that the
        // preview's length is where the rest of the stream begins.
        let rest = if sink.writer.is_some() {
            String::new()
        } else {
            sink.utf8.finish()
        };
        if !rest.is_empty() {
            match append(stream, rest).await {
                Ok(_) => bus.publish_events(&id),
                Err(e) if lease_lost(&e) => return Forwarded::LeaseLost,
                Err(e) => tracing::error!(evaluation = %id, error = %e, "could not store output"),
            }
        }
        let out = match sink.finish(spill.as_ref(), stream).await {
            Ok(out) => out,
            Err(e) => return Forwarded::BlobFailed(e.to_string()),
        };
        match stream {
            OutputStream::Stdout => outputs.stdout = out,
            OutputStream::Stderr => outputs.stderr = out,
        }
    }
    Forwarded::All(outputs)
}

fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

/// Turns a byte stream into text without splitting a UTF-8 character across two events:
/// an incomplete trailing sequence waits for the next chunk.
#[derive(Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    pub fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(), // invalid bytes: replaced below, nothing to wait for
        };
        let rest = self.pending.split_off(valid_up_to);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_carry_never_splits_a_character() {
        let mut c = Utf8Carry::default();
        let s = "héllo→wörld";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(1) {
            out.push_str(&c.push(chunk));
        }
        out.push_str(&c.finish());
        assert_eq!(out, s);
        assert_eq!(c.push(&[0xff, b'a']), "\u{fffd}a");
    }
}
