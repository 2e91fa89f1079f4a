//! Writing the event log. Seqs come from the evaluation row's `next_seq`, reserved by the same
//! write transaction that inserts the events (gapless per evaluation); the stored `kind` and
//! `data` are `EventPayload`'s encoding.

use crate::bulk::BulkInsert;
use assay_store::{EventPayload, Millis, Result};
use sqlx::sqlite::SqliteConnection;

/// Statement sizes of multi-row inserts: 2 for a transition's `status` + `result` pair, the
/// larger ones for batches of submissions.
pub(crate) const SIZES: [usize; 5] = [64, 16, 4, 2, 1];

static INSERT_EVENTS: BulkInsert<5> = BulkInsert::new(
    "INSERT INTO events (evaluation_id, seq, kind, data, at) VALUES",
    "(?, ?, ?, ?, ?)",
    SIZES,
);

/// One event to insert.
pub(crate) struct EventRow<'a> {
    pub(crate) evaluation_id: &'a str,
    pub(crate) seq: i64,
    pub(crate) payload: &'a EventPayload,
    pub(crate) at: Millis,
}

pub(crate) async fn insert(conn: &mut SqliteConnection, rows: &[EventRow<'_>]) -> Result<()> {
    INSERT_EVENTS
        .run(conn, rows, |q, r| {
            q.bind(r.evaluation_id)
                .bind(r.seq)
                .bind(r.payload.kind().as_str())
                .bind(r.payload.encode())
                .bind(r.at)
        })
        .await
}

/// Appends `events` of one evaluation, numbered from `first_seq`.
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    evaluation_id: &str,
    first_seq: i64,
    events: &[EventPayload],
    at: Millis,
) -> Result<()> {
    let rows: Vec<EventRow<'_>> = (first_seq..)
        .zip(events)
        .map(|(seq, payload)| EventRow {
            evaluation_id,
            seq,
            payload,
            at,
        })
        .collect();
    insert(conn, &rows).await
}
