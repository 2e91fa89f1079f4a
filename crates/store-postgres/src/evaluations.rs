//! Evaluations: admission and insertion (idempotency keys included), reads, lists, the event
//! log and the output. Queue transitions are in `queue` and `claim`.

use crate::bulk::{self, EventRow, NewRow};
use crate::connection::{PgStore, Tx};
use crate::error::{db, is_unique_violation};
use crate::rows::{self, Head, evaluation_cols, evaluation_from_row, event_from_row};
use assay_store::admission::TokenBucket;
use assay_store::cursor::Cursor;
use assay_store::idempotency::{KeyCheck, KeyDecision};
use assay_store::lifecycle::Lifecycle;
use assay_store::{
    Admission, Evaluation, Event, EventKind, EventPayload, JobInput, ListFilter, Millis,
    NewEvaluation, Output, Page, Result, StoreError, SubmitOutcome,
};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use std::collections::HashMap;

/// The seq of an evaluation's first event (`next_seq` starts after it).
const FIRST_SEQ: i64 = 1;

/// Attempts of an admission that lost a race on an idempotency key (the next attempt finds
/// the key and answers with the evaluation that won).
const KEY_RACES: usize = 3;

/// The two-key advisory locks that serialise admissions checking a queue cap: one per tenant
/// (the second key is the tenant's hash: a collision only serialises two tenants more than
/// needed), and one for the cap of all tenants. Taken in this order, after the rate bucket's
/// row lock.
const TENANT_CAP_LOCK: i32 = 0x6173_0001;
const TOTAL_CAP_LOCK: i32 = 0x6173_0002;

/// What the idempotency keys of a batch say ([`KeyCheck`]), with one query for all keys.
async fn seen_before(conn: &mut PgConnection, items: &[NewEvaluation]) -> Result<KeyDecision> {
    let check = KeyCheck::new(items);
    let lookups = check.lookups();
    let mut found = HashMap::new();
    if !lookups.is_empty() {
        let tenants: Vec<&str> = lookups.iter().map(|(t, _)| *t).collect();
        let keys: Vec<&str> = lookups.iter().map(|(_, k)| *k).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            evaluation_cols!(),
            " FROM evaluations e \
              JOIN unnest($1::text[], $2::text[]) AS k (tenant, key) \
                ON e.tenant = k.tenant AND e.idempotency_key = k.key"
        ))
        .bind(tenants)
        .bind(keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        for row in &rows {
            let (_, e) = evaluation_from_row(row)?;
            if let Some(key) = e.idempotency_key.clone() {
                found.insert((e.tenant.clone(), key), e);
            }
        }
    }
    check.decide(&found)
}

/// The key's rate, then the queue caps ([`Admission`]), inside the caller's transaction. The
/// bucket's row stays locked until the transaction ends, and each cap's count is read under
/// its advisory lock, so that concurrent admissions (of any server) are checked one after the
/// other: the caps are exact. The bucket is written back only when everything passed.
async fn check_admission(
    conn: &mut PgConnection,
    items: &[NewEvaluation],
    admission: &Admission,
    now: Millis,
) -> Result<()> {
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let mut bucket = None;
    if let Some(rate) = &admission.rate {
        // Locks the bucket's row (a new bucket is full); a refusal rolls the row back.
        let full = TokenBucket::full(rate.burst, now);
        let (units, at_ms): (i64, i64) = sqlx::query_as(
            "INSERT INTO rate_buckets AS b (bucket, units, at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (bucket) DO UPDATE SET bucket = b.bucket RETURNING b.units, b.at_ms",
        )
        .bind(&rate.bucket)
        .bind(full.units)
        .bind(full.at_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        let mut b = TokenBucket { units, at_ms };
        b.take(n, rate.per_minute, rate.burst, now)
            .map_err(StoreError::Refused)?;
        bucket = Some((rate, b));
    }
    if admission.counts_needed() {
        // Every item of a batch is the submitter's tenant.
        let tenant = items.first().map(|i| i.tenant.as_str()).unwrap_or_default();
        let by_tenant = admission.tenant_cap.is_some();
        let total = admission.total_cap.is_some();
        if by_tenant {
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(TENANT_CAP_LOCK)
                .bind(tenant)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        if total {
            sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
                .bind(TOTAL_CAP_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        // A statement after the locks: its snapshot holds every admission that held them.
        let (tenant_queued, total_queued): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT CASE WHEN $2 THEN (SELECT count(*) FROM queue WHERE tenant = $1) END, \
                    CASE WHEN $3 THEN (SELECT count(*) FROM queue) END",
        )
        .bind(tenant)
        .bind(by_tenant)
        .bind(total)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        let count = |n: Option<i64>| n.map(|n| u64::try_from(n).unwrap_or(0));
        admission
            .check_caps(count(tenant_queued), count(total_queued), u64::from(n))
            .map_err(StoreError::Refused)?;
    }
    if let Some((rate, b)) = bucket {
        sqlx::query("UPDATE rate_buckets SET units = $2, at_ms = $3 WHERE bucket = $1")
            .bind(&rate.bucket)
            .bind(b.units)
            .bind(b.at_ms)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Inserts `items` (each with its labels, queue entry and first event) inside the caller's
/// transaction.
async fn insert(
    conn: &mut PgConnection,
    items: Vec<NewEvaluation>,
    now: Millis,
) -> std::result::Result<Vec<Evaluation>, sqlx::Error> {
    let made: Vec<(Evaluation, Lifecycle, EventPayload, JobInput)> = items
        .into_iter()
        .map(|new| {
            let (lifecycle, first_event) = Lifecycle::new_queued(new.max_attempts);
            let sub = new.submission;
            let input = JobInput {
                entrypoint: sub.program.entrypoint().to_string(),
                files: sub.program.files().to_vec(),
                stdin: sub.stdin,
            };
            let head = Head {
                id: uuid::Uuid::new_v4().to_string(),
                tenant: new.tenant,
                language: sub.language,
                entrypoint: input.entrypoint.clone(),
                limits: sub.limits,
                priority: sub.priority,
                labels: sub.labels,
                created_at: now,
                idempotency_key: new.idempotency_key,
            };
            (
                rows::evaluation(head, &lifecycle),
                lifecycle,
                first_event,
                input,
            )
        })
        .collect();
    let rows: Vec<NewRow<'_>> = made
        .iter()
        .map(|(evaluation, lifecycle, _, input)| NewRow {
            evaluation,
            lifecycle,
            input,
            next_seq: FIRST_SEQ + 1,
        })
        .collect();
    let events: Vec<EventRow<'_>> = made
        .iter()
        .map(|(e, _, payload, _)| EventRow {
            evaluation_id: &e.id,
            seq: FIRST_SEQ,
            payload,
            at: now,
        })
        .collect();
    bulk::insert(conn, &rows, &events).await?;
    Ok(made.into_iter().map(|(e, ..)| e).collect())
}

/// How one attempt of [`admit`] ended.
enum Attempt {
    Done(Vec<SubmitOutcome>),
    /// Another transaction inserted one of the keys after this one looked: the next attempt
    /// sees it (a replay, or a conflict, as `KeyCheck` decides).
    KeyRace,
}

/// One attempt of [`admit`]: its transaction, committed.
async fn admit_once(
    store: &PgStore,
    items: &[NewEvaluation],
    admission: &Admission,
    now: Millis,
) -> Result<Attempt> {
    let mut tx: Tx = store.begin().await?;
    let now = store.now_on(&mut tx, now).await?;
    // An error drops `tx`: everything is rolled back.
    let out = match seen_before(&mut tx, items).await? {
        KeyDecision::Existing(existing) => {
            existing.into_iter().map(SubmitOutcome::Existing).collect()
        }
        KeyDecision::InsertAll => {
            check_admission(&mut tx, items, admission, now).await?;
            match insert(&mut tx, items.to_vec(), now).await {
                Ok(created) => created.into_iter().map(SubmitOutcome::Created).collect(),
                Err(e) if is_unique_violation(&e, "evaluations_idempotency") => {
                    return Ok(Attempt::KeyRace);
                }
                Err(e) => return Err(db(e)),
            }
        }
    };
    tx.commit().await.map_err(db)?;
    Ok(Attempt::Done(out))
}

/// Admits `items` in one transaction, all or nothing (idempotency included), after
/// `admission`'s checks in that transaction.
pub(crate) async fn admit(
    store: &PgStore,
    items: Vec<NewEvaluation>,
    admission: &Admission,
    now: Millis,
) -> Result<Vec<SubmitOutcome>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    for _ in 0..KEY_RACES {
        if let Attempt::Done(out) = admit_once(store, &items, admission, now).await? {
            return Ok(out);
        }
    }
    Err(StoreError::Unavailable(
        "idempotency keys raced with other submissions too often".into(),
    ))
}

pub(crate) async fn get(store: &PgStore, id: &str) -> Result<Option<Evaluation>> {
    sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        " FROM evaluations e WHERE e.id = $1"
    ))
    .bind(id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?
    .as_ref()
    .map(|r| evaluation_from_row(r).map(|(_, e)| e))
    .transpose()
}

/// The output columns of one evaluation `e`: each stream's events concatenated in order.
macro_rules! output_cols {
    () => {
        // Only the current attempt's: after the last `queued` or `running` status event
        // (`Store::output`).
        "(SELECT string_agg(v.data, '' ORDER BY v.seq) FROM events v \
           WHERE v.evaluation_id = e.id AND v.kind = 'stdout' AND v.seq > a.start) AS out_stdout, \
         (SELECT string_agg(v.data, '' ORDER BY v.seq) FROM events v \
           WHERE v.evaluation_id = e.id AND v.kind = 'stderr' AND v.seq > a.start) AS out_stderr"
    };
}

fn output_from_row(row: &sqlx::postgres::PgRow) -> Result<Output> {
    debug_assert_eq!(EventKind::Stdout.as_str(), "stdout");
    debug_assert_eq!(EventKind::Stderr.as_str(), "stderr");
    let text = |col: &str| -> Result<String> {
        Ok(row
            .try_get::<Option<String>, _>(col)
            .map_err(db)?
            .unwrap_or_default())
    };
    Ok(Output {
        stdout: text("out_stdout")?,
        stderr: text("out_stderr")?,
    })
}

/// The evaluation and its output in one statement (the API's view of one evaluation is its
/// most frequent read).
pub(crate) async fn get_with_output(
    store: &PgStore,
    id: &str,
) -> Result<Option<(Evaluation, Output)>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        ", ",
        output_cols!(),
        " FROM evaluations e, LATERAL (SELECT coalesce(max(s.seq), 0) AS start FROM events s \
           WHERE s.evaluation_id = e.id AND s.kind = 'status' \
           AND (s.data::jsonb ->> 'status') IN ('queued', 'running')) a WHERE e.id = $1"
    ))
    .bind(id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let (_, evaluation) = evaluation_from_row(&row)?;
    Ok(Some((evaluation, output_from_row(&row)?)))
}

pub(crate) async fn output(store: &PgStore, id: &str) -> Result<Output> {
    // No row: no such evaluation; a row without events: no output yet.
    let row = sqlx::query(concat!(
        "SELECT ",
        output_cols!(),
        " FROM evaluations e, LATERAL (SELECT coalesce(max(s.seq), 0) AS start FROM events s \
           WHERE s.evaluation_id = e.id AND s.kind = 'status' \
           AND (s.data::jsonb ->> 'status') IN ('queued', 'running')) a WHERE e.id = $1"
    ))
    .bind(id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    output_from_row(&row)
}

pub(crate) async fn find_by_idempotency_key(
    store: &PgStore,
    tenant: &str,
    key: &str,
) -> Result<Option<Evaluation>> {
    sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        " FROM evaluations e WHERE e.tenant = $1 AND e.idempotency_key = $2"
    ))
    .bind(tenant)
    .bind(key)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?
    .as_ref()
    .map(|r| evaluation_from_row(r).map(|(_, e)| e))
    .transpose()
}

pub(crate) async fn list(store: &PgStore, filter: &ListFilter) -> Result<Page<Evaluation>> {
    let cursor = filter.cursor.as_deref().map(Cursor::decode).transpose()?;
    let limit = filter.limit.max(1);
    let limit_items = usize::try_from(limit).unwrap_or(usize::MAX);
    // Only fixed fragments go into the SQL; every value is bound. With a label, the label
    // index drives the scan (it is ordered like the listing); otherwise the evaluations'.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(concat!("SELECT ", evaluation_cols!()));
    let created = if let Some((k, v)) = &filter.label {
        q.push(" FROM evaluation_labels l JOIN evaluations e ON e.pk = l.pk WHERE l.key = ")
            .push_bind(k.clone())
            .push(" AND l.value = ")
            .push_bind(v.clone());
        "l"
    } else {
        q.push(" FROM evaluations e WHERE TRUE");
        "e"
    };
    if let Some(t) = &filter.tenant {
        q.push(" AND e.tenant = ").push_bind(t.clone());
    }
    if let Some(s) = filter.status {
        q.push(" AND e.status = ").push_bind(s.as_str());
    }
    if let Some(a) = filter.created_after {
        q.push(format_args!(" AND {created}.created_at >= "))
            .push_bind(a);
    }
    if let Some(b) = filter.created_before {
        q.push(format_args!(" AND {created}.created_at < "))
            .push_bind(b);
    }
    if let Some(c) = cursor {
        q.push(format_args!(
            " AND ({created}.created_at, {created}.pk) < ("
        ))
        .push_bind(c.created_at)
        .push(", ")
        .push_bind(c.key)
        .push(")");
    }
    q.push(format_args!(
        " ORDER BY {created}.created_at DESC, {created}.pk DESC LIMIT "
    ))
    .push_bind(i64::from(limit) + 1);
    let found = q.build().fetch_all(&store.pool).await.map_err(db)?;
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
    store: &PgStore,
    id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>> {
    sqlx::query(
        "SELECT evaluation_id, seq, kind, data, at FROM events \
         WHERE evaluation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await
    .map_err(db)?
    .iter()
    .map(event_from_row)
    .collect()
}
