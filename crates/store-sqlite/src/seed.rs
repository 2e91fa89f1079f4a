//! Bulk history for the store benchmark (feature `bench`): finished evaluations written with a
//! recursive series in SQL, in the stored formats, so that a benchmark can compare claims on an
//! empty store with claims on one that holds a long history.

use crate::connection::SqliteStore;
use crate::error::db;
use assay_domain::{EvaluationStatus, LimitPolicy, Program, RunResult, RunStatus};
use assay_store::record::{RunRecord, encode_files, encode_labels, encode_limits, encode_result};
use assay_store::{EventPayload, Millis, Result};
use std::collections::BTreeMap;

/// Rows per transaction.
const CHUNK: u64 = 50_000;

/// Tenants the history is spread over (`seed-0` … `seed-9`).
const TENANTS: i64 = 10;

impl SqliteStore {
    /// Inserts `n` succeeded evaluations (each with its four events: queued, running,
    /// succeeded, result), finished before `before`, spread over ten tenants, then analyses
    /// the tables.
    pub async fn seed_finished(&self, n: u64, before: Millis) -> Result<()> {
        let files = encode_files(Program::single("print(1)\n").files());
        let limits = encode_limits(&LimitPolicy::default().defaults);
        let labels = encode_labels(&BTreeMap::from([("seed".to_string(), "1".to_string())]));
        let mut run = RunResult::platform_error("runc", "");
        run.status = RunStatus::Succeeded;
        run.error = None;
        run.exit_code = Some(0);
        run.stdout = "1\n".into();
        let result = encode_result(&RunRecord::of(&run));
        let done = EvaluationStatus::Succeeded;
        let events = [
            EventPayload::status(EvaluationStatus::Queued, 0),
            EventPayload::status(EvaluationStatus::Running, 1),
            EventPayload::status(done, 1),
            EventPayload::Result { status: done },
        ];
        let total = i64::try_from(n).unwrap_or(i64::MAX);
        let mut from = 0u64;
        while from < n {
            let to = (from + CHUNK).min(n);
            let (lo, hi) = (
                i64::try_from(from).unwrap_or(i64::MAX),
                i64::try_from(to).unwrap_or(i64::MAX),
            );
            let mut tx = self.write_tx().await?;
            let first_pk: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pk), 0) FROM evaluations")
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(
                "WITH RECURSIVE g (x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM g WHERE x + 1 < ?2) \
                 INSERT INTO evaluations (id, tenant, status, language, entrypoint, files, stdin, \
                   limits, priority, labels, attempts, max_attempts, created_at, started_at, \
                   finished_at, result, worker_id, next_seq) \
                 SELECT 'seed-' || x, 'seed-' || (x % ?3), ?4, 'python', 'main.py', ?5, '', ?6, 0, \
                   ?7, 1, 3, ?8 - (?9 - x) * 10, ?8 - (?9 - x) * 10 + 1, ?8 - (?9 - x) * 10 + 5, \
                   ?10, 'seed-worker', 5 FROM g",
            )
            .bind(lo)
            .bind(hi)
            .bind(TENANTS)
            .bind(done.as_str())
            .bind(&files)
            .bind(&limits)
            .bind(&labels)
            .bind(before)
            .bind(total)
            .bind(&result)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query(
                "INSERT INTO evaluation_labels (key, value, created_at, pk) \
                 SELECT 'seed', '1', created_at, pk FROM evaluations WHERE pk > ?",
            )
            .bind(first_pk)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let mut q = sqlx::query(
                "WITH v (n, kind, data) AS (VALUES (1, ?, ?), (2, ?, ?), (3, ?, ?), (4, ?, ?)) \
                 INSERT INTO events (evaluation_id, seq, kind, data, at) \
                 SELECT e.id, v.n, v.kind, v.data, e.created_at + v.n \
                 FROM evaluations e, v WHERE e.pk > ?",
            );
            for e in &events {
                q = q.bind(e.kind().as_str()).bind(e.encode());
            }
            q.bind(first_pk).execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            from = to;
        }
        sqlx::query("ANALYZE")
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(())
    }
}
