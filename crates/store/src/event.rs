//! The event log of an evaluation: what happened to it, in order, as typed payloads. The
//! stored encoding of each payload (the `kind` and `data` columns) is defined here and nowhere
//! else; the API turns events into its own wire events (`assay_api::events`).

use crate::{Millis, Result, StoreError};
use assay_domain::{EvaluationStatus, OutputStream};
use serde::{Deserialize, Serialize};

/// The `kind` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Status,
    Stdout,
    Stderr,
    Result,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Stdout => "stdout",
            EventKind::Stderr => "stderr",
            EventKind::Result => "result",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::Status,
            EventKind::Stdout,
            EventKind::Stderr,
            EventKind::Result,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl From<OutputStream> for EventKind {
    fn from(s: OutputStream) -> Self {
        match s {
            OutputStream::Stdout => EventKind::Stdout,
            OutputStream::Stderr => EventKind::Stderr,
        }
    }
}

/// What one event says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventPayload {
    /// The evaluation's status changed: queued (first, after a retry or a requeue), running (an
    /// attempt started), or terminal. `error`: why a platform failure sent it back or ended it.
    Status {
        status: EvaluationStatus,
        attempt: u32,
        error: Option<String>,
    },
    /// A chunk of output, in the order the program wrote it.
    Output { stream: OutputStream, text: String },
    /// The evaluation ended with `status`. Always the last event.
    Result { status: EvaluationStatus },
}

/// One entry of an evaluation's event log. `seq` starts at 1 and has no gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub evaluation_id: String,
    pub seq: i64,
    pub at: Millis,
    pub payload: EventPayload,
}

/// `data` of a status event.
#[derive(Serialize, Deserialize)]
struct StatusData {
    status: String,
    #[serde(default)]
    attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `data` of a result event. Rows written before 0.2 also hold the final result and error
/// (with the whole output); they are ignored: the row's own columns are the truth.
#[derive(Serialize, Deserialize)]
struct ResultData {
    status: String,
}

fn status_of(s: &str) -> Result<EvaluationStatus> {
    EvaluationStatus::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown status {s:?}")))
}

impl EventPayload {
    pub fn status(status: EvaluationStatus, attempt: u32) -> EventPayload {
        EventPayload::Status {
            status,
            attempt,
            error: None,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            EventPayload::Status { .. } => EventKind::Status,
            EventPayload::Output { stream, .. } => EventKind::from(*stream),
            EventPayload::Result { .. } => EventKind::Result,
        }
    }

    /// The `data` column: JSON for status and result events, the text itself for output.
    pub fn encode(&self) -> String {
        let json = match self {
            EventPayload::Status {
                status,
                attempt,
                error,
            } => serde_json::to_string(&StatusData {
                status: status.as_str().into(),
                attempt: *attempt,
                error: error.clone(),
            }),
            EventPayload::Output { text, .. } => return text.clone(),
            EventPayload::Result { status } => serde_json::to_string(&ResultData {
                status: status.as_str().into(),
            }),
        };
        json.expect("event data serialises")
    }

    /// Reads back what [`encode`](Self::encode) wrote (or an earlier version did).
    pub fn decode(kind: EventKind, data: &str) -> Result<EventPayload> {
        let corrupt = |e: serde_json::Error| {
            StoreError::Backend(format!("corrupt {} event: {e}", kind.as_str()))
        };
        Ok(match kind {
            EventKind::Status => {
                let d: StatusData = serde_json::from_str(data).map_err(corrupt)?;
                EventPayload::Status {
                    status: status_of(&d.status)?,
                    attempt: d.attempt,
                    error: d.error,
                }
            }
            EventKind::Stdout => EventPayload::Output {
                stream: OutputStream::Stdout,
                text: data.into(),
            },
            EventKind::Stderr => EventPayload::Output {
                stream: OutputStream::Stderr,
                text: data.into(),
            },
            EventKind::Result => {
                let d: ResultData = serde_json::from_str(data).map_err(corrupt)?;
                EventPayload::Result {
                    status: status_of(&d.status)?,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_the_stored_encoding() {
        let all = [
            EventPayload::status(EvaluationStatus::Queued, 0),
            EventPayload::Status {
                status: EvaluationStatus::Queued,
                attempt: 2,
                error: Some("lease expired (worker w-1 lost)".into()),
            },
            EventPayload::Output {
                stream: OutputStream::Stdout,
                text: "line\n{\"not\": json".into(),
            },
            EventPayload::Output {
                stream: OutputStream::Stderr,
                text: String::new(),
            },
            EventPayload::Result {
                status: EvaluationStatus::TimedOut,
            },
        ];
        for p in all {
            assert_eq!(EventPayload::decode(p.kind(), &p.encode()).unwrap(), p);
            assert_eq!(EventKind::parse(p.kind().as_str()), Some(p.kind()));
        }
        assert_eq!(
            EventPayload::status(EvaluationStatus::Running, 1).encode(),
            r#"{"status":"running","attempt":1}"#
        );
    }

    #[test]
    fn events_written_by_earlier_versions_still_load() {
        // 0.1 wrote the final state, output included, into the result event.
        let old = r#"{"status":"succeeded","result":{"stdout":"hi\n"},"error":null,"attempts":1}"#;
        assert_eq!(
            EventPayload::decode(EventKind::Result, old).unwrap(),
            EventPayload::Result {
                status: EvaluationStatus::Succeeded
            }
        );
        assert!(EventPayload::decode(EventKind::Status, r#"{"status":"exploded"}"#).is_err());
        assert!(EventPayload::decode(EventKind::Result, "not json").is_err());
    }
}
