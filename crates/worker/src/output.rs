//! Output of a run → the evaluation's event log: in order, fenced, coalesced, valid UTF-8.

use crate::retry::{lease_lost, retrying};
use assay_domain::OutputStream;
use assay_sandbox::RunEvent;
use assay_store::bus::LocalBus;
use assay_store::{Store, now_millis};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Output chunks already waiting are merged into one event up to this size.
pub const COALESCE_BYTES: usize = 64 * 1024;

/// How the forwarding ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// Every chunk is in the event log.
    All,
    /// The lease is gone: another worker owns the evaluation; this run must stop.
    LeaseLost,
}

/// Appends the run's output to the event log until the sandbox drops its sender. Chunks that
/// are already waiting on the same stream are written as one event: a program printing many
/// small lines costs a few transactions, not one each.
pub async fn forward(
    store: Arc<dyn Store>,
    bus: LocalBus,
    id: String,
    token: String,
    mut rx: UnboundedReceiver<RunEvent>,
) -> Forwarded {
    let mut utf8 = [Utf8Carry::default(), Utf8Carry::default()];
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
        let text = utf8[index(stream)].push(&data);
        if text.is_empty() {
            continue;
        }
        match append(stream, text).await {
            Ok(_) => bus.publish_events(&id),
            Err(e) if lease_lost(&e) => return Forwarded::LeaseLost,
            // The run goes on; what could not be stored is missing from the log (and said so).
            Err(e) => tracing::error!(evaluation = %id, error = %e, "could not store output"),
        }
    }
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        let rest = utf8[index(stream)].finish();
        if rest.is_empty() {
            continue;
        }
        match append(stream, rest).await {
            Ok(_) => bus.publish_events(&id),
            Err(e) if lease_lost(&e) => return Forwarded::LeaseLost,
            Err(e) => tracing::error!(evaluation = %id, error = %e, "could not store output"),
        }
    }
    Forwarded::All
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
