//! Following an evaluation's live stream (`GET /v1/evaluations/{id}/events`, Server-Sent
//! Events): output chunks are written as they come, a dropped connection is resumed with
//! `Last-Event-ID`, and the stream ends with the final evaluation. Events are parsed by the
//! API's [`StreamEvent::parse`], the one place that knows their wire form.

use crate::http::{Api, ApiFailure};
use crate::render::{err_write, out_write};
use anyhow::{Result, anyhow};
use assay_api::evaluation::EvaluationView;
use assay_api::events::StreamEvent;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::Method;
use std::time::Duration;

/// Reconnections of an event stream in a row, without receiving anything, before giving up.
const MAX_RECONNECTS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// Until the `result` event, reconnecting with `Last-Event-ID` when the connection drops.
    UntilResult,
    /// Until the `result` event or until the stream has been quiet this long.
    UntilIdle(Duration),
}

#[derive(Default)]
pub struct StreamOutcome {
    /// The final evaluation, from the `result` event.
    pub result: Option<EvaluationView>,
    /// Whether any output event arrived.
    pub saw_output: bool,
    /// Bytes of stdout and stderr the events of the last attempt carried: where the rest of
    /// a stream the events showed only the start of begins.
    pub shown: [u64; 2],
}

/// Reads the stream of evaluation `id`, writing output chunks as they come (unless `print` is
/// false) and noting retries on stderr.
pub async fn follow(api: &Api, id: &str, mode: StreamMode, print: bool) -> Result<StreamOutcome> {
    let mut outcome = StreamOutcome::default();
    let mut last_id: Option<String> = None;
    let mut failures = 0u32;
    let mut attempt_seen = 0u32;
    let mut last_failure: Option<ApiFailure> = None;
    loop {
        if failures > 0 {
            if failures > MAX_RECONNECTS {
                return Err(last_failure
                    .unwrap_or_else(|| {
                        ApiFailure::BadResponse("the event stream keeps ending".into())
                    })
                    .into());
            }
            let pause = Duration::from_millis(200 * (1 << failures.min(5)));
            tokio::time::sleep(pause).await;
        }
        let mut rb = api
            .req(Method::GET, &["v1", "evaluations", id, "events"])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(l) = &last_id {
            rb = rb.header("Last-Event-ID", l);
        }
        let resp = match api.send(rb).await {
            Ok(r) => r,
            Err(f @ ApiFailure::Status { status, .. }) if status < 500 => return Err(f.into()),
            Err(f) => {
                failures += 1;
                last_failure = Some(f);
                continue;
            }
        };
        let mut events = resp.bytes_stream().eventsource();
        loop {
            let next = match mode {
                StreamMode::UntilResult => events.next().await,
                StreamMode::UntilIdle(idle) => {
                    match tokio::time::timeout(idle, events.next()).await {
                        Ok(n) => n,
                        Err(_) => return Ok(outcome),
                    }
                }
            };
            let ev = match next {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    last_failure = Some(ApiFailure::Connection {
                        url: api.base().to_string(),
                        reason: format!("the event stream broke: {e}"),
                    });
                    break;
                }
                None => {
                    last_failure = Some(ApiFailure::BadResponse(
                        "the event stream ended before the result".into(),
                    ));
                    break;
                }
            };
            failures = 0;
            if !ev.id.is_empty() {
                last_id = Some(ev.id.clone());
            }
            let parsed = match StreamEvent::parse(&ev.event, &ev.data) {
                Ok(parsed) => parsed,
                // A status this client does not know (a newer server): only the note about
                // attempts depends on it.
                Err(_) if ev.event == "status" => None,
                Err(e) => {
                    let f = ApiFailure::BadResponse(format!("{} event: {e}", ev.event));
                    return Err(f.into());
                }
            };
            match parsed {
                Some(StreamEvent::Stdout(text)) => {
                    outcome.saw_output = true;
                    outcome.shown[0] += text.len() as u64;
                    if print {
                        out_write(text.as_bytes())?;
                    }
                }
                Some(StreamEvent::Stderr(text)) => {
                    outcome.saw_output = true;
                    outcome.shown[1] += text.len() as u64;
                    if print {
                        err_write(text.as_bytes())?;
                    }
                }
                Some(StreamEvent::Status(s)) => {
                    if print && s.attempt > 1 && s.attempt > attempt_seen {
                        let note = format!(
                            "── attempt {}: the platform failed; the program starts again\n",
                            s.attempt
                        );
                        err_write(note.as_bytes())?;
                    }
                    if s.attempt > attempt_seen {
                        // A new attempt's output starts from the beginning.
                        outcome.shown = [0, 0];
                    }
                    attempt_seen = attempt_seen.max(s.attempt);
                }
                Some(StreamEvent::Result(e)) => {
                    outcome.result = Some(*e);
                    return Ok(outcome);
                }
                // An event a newer server sends that this client does not know.
                None => {}
            }
        }
        if mode != StreamMode::UntilResult {
            return Err(last_failure
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow!("the event stream ended")));
        }
        failures += 1;
    }
}
