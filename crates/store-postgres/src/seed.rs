//! Bulk history for the store benchmark (feature `bench`): finished evaluations written with
//! `INSERT … SELECT generate_series`, in the stored formats, so that a benchmark can compare
//! claims on an empty store with claims on one that holds a long history.

use crate::connection::PgStore;
use crate::error::db;
use assay_domain::{EvaluationStatus, LimitPolicy, Program, RunResult, RunStatus};
use assay_store::record::{RunRecord, encode_files, encode_labels, encode_limits, encode_result};
use assay_store::{EventPayload, Millis, Result};
use std::collections::BTreeMap;

/// Rows per statement (each its own transaction).
const CHUNK: u64 = 50_000;

/// Tenants the history is spread over (`seed-0` … `seed-9`).
const TENANTS: i64 = 10;

impl PgStore {
    /// Inserts `n` succeeded evaluations (each with its four events: queued, running,
    /// succeeded, result), finished before `before`, spread over ten tenants, then vacuums and
    /// analyses the tables as autovacuum would have.
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
        let kinds: Vec<&str> = events.iter().map(|e| e.kind().as_str()).collect();
        let data: Vec<String> = events.iter().map(EventPayload::encode).collect();
        let total = i64::try_from(n).unwrap_or(i64::MAX);
        let mut from = 0u64;
        while from < n {
            let to = (from + CHUNK).min(n);
            let (lo, hi) = (
                i64::try_from(from).unwrap_or(i64::MAX),
                i64::try_from(to).unwrap_or(i64::MAX),
            );
            sqlx::query(
                "WITH ins AS ( \
                   INSERT INTO evaluations (id, tenant, status, language, entrypoint, files, \
                     stdin, limits, priority, labels, attempts, max_attempts, created_at, \
                     started_at, finished_at, result, worker_id, next_seq) \
                   SELECT 'seed-' || g, 'seed-' || (g % $3), $4, 'python', 'main.py', $5, '', \
                     $6, 0, $7, 1, 3, $8 - ($9 - g) * 10, $8 - ($9 - g) * 10 + 1, \
                     $8 - ($9 - g) * 10 + 5, $10, 'seed-worker', 5 \
                   FROM generate_series($1::bigint, $2::bigint - 1) AS g \
                   RETURNING pk, id, created_at), \
                 labelled AS ( \
                   INSERT INTO evaluation_labels (key, value, created_at, pk) \
                   SELECT 'seed', '1', created_at, pk FROM ins) \
                 INSERT INTO events (evaluation_id, seq, kind, data, at) \
                 SELECT ins.id, o.n, o.kind, o.data, ins.created_at + o.n \
                 FROM ins, unnest($11::text[], $12::text[]) WITH ORDINALITY AS o (kind, data, n)",
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
            .bind(&kinds)
            .bind(&data)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            from = to;
        }
        for table in ["evaluations", "evaluation_labels", "events", "queue"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}
