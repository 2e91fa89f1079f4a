//! The queue apart from claiming (`claim`): leases, output, finishing, hand-backs, the
//! reaper, cancellation, requeueing and the queue's counts.
//!
//! Transitions load the lifecycle, ask `assay_store::lifecycle`, and persist the `Change` if
//! the row is still at the revision loaded (`transition::apply`). Heartbeats and output chunks
//! are single fenced statements (`WHERE id = $1 AND lease_token = $2 AND status = 'running'`),
//! committed on their own: they write no state the rules decide. A heartbeat changes only
//! `lease_expires_at` and `revision`, columns no index holds, so PostgreSQL updates the row in
//! place (a HOT update, no index writes).

use crate::connection::{PgStore, db_now};
use crate::error::db;
use crate::rows::with_lifecycle;
use crate::transition::{apply, expired, fence_error, persist};
use assay_domain::{EvaluationStatus, OutputStream, RetryPolicy};
use assay_store::lifecycle::{Change, Lifecycle};
use assay_store::{
    Evaluation, EventKind, LeaseState, Millis, Result, RunRecord, StoreError, after,
};
use sqlx::Row;
use std::time::Duration;

/// A lease's length in milliseconds (saturating).
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) async fn heartbeat(
    store: &PgStore,
    id: &str,
    token: &str,
    lease: Duration,
    now: Millis,
) -> Result<LeaseState> {
    // $3: the new expiry by the caller's clock; NULL: the database's clock plus $4.
    let row = sqlx::query(concat!(
        "UPDATE evaluations SET revision = revision + 1, lease_expires_at = COALESCE($3::bigint, ",
        db_now!(),
        " + $4) WHERE id = $1 AND lease_token = $2 AND status = 'running' \
         RETURNING cancel_requested"
    ))
    .bind(id)
    .bind(token)
    .bind(store.now_arg(now).map(|now| after(now, lease)))
    .bind(lease_ms(lease))
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    match row {
        Some(row) => Ok(LeaseState {
            cancel_requested: row.try_get("cancel_requested").map_err(db)?,
        }),
        None => {
            let mut conn = store.pool.acquire().await.map_err(db)?;
            Err(fence_error(&mut conn, id).await)
        }
    }
}

pub(crate) async fn append_output(
    store: &PgStore,
    id: &str,
    token: &str,
    stream: OutputStream,
    data: &str,
    now: Millis,
) -> Result<i64> {
    // One statement (its own transaction): the fenced seq reservation and the event. An output
    // event's stored data is the text itself (`EventPayload::encode`); binding the chunk
    // directly spares copies of it on the busiest write.
    let row = sqlx::query(concat!(
        "WITH s AS (UPDATE evaluations SET next_seq = next_seq + 1 \
           WHERE id = $1 AND lease_token = $2 AND status = 'running' \
           RETURNING next_seq - 1 AS seq) \
         INSERT INTO events (evaluation_id, seq, kind, data, at) \
         SELECT $1, s.seq, $3, $4, COALESCE($5::bigint, ",
        db_now!(),
        ") FROM s RETURNING seq, pg_notify('assay_events', $1) AS event_hint"
    ))
    .bind(id)
    .bind(token)
    .bind(EventKind::from(stream).as_str())
    .bind(data)
    .bind(store.now_arg(now))
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    match row {
        Some(row) => row.try_get("seq").map_err(db),
        None => {
            let mut conn = store.pool.acquire().await.map_err(db)?;
            Err(fence_error(&mut conn, id).await)
        }
    }
}

/// A fenced transition of `id` (`transition` refuses a stale token): the status after it.
async fn fenced(
    store: &PgStore,
    id: &str,
    now: Millis,
    transition: impl Fn(&Lifecycle, Millis) -> Result<Change>,
) -> Result<EvaluationStatus> {
    let (_, change) = apply(store, id, now, |cur, now| {
        transition(&cur.lifecycle, now).map(Some)
    })
    .await?;
    change
        .map(|c| c.next.status)
        .ok_or_else(|| StoreError::Backend("a fenced transition changed nothing".into()))
}

pub(crate) async fn finish_record(
    store: &PgStore,
    id: &str,
    token: &str,
    record: &RunRecord,
    policy: &RetryPolicy,
    now: Millis,
) -> Result<EvaluationStatus> {
    fenced(store, id, now, |l, now| {
        l.finish_record(id, token, record.clone(), policy, now)
    })
    .await
}

pub(crate) async fn release(store: &PgStore, id: &str, token: &str, now: Millis) -> Result<()> {
    fenced(store, id, now, |l, now| l.release(id, token, now)).await?;
    Ok(())
}

pub(crate) async fn reap_expired(
    store: &PgStore,
    policy: &RetryPolicy,
    now: Millis,
) -> Result<u64> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    let now = store.now_on(&mut conn, now).await?;
    let mut reaped = 0;
    for cur in expired(&mut conn, now).await? {
        // Written only if untouched since read: a heartbeat, a finish or another reaper that
        // came first wins, and this one leaves the evaluation alone.
        if cur.lifecycle.lease_expired(now)
            && persist(&mut conn, &cur, &cur.lifecycle.expire(policy, now), now).await?
        {
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// Applies `transition` to the lifecycle of `id` (`None`: nothing changes) and returns the
/// evaluation after it.
async fn transition(
    store: &PgStore,
    id: &str,
    now: Millis,
    transition: impl Fn(&Lifecycle, Millis) -> Result<Option<Change>>,
) -> Result<Evaluation> {
    let (e, change) = apply(store, id, now, |cur, now| transition(&cur.lifecycle, now)).await?;
    Ok(match change {
        Some(c) => with_lifecycle(e, &c.next),
        None => e,
    })
}

pub(crate) async fn cancel(store: &PgStore, id: &str, now: Millis) -> Result<Evaluation> {
    transition(store, id, now, |l, now| Ok(l.cancel(now))).await
}

pub(crate) async fn requeue(store: &PgStore, id: &str, now: Millis) -> Result<Evaluation> {
    transition(store, id, now, |l, _| l.requeue(id).map(Some)).await
}

pub(crate) async fn count_queued(store: &PgStore, tenant: Option<&str>) -> Result<u64> {
    // The queue table holds the queued evaluations and nothing else.
    let n: i64 = match tenant {
        Some(t) => sqlx::query_scalar("SELECT count(*) FROM queue WHERE tenant = $1")
            .bind(t)
            .fetch_one(&store.pool)
            .await
            .map_err(db)?,
        None => sqlx::query_scalar("SELECT count(*) FROM queue")
            .fetch_one(&store.pool)
            .await
            .map_err(db)?,
    };
    u64::try_from(n).map_err(|_| StoreError::Backend(format!("negative count {n}")))
}
