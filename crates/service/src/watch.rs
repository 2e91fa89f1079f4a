//! Following one evaluation's events as they are appended (the API's live stream).

use crate::{Service, store_error, views};
use assay_api::ApiError;
use assay_api::events::{StatusEvent, StreamEvent};
use assay_domain::OutputStream;
use assay_store::{Event, EventPayload};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events read per store call.
const PAGE: u32 = 500;
/// How often the store is asked when no in-process signal came (workers in other processes).
const POLL: Duration = Duration::from_millis(250);

/// A cursor over an evaluation's events: the stored history from `after`, then live events,
/// until the `result` event.
pub struct Watch {
    svc: Service,
    id: String,
    last: i64,
    done: bool,
    bus: broadcast::Receiver<String>,
}

impl Watch {
    pub(crate) fn new(svc: Service, id: String, after: i64) -> Watch {
        let bus = svc.bus().subscribe_events();
        Watch {
            svc,
            id,
            last: after,
            done: false,
            bus,
        }
    }

    /// The next events with their sequence numbers, waiting until there are some. `None` once
    /// the `result` event was returned. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Option<Vec<(i64, StreamEvent)>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let batch = self
                .svc
                .store()
                .events(&self.id, self.last, PAGE)
                .await
                .map_err(store_error)?;
            if !batch.is_empty() {
                let mut out = Vec::with_capacity(batch.len());
                for e in batch {
                    let seq = e.seq;
                    let is_result = matches!(e.payload, EventPayload::Result { .. });
                    out.push((seq, self.wire(e).await?));
                    self.last = seq;
                    if is_result {
                        self.done = true;
                        break;
                    }
                }
                return Ok(Some(out));
            }
            // Wait for news of this evaluation (this process's workers), or poll (others').
            let poll = tokio::time::sleep(POLL);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    msg = self.bus.recv() => match msg {
                        Ok(x) if x == self.id => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    },
                    _ = &mut poll => break,
                }
            }
        }
    }

    /// The API's event for a stored one; `result` carries the final evaluation as `GET` shows
    /// it.
    async fn wire(&self, e: Event) -> Result<StreamEvent, ApiError> {
        Ok(match e.payload {
            EventPayload::Status {
                status,
                attempt,
                error,
            } => StreamEvent::Status(StatusEvent {
                status,
                attempt,
                error,
            }),
            EventPayload::Output {
                stream: OutputStream::Stdout,
                text,
            } => StreamEvent::Stdout(text),
            EventPayload::Output {
                stream: OutputStream::Stderr,
                text,
            } => StreamEvent::Stderr(text),
            EventPayload::Result { .. } => {
                let (ev, output) = self
                    .svc
                    .store()
                    .get_with_output(&self.id)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| ApiError::not_found("evaluation"))?;
                StreamEvent::Result(Box::new(views::evaluation(&ev, output)))
            }
        })
    }
}
