//! Evaluations: submission (idempotency keys included), reads, lists, the event log and the
//! output. Queue transitions are in `queue`.

use crate::bulk::{BulkInsert, Query};
use crate::connection::SqliteStore;
use crate::error::db;
use crate::event_log::{self, EventRow, SIZES};
use crate::queue;
use crate::rows::{
    self, Head, bind_lifecycle, evaluation_cols, evaluation_from_row, event_from_row,
    payload_from_row,
};
use assay_store::admission::TokenBucket;
use assay_store::cursor::Cursor;
use assay_store::idempotency::{KeyCheck, KeyDecision};
use assay_store::lifecycle::Lifecycle;
use assay_store::record::{encode_files, encode_labels, encode_limits};
use assay_store::{
    Admission, Evaluation, Event, EventKind, EventPayload, ListFilter, Millis, NewEvaluation,
    Output, Page, Result, StoreError, SubmitOutcome,
};
use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{AssertSqlSafe, Executor, Row};
use std::collections::HashMap;

static INSERT_EVALUATIONS: BulkInsert<5> = BulkInsert::new(
    concat!(
        "INSERT INTO evaluations (pk, id, tenant, language, entrypoint, files, stdin, limits, \
         priority, labels, created_at, idempotency_key, next_seq, ",
        // The lifecycle's columns, in `bind_lifecycle`'s order.
        "status, attempts, max_attempts, not_before, lease_token, lease_expires_at, worker_id, \
         started_at, finished_at, result, error, cancel_requested) VALUES"
    ),
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    SIZES,
);

static INSERT_LABELS: BulkInsert<5> = BulkInsert::new(
    "INSERT INTO evaluation_labels (key, value, created_at, pk) VALUES",
    "(?, ?, ?, ?)",
    SIZES,
);

/// The seq of an evaluation's first event (`next_seq` starts after it).
const FIRST_SEQ: i64 = 1;

/// One evaluation to insert, with its structured columns encoded.
struct NewRow {
    pk: i64,
    evaluation: Evaluation,
    lifecycle: Lifecycle,
    first_event: EventPayload,
    files: String,
    stdin: String,
    limits: String,
    labels: String,
}

fn bind_evaluation(q: Query, r: &NewRow) -> Query {
    let e = &r.evaluation;
    let q = q
        .bind(r.pk)
        .bind(&e.id)
        .bind(&e.tenant)
        .bind(e.language.as_str())
        .bind(&e.entrypoint)
        .bind(&r.files)
        .bind(&r.stdin)
        .bind(&r.limits)
        .bind(e.priority)
        .bind(&r.labels)
        .bind(e.created_at)
        .bind(&e.idempotency_key)
        .bind(FIRST_SEQ + 1);
    bind_lifecycle(q, &r.lifecycle)
}

/// The evaluation `tenant` created with idempotency key `key`.
async fn by_key<'e>(
    exec: impl Executor<'e, Database = Sqlite>,
    tenant: &str,
    key: &str,
) -> Result<Option<Evaluation>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        " FROM evaluations e WHERE e.tenant = ? AND e.idempotency_key = ?"
    ))
    .bind(tenant)
    .bind(key)
    .fetch_optional(exec)
    .await
    .map_err(db)?;
    row.as_ref()
        .map(|r| evaluation_from_row(r).map(|(_, e)| e))
        .transpose()
}

/// What the idempotency keys of a batch say ([`KeyCheck`]): the store is asked for each key.
async fn seen_before(conn: &mut SqliteConnection, items: &[NewEvaluation]) -> Result<KeyDecision> {
    let check = KeyCheck::new(items);
    let mut found = HashMap::new();
    for (tenant, key) in check.lookups() {
        if let Some(e) = by_key(&mut *conn, tenant, key).await? {
            found.insert((tenant.to_string(), key.to_string()), e);
        }
    }
    check.decide(&found)
}

/// The key's rate, then the queue caps ([`Admission`]), inside the caller's write transaction;
/// the bucket is written back only when everything passed.
async fn check_admission(
    conn: &mut SqliteConnection,
    items: &[NewEvaluation],
    admission: &Admission,
    now: Millis,
) -> Result<()> {
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let mut bucket = None;
    if let Some(rate) = &admission.rate {
        let stored: Option<(i64, i64)> =
            sqlx::query_as("SELECT units, at_ms FROM rate_buckets WHERE bucket = ?")
                .bind(&rate.bucket)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        let mut b = stored.map_or(TokenBucket::full(rate.burst, now), |(units, at_ms)| {
            TokenBucket { units, at_ms }
        });
        b.take(n, rate.per_minute, rate.burst, now)
            .map_err(StoreError::Refused)?;
        bucket = Some((rate, b));
    }
    if admission.counts_needed() {
        // Every item of a batch is the submitter's tenant.
        let tenant = items.first().map(|i| i.tenant.as_str());
        let tenant_queued = match (admission.tenant_cap, tenant) {
            (Some(_), Some(t)) => Some(queue::count_queued_in(conn, Some(t)).await?),
            _ => None,
        };
        let total_queued = match admission.total_cap {
            Some(_) => Some(queue::count_queued_in(conn, None).await?),
            None => None,
        };
        admission
            .check_caps(tenant_queued, total_queued, u64::from(n))
            .map_err(StoreError::Refused)?;
    }
    if let Some((rate, b)) = bucket {
        sqlx::query(
            "INSERT INTO rate_buckets (bucket, units, at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (bucket) DO UPDATE SET units = excluded.units, at_ms = excluded.at_ms",
        )
        .bind(&rate.bucket)
        .bind(b.units)
        .bind(b.at_ms)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Inserts `items` (each with its labels and first event) inside the caller's write
/// transaction.
async fn insert(
    conn: &mut SqliteConnection,
    items: Vec<NewEvaluation>,
    now: Millis,
) -> Result<Vec<Evaluation>> {
    // pks are assigned here rather than by SQLite so that multi-row inserts need no RETURNING;
    // safe because the caller holds the write lock.
    let first_pk: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pk), 0) + 1 FROM evaluations")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let rows: Vec<NewRow> = (first_pk..)
        .zip(items)
        .map(|(pk, new)| {
            let (lifecycle, first_event) = Lifecycle::new_queued(new.max_attempts);
            let sub = new.submission;
            let head = Head {
                id: uuid::Uuid::new_v4().to_string(),
                tenant: new.tenant,
                language: sub.language,
                entrypoint: sub.program.entrypoint().to_string(),
                limits: sub.limits,
                priority: sub.priority,
                labels: sub.labels,
                created_at: now,
                idempotency_key: new.idempotency_key,
            };
            NewRow {
                pk,
                files: encode_files(sub.program.files()),
                stdin: sub.stdin,
                limits: encode_limits(&head.limits),
                labels: encode_labels(&head.labels),
                evaluation: rows::evaluation(head, &lifecycle),
                lifecycle,
                first_event,
            }
        })
        .collect();
    let labels: Vec<(&str, &str, i64)> = rows
        .iter()
        .flat_map(|r| {
            r.evaluation
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str(), r.pk))
        })
        .collect();
    let events: Vec<EventRow<'_>> = rows
        .iter()
        .map(|r| EventRow {
            evaluation_id: &r.evaluation.id,
            seq: FIRST_SEQ,
            payload: &r.first_event,
            at: now,
        })
        .collect();
    INSERT_EVALUATIONS.run(conn, &rows, bind_evaluation).await?;
    INSERT_LABELS
        .run(conn, &labels, |q, (k, v, pk)| {
            q.bind(*k).bind(*v).bind(now).bind(*pk)
        })
        .await?;
    event_log::insert(conn, &events).await?;
    Ok(rows.into_iter().map(|r| r.evaluation).collect())
}

/// Submits `items` in one write transaction, all or nothing (idempotency included), after
/// `admission`'s checks in that transaction (the write lock makes them exact).
pub(crate) async fn admit(
    store: &SqliteStore,
    items: Vec<NewEvaluation>,
    admission: &Admission,
    now: Millis,
) -> Result<Vec<SubmitOutcome>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write_tx().await?;
    // An error drops `tx`: everything is rolled back.
    let out = match seen_before(&mut tx, &items).await? {
        KeyDecision::Existing(existing) => {
            existing.into_iter().map(SubmitOutcome::Existing).collect()
        }
        KeyDecision::InsertAll => {
            check_admission(&mut tx, &items, admission, now).await?;
            insert(&mut tx, items, now)
                .await?
                .into_iter()
                .map(SubmitOutcome::Created)
                .collect()
        }
    };
    tx.commit().await.map_err(db)?;
    Ok(out)
}

pub(crate) async fn get(store: &SqliteStore, id: &str) -> Result<Option<Evaluation>> {
    Ok(rows::evaluation_by_id(&store.reader, id)
        .await?
        .map(|(_, e)| e))
}

/// A one-row table `a` whose `start` is the seq of the last `queued` or `running` status event
/// of the evaluation bound to its `?`: output after it is the current (or last) attempt's
/// (`Store::output`), output before it an earlier attempt's. Computed once per statement.
macro_rules! attempt_start {
    () => {
        "(SELECT coalesce(max(s.seq), 0) AS start FROM events s WHERE s.evaluation_id = ? \
          AND s.kind = 'status' AND json_extract(s.data, '$.status') IN ('queued', 'running')) a"
    };
}

/// The evaluation and its output in one statement (the API's view of one evaluation is its
/// most frequent read).
pub(crate) async fn get_with_output(
    store: &SqliteStore,
    id: &str,
) -> Result<Option<(Evaluation, Output)>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        ", (SELECT group_concat(v.data, '' ORDER BY v.seq) FROM events v \
             WHERE v.evaluation_id = e.id AND v.kind = ? AND v.seq > a.start) AS out_stdout, \
           (SELECT group_concat(v.data, '' ORDER BY v.seq) FROM events v \
             WHERE v.evaluation_id = e.id AND v.kind = ? AND v.seq > a.start) AS out_stderr \
         FROM evaluations e, ",
        attempt_start!(),
        " WHERE e.id = ?"
    ))
    .bind(EventKind::Stdout.as_str())
    .bind(EventKind::Stderr.as_str())
    .bind(id)
    .bind(id)
    .fetch_optional(&store.reader)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let (_, evaluation) = rows::evaluation_from_row(&row)?;
    let text = |col: &str| -> Result<String> {
        Ok(row
            .try_get::<Option<String>, _>(col)
            .map_err(db)?
            .unwrap_or_default())
    };
    let output = Output {
        stdout: text("out_stdout")?,
        stderr: text("out_stderr")?,
    };
    Ok(Some((evaluation, output)))
}

pub(crate) async fn find_by_idempotency_key(
    store: &SqliteStore,
    tenant: &str,
    key: &str,
) -> Result<Option<Evaluation>> {
    by_key(&store.reader, tenant, key).await
}

pub(crate) async fn list(store: &SqliteStore, filter: &ListFilter) -> Result<Page<Evaluation>> {
    let cursor = filter.cursor.as_deref().map(Cursor::decode).transpose()?;
    let limit = filter.limit.max(1);
    let limit_items = usize::try_from(limit).unwrap_or(usize::MAX);
    // Only fixed fragments go into the SQL; every value is bound. With a label, the label
    // index drives the scan (it is ordered like the listing); otherwise the evaluations'.
    let (mut sql, created) = if filter.label.is_some() {
        (
            String::from(concat!(
                "SELECT ",
                evaluation_cols!(),
                " FROM evaluation_labels l JOIN evaluations e ON e.pk = l.pk \
                 WHERE l.key = ? AND l.value = ?"
            )),
            "l",
        )
    } else {
        (
            String::from(concat!(
                "SELECT ",
                evaluation_cols!(),
                " FROM evaluations e WHERE 1"
            )),
            "e",
        )
    };
    if filter.tenant.is_some() {
        sql.push_str(" AND e.tenant = ?");
    }
    if filter.status.is_some() {
        sql.push_str(" AND e.status = ?");
    }
    if filter.created_after.is_some() {
        sql.push_str(&format!(" AND {created}.created_at >= ?"));
    }
    if filter.created_before.is_some() {
        sql.push_str(&format!(" AND {created}.created_at < ?"));
    }
    if cursor.is_some() {
        sql.push_str(&format!(
            " AND ({created}.created_at, {created}.pk) < (?, ?)"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY {created}.created_at DESC, {created}.pk DESC LIMIT ?"
    ));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some((k, v)) = &filter.label {
        q = q.bind(k).bind(v);
    }
    if let Some(t) = &filter.tenant {
        q = q.bind(t);
    }
    if let Some(s) = filter.status {
        q = q.bind(s.as_str());
    }
    if let Some(a) = filter.created_after {
        q = q.bind(a);
    }
    if let Some(b) = filter.created_before {
        q = q.bind(b);
    }
    if let Some(c) = cursor {
        q = q.bind(c.created_at).bind(c.key);
    }
    q = q.bind(i64::from(limit) + 1);
    let found = q.fetch_all(&store.reader).await.map_err(db)?;
    let more = found.len() > limit_items;
    let mut items = Vec::with_capacity(found.len().min(limit_items));
    let mut last = None;
    for row in found.iter().take(limit_items) {
        let (current, e) = evaluation_from_row(row)?;
        last = Some(Cursor {
            created_at: e.created_at,
            key: current.pk,
        });
        items.push(e);
    }
    let next_cursor = last.filter(|_| more).map(|c| c.encode());
    Ok(Page { items, next_cursor })
}

pub(crate) async fn events(
    store: &SqliteStore,
    id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>> {
    sqlx::query(
        "SELECT evaluation_id, seq, kind, data, at FROM events \
         WHERE evaluation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(id)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&store.reader)
    .await
    .map_err(db)?
    .iter()
    .map(event_from_row)
    .collect()
}

pub(crate) async fn output(store: &SqliteStore, id: &str) -> Result<Output> {
    // One statement: no row means no such evaluation; a row without an event, no output yet.
    let found = sqlx::query(concat!(
        "SELECT v.kind, v.data FROM evaluations e CROSS JOIN ",
        attempt_start!(),
        " LEFT JOIN events v ON v.evaluation_id = e.id AND v.kind IN (?, ?) \
             AND v.seq > a.start WHERE e.id = ? ORDER BY v.seq"
    ))
    .bind(id)
    .bind(EventKind::Stdout.as_str())
    .bind(EventKind::Stderr.as_str())
    .bind(id)
    .fetch_all(&store.reader)
    .await
    .map_err(db)?;
    if found.is_empty() {
        return Err(StoreError::NotFound(id.to_string()));
    }
    let mut out = Output::default();
    for row in &found {
        if row
            .try_get::<Option<String>, _>("kind")
            .map_err(db)?
            .is_none()
        {
            continue;
        }
        out.push(&payload_from_row(row)?);
    }
    Ok(out)
}
