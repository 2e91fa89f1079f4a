//! The queue: claiming, leases, finishing, hand-backs, the reaper, cancellation, requeueing.
//!
//! Every transition is the same three steps inside one write transaction: load the lifecycle,
//! ask `assay_store::lifecycle` what happens, and persist the `Change` (the whole lifecycle in
//! one UPDATE that also reserves the events' seqs, then the events). This module decides
//! nothing; the queue's rules live in `assay-store`. Heartbeats and output chunks are single
//! fenced statements: they write no state the rules decide.

use crate::connection::SqliteStore;
use crate::error::db;
use crate::event_log;
use crate::rows::{
    Current, bind_lifecycle, current_from_row, evaluation_by_id, evaluation_cols,
    evaluation_from_row, input_from_row, lifecycle_cols, lifecycle_set, with_lifecycle,
};
use assay_domain::{EvaluationStatus, OutputStream, RetryPolicy};
use assay_store::claim::{FairPick, QueueHead};
use assay_store::lifecycle::{Change, Lifecycle};
use assay_store::{
    Claim, ClaimPolicy, Evaluation, EventKind, LeaseState, Millis, Result, RunRecord, StoreError,
    after,
};
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;
use std::collections::HashMap;
use std::time::Duration;

/// The lifecycle of evaluation `id`; `NotFound` if there is none.
async fn load(conn: &mut SqliteConnection, id: &str) -> Result<Current> {
    let row = sqlx::query(concat!(
        "SELECT ",
        lifecycle_cols!(),
        " FROM evaluations e WHERE e.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    current_from_row(&row)
}

/// Writes `change` of the evaluation `cur`: its whole lifecycle and its events (with seqs reserved
/// from `next_seq` by the same UPDATE).
async fn persist(
    conn: &mut SqliteConnection,
    cur: &Current,
    change: &Change,
    now: Millis,
) -> Result<()> {
    let n = i64::try_from(change.events.len()).unwrap_or(i64::MAX);
    let q = sqlx::query(concat!(
        "UPDATE evaluations SET ",
        lifecycle_set!(),
        ", next_seq = next_seq + ? WHERE pk = ? RETURNING next_seq - ? AS first_seq"
    ));
    let first_seq: i64 = bind_lifecycle(q, &change.next)
        .bind(n)
        .bind(cur.pk)
        .bind(n)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?
        .try_get("first_seq")
        .map_err(db)?;
    event_log::append(conn, &cur.id, first_seq, &change.events, now).await
}

/// Why a fenced single-statement write matched no row.
async fn fence_error(conn: &mut SqliteConnection, id: &str) -> StoreError {
    match sqlx::query("SELECT 1 FROM evaluations WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(Some(_)) => StoreError::LeaseLost(id.to_string()),
        Ok(None) => StoreError::NotFound(id.to_string()),
        Err(e) => db(e),
    }
}

/// The queued job [`FairPick`] chooses (its `pk`), under `policy`'s running caps. Runs inside
/// the claim's write transaction.
///
/// Cost: one scan of the running evaluations (few: at most the slots of all workers), one
/// index seek per tenant with queued work to find those tenants, then one seek per tenant the
/// planner names for its best job.
async fn pick(
    conn: &mut SqliteConnection,
    policy: &ClaimPolicy,
    now: Millis,
) -> Result<Option<i64>> {
    let mut running: HashMap<String, u32> = HashMap::new();
    for row in sqlx::query(
        "SELECT tenant, COUNT(*) AS n FROM evaluations INDEXED BY evaluations_running_tenant \
         WHERE status = 'running' GROUP BY tenant",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?
    {
        let n: i64 = row.try_get("n").map_err(db)?;
        running.insert(
            row.try_get("tenant").map_err(db)?,
            u32::try_from(n).unwrap_or(u32::MAX),
        );
    }
    // The distinct tenants with queued work: a skip scan of the queue index (SQLite has no
    // loose index scan of its own; each step is one seek past the previous tenant).
    let tenants: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE q(tenant) AS ( \
           SELECT (SELECT MIN(tenant) FROM evaluations INDEXED BY evaluations_queue_tenant \
                   WHERE status = 'queued') \
           UNION ALL \
           SELECT (SELECT MIN(e.tenant) FROM evaluations e INDEXED BY evaluations_queue_tenant \
                   WHERE e.status = 'queued' AND e.tenant > q.tenant) \
           FROM q WHERE q.tenant IS NOT NULL) \
         SELECT tenant FROM q WHERE tenant IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut plan = FairPick::new(&running, tenants, policy);
    while let Some(tenant) = plan.next_tenant() {
        // The first entry of the tenant's range of the queue index that is out of backoff.
        let head = sqlx::query(
            "SELECT pk, priority, created_at FROM evaluations INDEXED BY evaluations_queue_tenant \
             WHERE status = 'queued' AND tenant = ? AND not_before <= ? \
             ORDER BY priority DESC, created_at, pk LIMIT 1",
        )
        .bind(tenant)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .map(|row| -> Result<QueueHead> {
            Ok(QueueHead {
                key: row.try_get("pk").map_err(db)?,
                priority: row.try_get("priority").map_err(db)?,
                created_at: row.try_get("created_at").map_err(db)?,
            })
        })
        .transpose()?;
        plan.offer(head);
    }
    Ok(plan.winner())
}

pub(crate) async fn claim(
    store: &SqliteStore,
    worker_id: &str,
    lease: Duration,
    policy: &ClaimPolicy,
    now: Millis,
) -> Result<Option<Claim>> {
    let mut tx = store.write_tx().await?;
    // The pick and the update share the write lock: no other claim can slip in between.
    let Some(pk) = pick(&mut tx, policy, now).await? else {
        // Nothing to claim (the common answer of an idle queue): free the lock at once.
        tx.rollback().await.map_err(db)?;
        return Ok(None);
    };
    let row = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        ", e.files, e.stdin FROM evaluations e WHERE e.pk = ?"
    ))
    .bind(pk)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let (cur, evaluation) = evaluation_from_row(&row)?;
    let input = input_from_row(&row)?;
    let token = uuid::Uuid::new_v4().to_string();
    let lease_expires_at = after(now, lease);
    // The pick saw it queued under the same write lock: a refusal here is a bug, not a race.
    let change = cur
        .lifecycle
        .claim(&cur.id, worker_id, &token, lease_expires_at, now)
        .map_err(|e| StoreError::Backend(format!("claim: the picked evaluation: {e}")))?;
    persist(&mut tx, &cur, &change, now).await?;
    tx.commit().await.map_err(db)?;
    Ok(Some(Claim {
        attempt: change.next.attempts,
        evaluation: with_lifecycle(evaluation, &change.next),
        input,
        token,
        lease_expires_at,
    }))
}

pub(crate) async fn count_queued(store: &SqliteStore, tenant: Option<&str>) -> Result<u64> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    count_queued_in(&mut conn, tenant).await
}

/// `count_queued` on a given connection (inside a write transaction: what admission counts).
pub(crate) async fn count_queued_in(
    conn: &mut SqliteConnection,
    tenant: Option<&str>,
) -> Result<u64> {
    // Both forms count entries of a partial index of the queue only (one tenant: a range).
    let n: u64 = match tenant {
        Some(t) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM evaluations INDEXED BY evaluations_queue_tenant \
             WHERE status = 'queued' AND tenant = ?",
        )
        .bind(t)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?,
        None => sqlx::query_scalar(
            "SELECT COUNT(*) FROM evaluations INDEXED BY evaluations_queue_tenant \
             WHERE status = 'queued'",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?,
    };
    Ok(n)
}

pub(crate) async fn heartbeat(
    store: &SqliteStore,
    id: &str,
    token: &str,
    lease: Duration,
    now: Millis,
) -> Result<LeaseState> {
    let mut conn = store.writer.acquire().await.map_err(db)?;
    let row = sqlx::query(
        "UPDATE evaluations SET lease_expires_at = ? \
         WHERE id = ? AND lease_token = ? AND status = 'running' RETURNING cancel_requested",
    )
    .bind(after(now, lease))
    .bind(id)
    .bind(token)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    match row {
        Some(row) => Ok(LeaseState {
            cancel_requested: row.try_get("cancel_requested").map_err(db)?,
        }),
        None => Err(fence_error(&mut conn, id).await),
    }
}

pub(crate) async fn append_output(
    store: &SqliteStore,
    id: &str,
    token: &str,
    stream: OutputStream,
    data: &str,
    now: Millis,
) -> Result<i64> {
    let mut tx = store.write_tx().await?;
    let seq: Option<i64> = sqlx::query_scalar(
        "UPDATE evaluations SET next_seq = next_seq + 1 \
         WHERE id = ? AND lease_token = ? AND status = 'running' RETURNING next_seq - 1",
    )
    .bind(id)
    .bind(token)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(seq) = seq else {
        return Err(fence_error(&mut tx, id).await);
    };
    // An output event's stored data is the text itself (`EventPayload::encode`); binding the
    // chunk directly spares two copies of it on the busiest write.
    sqlx::query("INSERT INTO events (evaluation_id, seq, kind, data, at) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(seq)
        .bind(EventKind::from(stream).as_str())
        .bind(data)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(seq)
}

pub(crate) async fn finish(
    store: &SqliteStore,
    id: &str,
    token: &str,
    record: &RunRecord,
    policy: &RetryPolicy,
    now: Millis,
) -> Result<EvaluationStatus> {
    let mut tx = store.write_tx().await?;
    let cur = load(&mut tx, id).await?;
    let change = cur
        .lifecycle
        .finish_record(id, token, record.clone(), policy, now)?;
    persist(&mut tx, &cur, &change, now).await?;
    tx.commit().await.map_err(db)?;
    Ok(change.next.status)
}

pub(crate) async fn release(store: &SqliteStore, id: &str, token: &str, now: Millis) -> Result<()> {
    let mut tx = store.write_tx().await?;
    let cur = load(&mut tx, id).await?;
    let change = cur.lifecycle.release(id, token, now)?;
    persist(&mut tx, &cur, &change, now).await?;
    tx.commit().await.map_err(db)
}

pub(crate) async fn reap_expired(
    store: &SqliteStore,
    policy: &RetryPolicy,
    now: Millis,
) -> Result<u64> {
    let mut tx = store.write_tx().await?;
    let expired = sqlx::query(concat!(
        "SELECT ",
        lifecycle_cols!(),
        " FROM evaluations e INDEXED BY evaluations_leases \
          WHERE e.status = 'running' AND e.lease_expires_at <= ?"
    ))
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    .iter()
    .map(current_from_row)
    .collect::<Result<Vec<_>>>()?;
    let mut reaped = 0;
    for cur in expired.iter().filter(|c| c.lifecycle.lease_expired(now)) {
        persist(&mut tx, cur, &cur.lifecycle.expire(policy, now), now).await?;
        reaped += 1;
    }
    tx.commit().await.map_err(db)?;
    Ok(reaped)
}

/// Loads the whole evaluation `id` in a write transaction, applies `transition` to its
/// lifecycle (`None`: nothing changes) and returns the evaluation after it.
async fn transition(
    store: &SqliteStore,
    id: &str,
    now: Millis,
    transition: impl FnOnce(&Lifecycle) -> Result<Option<Change>>,
) -> Result<Evaluation> {
    let mut tx = store.write_tx().await?;
    let (cur, e) = evaluation_by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    let Some(change) = transition(&cur.lifecycle)? else {
        tx.rollback().await.map_err(db)?;
        return Ok(e);
    };
    persist(&mut tx, &cur, &change, now).await?;
    tx.commit().await.map_err(db)?;
    Ok(with_lifecycle(e, &change.next))
}

pub(crate) async fn cancel(store: &SqliteStore, id: &str, now: Millis) -> Result<Evaluation> {
    transition(store, id, now, |l| Ok(l.cancel(now))).await
}

pub(crate) async fn requeue(store: &SqliteStore, id: &str, now: Millis) -> Result<Evaluation> {
    transition(store, id, now, |l| l.requeue(id).map(Some)).await
}
