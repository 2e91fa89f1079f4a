//! The live stream of one evaluation (`GET /v1/evaluations/{id}/events`, Server-Sent Events):
//! the event names and their data, serialised and parsed here and nowhere else.

use crate::evaluation::EvaluationView;
use assay_domain::EvaluationStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The data of a `status` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    pub status: EvaluationStatus,
    /// The attempt this status belongs to (0 while queued for the first time).
    pub attempt: u32,
    /// Why the platform gave the attempt up (retries), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One event of the stream. Every event's SSE `id` is its sequence number (1, 2, 3, …
/// without gaps); a client resumes with `Last-Event-ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// `event: status`, data [`StatusEvent`]: queued, running (each attempt), then terminal.
    Status(StatusEvent),
    /// `event: stdout`, data a JSON string: a chunk of the program's stdout, in order.
    Stdout(String),
    /// `event: stderr`, data a JSON string.
    Stderr(String),
    /// `event: result`, data the final [`EvaluationView`] (as `GET` shows it, with the whole
    /// output); always the last event, after which the stream ends.
    Result(Box<EvaluationView>),
}

/// What the OpenAPI document says about the stream.
pub const STREAM_DESCRIPTION: &str = "Server-Sent Events. Each event has an `id` (its sequence \
number: 1, 2, 3, … without gaps; send it back as `Last-Event-ID` to resume after it), an \
`event` name and JSON `data`:\n\n\
* `status`: `{\"status\", \"attempt\", \"error\"?}` ([StatusEvent](#/components/schemas/StatusEvent)), \
when the evaluation is queued, starts an attempt, is retried or ends;\n\
* `stdout`, `stderr`: a JSON string, the next chunk of that stream, as the program writes it;\n\
* `result`: the final evaluation as `GET /v1/evaluations/{id}` shows it \
([EvaluationView](#/components/schemas/EvaluationView)); the last event, after which the \
server closes the stream.\n\n\
A finished evaluation replays its whole history. Comments (`:`) keep idle connections open.";

impl StreamEvent {
    /// The SSE `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Status(_) => "status",
            StreamEvent::Stdout(_) => "stdout",
            StreamEvent::Stderr(_) => "stderr",
            StreamEvent::Result(_) => "result",
        }
    }

    /// The SSE `data` field: JSON on one line (output chunks as JSON strings, so that newlines
    /// survive the framing).
    pub fn data(&self) -> String {
        let json = match self {
            StreamEvent::Status(s) => serde_json::to_string(s),
            StreamEvent::Stdout(t) | StreamEvent::Stderr(t) => serde_json::to_string(t),
            StreamEvent::Result(v) => serde_json::to_string(v),
        };
        json.expect("stream events serialise")
    }

    /// An event as received. `Ok(None)` for an event name this client does not know (a newer
    /// server may send more kinds; they are skipped).
    pub fn parse(name: &str, data: &str) -> Result<Option<StreamEvent>, serde_json::Error> {
        Ok(Some(match name {
            "status" => StreamEvent::Status(serde_json::from_str(data)?),
            "stdout" => StreamEvent::Stdout(serde_json::from_str(data)?),
            "stderr" => StreamEvent::Stderr(serde_json::from_str(data)?),
            "result" => StreamEvent::Result(Box::new(serde_json::from_str(data)?)),
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_wire_form() {
        let events = [
            StreamEvent::Status(StatusEvent {
                status: EvaluationStatus::Queued,
                attempt: 1,
                error: Some("lease expired".into()),
            }),
            StreamEvent::Stdout("two\nlines\n".into()),
            StreamEvent::Stderr("\u{1F600} é\r".into()),
        ];
        for e in events {
            let data = e.data();
            assert!(!data.contains('\n'), "one line: {data}");
            assert_eq!(StreamEvent::parse(e.name(), &data).unwrap(), Some(e));
        }
        assert_eq!(
            StreamEvent::Status(StatusEvent {
                status: EvaluationStatus::Running,
                attempt: 2,
                error: None
            })
            .data(),
            r#"{"status":"running","attempt":2}"#
        );
        assert_eq!(StreamEvent::parse("progress", "{}").unwrap(), None);
        assert!(StreamEvent::parse("stdout", "not json").is_err());
    }
}
