//! Workers (what each one last reported) and the queue's statistics.
//!
//! A worker's `started_at` and `last_seen` are what it reports (the service compares them with
//! its own clock to hide stale workers); they are data, not the store's timestamps.

use crate::connection::{PgStore, db_now};
use crate::error::db;
use crate::rows::{get, parse_status, worker_from_row};
use assay_domain::EvaluationStatus;
use assay_store::{Millis, QueueStats, Result};
use std::collections::BTreeMap;

pub(crate) async fn heartbeat(store: &PgStore, info: &assay_store::WorkerInfo) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (id, hostname, runtime, slots, running, started_at, last_seen) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, \
         runtime = excluded.runtime, slots = excluded.slots, running = excluded.running, \
         started_at = excluded.started_at, last_seen = excluded.last_seen",
    )
    .bind(&info.id)
    .bind(&info.hostname)
    .bind(&info.runtime)
    .bind(i64::from(info.slots))
    .bind(i64::from(info.running))
    .bind(info.started_at)
    .bind(info.last_seen)
    .execute(&store.pool)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn remove(store: &PgStore, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM workers WHERE id = $1")
        .bind(id)
        .execute(&store.pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn queue_stats(
    store: &PgStore,
    tenant: Option<&str>,
    now: Millis,
) -> Result<QueueStats> {
    // One snapshot for the counts, the oldest queued and the workers.
    let mut tx = store
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db)?;
    let mut counts: BTreeMap<EvaluationStatus, u64> =
        EvaluationStatus::ALL.iter().map(|&s| (s, 0)).collect();
    let rows = sqlx::query(
        "SELECT status, count(*) AS n FROM evaluations \
         WHERE $1::text IS NULL OR tenant = $1 GROUP BY status",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    for row in rows {
        let status: String = get(&row, "status")?;
        let n: i64 = get(&row, "n")?;
        counts.insert(parse_status(&status)?, u64::try_from(n).unwrap_or(0));
    }
    // The oldest queued evaluation is the queue table's (small) business.
    let row = sqlx::query(concat!(
        "SELECT (SELECT min(created_at) FROM queue WHERE $1::text IS NULL OR tenant = $1) \
           AS oldest, COALESCE($2::bigint, ",
        db_now!(),
        ") AS now"
    ))
    .bind(tenant)
    .bind(store.now_arg(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let oldest: Option<Millis> = get(&row, "oldest")?;
    let now: Millis = get(&row, "now")?;
    let workers = sqlx::query(
        "SELECT id, hostname, runtime, slots, running, started_at, last_seen \
         FROM workers ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    .iter()
    .map(worker_from_row)
    .collect::<Result<Vec<_>>>()?;
    tx.rollback().await.map_err(db)?;
    Ok(QueueStats {
        counts,
        oldest_queued_age_ms: oldest.map(|t| (now - t).max(0)),
        workers,
    })
}
