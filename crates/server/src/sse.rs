//! Server-Sent Events for one evaluation: the service's [`Watch`] as an SSE stream. The event
//! names and data are the API's ([`assay_api::events::StreamEvent`]).

use assay_service::Watch;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub fn stream(mut watch: Watch) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                b = watch.next() => b,
                _ = tx.closed() => return, // the client went away
            };
            let events = match batch {
                Ok(Some(events)) => events,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reading events failed; ending the stream");
                    return;
                }
            };
            for (seq, e) in events {
                let sse = SseEvent::default()
                    .event(e.name())
                    .id(seq.to_string())
                    .data(e.data());
                if tx.send(Ok(sse)).await.is_err() {
                    return;
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
