//! Workers (what each one last reported) and the queue's statistics.

use crate::connection::SqliteStore;
use crate::error::db;
use crate::rows::{parse_status, worker_from_row};
use assay_domain::EvaluationStatus;
use assay_store::{Millis, QueueStats, Result, WorkerInfo};
use sqlx::Row;
use std::collections::BTreeMap;

pub(crate) async fn heartbeat(store: &SqliteStore, info: &WorkerInfo) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (id, hostname, runtime, slots, running, started_at, last_seen) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
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
    .execute(&store.writer)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn remove(store: &SqliteStore, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM workers WHERE id = ?")
        .bind(id)
        .execute(&store.writer)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn queue_stats(
    store: &SqliteStore,
    tenant: Option<&str>,
    now: Millis,
) -> Result<QueueStats> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    let mut counts: BTreeMap<EvaluationStatus, u64> =
        EvaluationStatus::ALL.iter().map(|&s| (s, 0)).collect();
    // `?1 IS NULL`: all tenants; else the (tenant, status, created_at) index serves both.
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM evaluations \
         WHERE ?1 IS NULL OR tenant = ?1 GROUP BY status",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for row in rows {
        let status: String = row.try_get("status").map_err(db)?;
        counts.insert(parse_status(&status)?, row.try_get("n").map_err(db)?);
    }
    let oldest: Option<Millis> = sqlx::query_scalar(
        "SELECT MIN(created_at) FROM evaluations \
         WHERE status = 'queued' AND (?1 IS NULL OR tenant = ?1)",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let workers = sqlx::query(
        "SELECT id, hostname, runtime, slots, running, started_at, last_seen \
         FROM workers ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?
    .iter()
    .map(worker_from_row)
    .collect::<Result<Vec<_>>>()?;
    Ok(QueueStats {
        counts,
        oldest_queued_age_ms: oldest.map(|t| (now - t).max(0)),
        workers,
    })
}
