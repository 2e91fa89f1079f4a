//! Server-Sent Events for one evaluation: the stored event log, from `after`, then live events
//! as they are appended, until the `result` event.

use crate::AppState;
use assay_store::{Event, EventKind};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const PAGE: u32 = 500;
const POLL: Duration = Duration::from_millis(250);

fn to_sse(e: &Event) -> SseEvent {
    let data = match e.kind {
        // Output chunks are JSON strings, so that newlines and any text survive SSE framing.
        EventKind::Stdout | EventKind::Stderr => serde_json::to_string(&e.data).unwrap_or_default(),
        EventKind::Status | EventKind::Result => e.data.clone(),
    };
    SseEvent::default()
        .event(e.kind.as_str())
        .id(e.seq.to_string())
        .data(data)
}

pub fn stream(
    st: AppState,
    id: String,
    after: i64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let mut bus = st.bus.subscribe_events();
        let mut last = after;
        loop {
            let batch = match st.store.events(&id, last, PAGE).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(evaluation = %id, error = %e, "reading events failed");
                    return;
                }
            };
            let full = batch.len() as u32 == PAGE;
            for e in &batch {
                last = e.seq;
                let mut sse = to_sse(e);
                if e.kind == EventKind::Result {
                    // The result event carries the final evaluation, as GET shows it.
                    if let Ok(Some(ev)) = st.store.get(&id).await {
                        let view = crate::view::EvaluationView::from(&ev);
                        sse = SseEvent::default()
                            .event("result")
                            .id(e.seq.to_string())
                            .data(serde_json::to_string(&view).unwrap_or_default());
                    }
                }
                if tx.send(Ok(sse)).await.is_err() {
                    return; // the client went away
                }
                if e.kind == EventKind::Result {
                    return;
                }
            }
            if full {
                continue;
            }
            // Wait for news of this evaluation (this process's workers), or poll (others').
            let poll = tokio::time::sleep(POLL);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    msg = bus.recv() => match msg {
                        Ok(x) if x == id => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    },
                    _ = &mut poll => break,
                    _ = tx.closed() => return,
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
