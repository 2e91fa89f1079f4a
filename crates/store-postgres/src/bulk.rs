//! Inserting whole evaluations: a submission (or a batch of them) and an import write the same
//! rows, in one statement whatever the batch size. Every column is bound as an array and
//! `unnest`ed, so the statement's text never changes (one prepared statement) and a batch of a
//! thousand is one round trip. With the evaluations go their labels, their events, their queue
//! entries (the queued ones) and the wake-ups.

use assay_store::lifecycle::Lifecycle;
use assay_store::record::{encode_files, encode_labels, encode_limits, encode_result};
use assay_store::{Evaluation, EventPayload, JobInput, Millis};
use sqlx::PgConnection;

/// One evaluation to insert, in the state `lifecycle`.
pub(crate) struct NewRow<'a> {
    pub(crate) evaluation: &'a Evaluation,
    pub(crate) lifecycle: &'a Lifecycle,
    pub(crate) input: &'a JobInput,
    /// Seq of its next event.
    pub(crate) next_seq: i64,
}

/// One event to insert.
pub(crate) struct EventRow<'a> {
    pub(crate) evaluation_id: &'a str,
    pub(crate) seq: i64,
    pub(crate) payload: &'a EventPayload,
    pub(crate) at: Millis,
}

const INSERT: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::int4[], $9::text[], $10::int8[], $11::text[], $12::int8[], $13::text[],
        $14::int8[], $15::int8[], $16::int8[], $17::text[], $18::int8[], $19::text[],
        $20::int8[], $21::int8[], $22::text[], $23::text[], $24::bool[])
    WITH ORDINALITY AS i (id, tenant, language, entrypoint, files, stdin, limits, priority,
        labels, created_at, idempotency_key, next_seq, status, attempts, max_attempts,
        not_before, lease_token, lease_expires_at, worker_id, started_at, finished_at, result,
        error, cancel_requested, n)
), ins AS (
    INSERT INTO evaluations (id, tenant, language, entrypoint, files, stdin, limits, priority,
        labels, created_at, idempotency_key, next_seq, status, attempts, max_attempts,
        not_before, lease_token, lease_expires_at, worker_id, started_at, finished_at, result,
        error, cancel_requested)
    SELECT id, tenant, language, entrypoint, files, stdin, limits, priority, labels, created_at,
        idempotency_key, next_seq, status, attempts, max_attempts, not_before, lease_token,
        lease_expires_at, worker_id, started_at, finished_at, result, error, cancel_requested
    FROM input ORDER BY n
    RETURNING pk, id, tenant, status, priority, created_at, not_before
), queued AS (
    INSERT INTO queue (pk, tenant, priority, created_at, not_before)
    SELECT pk, tenant, priority, created_at, not_before FROM ins WHERE status = 'queued'
), labelled AS (
    INSERT INTO evaluation_labels (key, value, created_at, pk)
    SELECT l.key, l.value, ins.created_at, ins.pk
    FROM ins JOIN unnest($25::text[], $26::text[], $27::text[]) AS l (id, key, value)
        ON l.id = ins.id
), logged AS (
    INSERT INTO events (evaluation_id, seq, kind, data, at)
    SELECT * FROM unnest($28::text[], $29::int8[], $30::text[], $31::text[], $32::int8[])
)
SELECT ins.id,
    pg_notify('assay_events', ins.id) AS event_hint,
    CASE WHEN ins.status = 'queued' THEN pg_notify('assay_queue', '') END AS queue_hint
FROM ins";

/// Inserts `rows` with their labels and `events`, inside the caller's transaction. The
/// The error is sqlx's, so that a caller can tell which constraint refused a row.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    rows: &[NewRow<'_>],
    events: &[EventRow<'_>],
) -> std::result::Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewRow<'_>) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let opt =
        |f: fn(&NewRow<'_>) -> Option<String>| rows.iter().map(f).collect::<Vec<Option<String>>>();
    let int = |f: fn(&NewRow<'_>) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let opt_int = |f: fn(&NewRow<'_>) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
    let mut label_ids = Vec::new();
    let mut label_keys = Vec::new();
    let mut label_values = Vec::new();
    for r in rows {
        for (k, v) in &r.evaluation.labels {
            label_ids.push(r.evaluation.id.as_str());
            label_keys.push(k.as_str());
            label_values.push(v.as_str());
        }
    }
    sqlx::query(INSERT)
        .bind(col(|r| r.evaluation.id.clone()))
        .bind(col(|r| r.evaluation.tenant.clone()))
        .bind(col(|r| r.evaluation.language.as_str().to_string()))
        .bind(col(|r| r.evaluation.entrypoint.clone()))
        .bind(col(|r| encode_files(&r.input.files)))
        .bind(col(|r| r.input.stdin.clone()))
        .bind(col(|r| encode_limits(&r.evaluation.limits)))
        .bind(
            rows.iter()
                .map(|r| r.evaluation.priority)
                .collect::<Vec<i32>>(),
        )
        .bind(col(|r| encode_labels(&r.evaluation.labels)))
        .bind(int(|r| r.evaluation.created_at))
        .bind(opt(|r| r.evaluation.idempotency_key.clone()))
        .bind(int(|r| r.next_seq))
        .bind(col(|r| r.lifecycle.status.as_str().to_string()))
        .bind(int(|r| i64::from(r.lifecycle.attempts)))
        .bind(int(|r| i64::from(r.lifecycle.max_attempts)))
        .bind(int(|r| r.lifecycle.not_before))
        .bind(opt(|r| r.lifecycle.lease_token.clone()))
        .bind(opt_int(|r| r.lifecycle.lease_expires_at))
        .bind(opt(|r| r.lifecycle.worker_id.clone()))
        .bind(opt_int(|r| r.lifecycle.started_at))
        .bind(opt_int(|r| r.lifecycle.finished_at))
        .bind(opt(|r| r.lifecycle.result.as_ref().map(encode_result)))
        .bind(opt(|r| r.lifecycle.error.clone()))
        .bind(
            rows.iter()
                .map(|r| r.lifecycle.cancel_requested)
                .collect::<Vec<bool>>(),
        )
        .bind(label_ids)
        .bind(label_keys)
        .bind(label_values)
        .bind(
            events
                .iter()
                .map(|e| e.evaluation_id)
                .collect::<Vec<&str>>(),
        )
        .bind(events.iter().map(|e| e.seq).collect::<Vec<i64>>())
        .bind(
            events
                .iter()
                .map(|e| e.payload.kind().as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.payload.encode())
                .collect::<Vec<String>>(),
        )
        .bind(events.iter().map(|e| e.at).collect::<Vec<i64>>())
        .fetch_all(&mut *conn)
        .await?;
    Ok(())
}
