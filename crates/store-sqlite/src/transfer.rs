//! Whole evaluations in and out: retention (`delete_finished`) and the export and import that
//! `assay store copy` is made of. Rows are written as they were read: ids, times, queue state
//! and events keep their values, so a copied installation is the same installation.

use crate::connection::SqliteStore;
use crate::error::db;
use crate::event_log::{self, EventRow};
use crate::rows::{bind_lifecycle, evaluation_cols, evaluation_from_row, event_from_row};
use assay_domain::EvaluationStatus;
use assay_store::cursor::{decode_seq, encode_seq};
use assay_store::lifecycle::Lifecycle;
use assay_store::record::{encode_files, encode_labels, encode_limits};
use assay_store::{Deleted, EvaluationDump, JobInput, Millis, Page, Result, StoreError};
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

/// The terminal statuses, for SQL (`status IN (…)`).
fn terminal_list() -> String {
    EvaluationStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn delete_finished(
    store: &SqliteStore,
    before: Millis,
    limit: u32,
) -> Result<Vec<Deleted>> {
    let mut tx = store.write_tx().await?;
    let sql = format!(
        "SELECT pk, id, result FROM evaluations INDEXED BY evaluations_finished \
         WHERE finished_at IS NOT NULL AND finished_at < ? AND status IN ({}) \
         ORDER BY finished_at, pk LIMIT ?",
        terminal_list()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let mut deleted = Vec::with_capacity(rows.len());
    for row in &rows {
        let pk: i64 = row.try_get("pk").map_err(db)?;
        let id: String = row.try_get("id").map_err(db)?;
        let result: Option<String> = row.try_get("result").map_err(db)?;
        let blobs = match result.as_deref() {
            Some(r) => assay_store::record::decode_result(r)?.blob_keys(),
            None => Vec::new(),
        };
        for sql in [
            "DELETE FROM events WHERE evaluation_id = ?",
            "DELETE FROM evaluation_labels WHERE pk = (SELECT pk FROM evaluations WHERE id = ?)",
        ] {
            sqlx::query(sql)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("DELETE FROM evaluations WHERE pk = ?")
            .bind(pk)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        deleted.push(Deleted { id, blobs });
    }
    tx.commit().await.map_err(db)?;
    Ok(deleted)
}

pub(crate) async fn export(
    store: &SqliteStore,
    after: Option<&str>,
    limit: u32,
) -> Result<Page<EvaluationDump>> {
    let after = after.map(decode_seq).transpose()?.unwrap_or(0);
    let limit = limit.max(1);
    // One read transaction: the page and its events agree.
    let mut tx = store.reader.begin().await.map_err(db)?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        ", e.files, e.stdin FROM evaluations e WHERE e.pk > ? ORDER BY e.pk LIMIT ?"
    ))
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > take;
    let mut items = Vec::with_capacity(rows.len().min(take));
    let mut last_pk = after;
    for row in rows.iter().take(take) {
        let (cur, evaluation) = evaluation_from_row(row)?;
        last_pk = cur.pk;
        let input = JobInput {
            entrypoint: evaluation.entrypoint.clone(),
            files: assay_store::record::decode_files(
                &row.try_get::<String, _>("files").map_err(db)?,
            )?,
            stdin: row.try_get("stdin").map_err(db)?,
        };
        let events = sqlx::query(
            "SELECT evaluation_id, seq, kind, data, at FROM events \
             WHERE evaluation_id = ? ORDER BY seq",
        )
        .bind(&evaluation.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>>>()?;
        items.push(EvaluationDump {
            evaluation,
            input,
            events,
            not_before: cur.lifecycle.not_before,
            lease_token: cur.lifecycle.lease_token,
            lease_expires_at: cur.lifecycle.lease_expires_at,
        });
    }
    tx.rollback().await.map_err(db)?;
    Ok(Page {
        items,
        next_cursor: more.then(|| encode_seq(last_pk)),
    })
}

pub(crate) async fn import(store: &SqliteStore, dumps: Vec<EvaluationDump>) -> Result<()> {
    if dumps.is_empty() {
        return Ok(());
    }
    let mut tx = store.write_tx().await?;
    let mut pk: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pk), 0) FROM evaluations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    for d in &dumps {
        pk += 1;
        insert_one(&mut tx, pk, d).await?;
    }
    tx.commit().await.map_err(db)
}

async fn insert_one(conn: &mut SqliteConnection, pk: i64, d: &EvaluationDump) -> Result<()> {
    let e = &d.evaluation;
    let lifecycle = Lifecycle {
        status: e.status,
        attempts: e.attempts,
        max_attempts: e.max_attempts,
        not_before: d.not_before,
        lease_token: d.lease_token.clone(),
        lease_expires_at: d.lease_expires_at,
        worker_id: e.worker_id.clone(),
        started_at: e.started_at,
        finished_at: e.finished_at,
        result: e.result.clone(),
        error: e.error.clone(),
        cancel_requested: e.cancel_requested,
    };
    let next_seq = d.events.iter().map(|v| v.seq).max().unwrap_or(0) + 1;
    let q = sqlx::query(
        "INSERT INTO evaluations (pk, id, tenant, language, entrypoint, files, stdin, limits, \
         priority, labels, created_at, idempotency_key, next_seq, status, attempts, \
         max_attempts, not_before, lease_token, lease_expires_at, worker_id, started_at, \
         finished_at, result, error, cancel_requested) VALUES \
         (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(pk)
    .bind(&e.id)
    .bind(&e.tenant)
    .bind(e.language.as_str())
    .bind(&e.entrypoint)
    .bind(encode_files(&d.input.files))
    .bind(&d.input.stdin)
    .bind(encode_limits(&e.limits))
    .bind(e.priority)
    .bind(encode_labels(&e.labels))
    .bind(e.created_at)
    .bind(&e.idempotency_key)
    .bind(next_seq);
    bind_lifecycle(q, &lifecycle)
        .execute(&mut *conn)
        .await
        .map_err(|err| match db(err) {
            StoreError::Backend(m) => StoreError::Backend(format!("importing {}: {m}", e.id)),
            other => other,
        })?;
    for (k, v) in &e.labels {
        sqlx::query(
            "INSERT INTO evaluation_labels (key, value, created_at, pk) VALUES (?, ?, ?, ?)",
        )
        .bind(k)
        .bind(v)
        .bind(e.created_at)
        .bind(pk)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    let rows: Vec<EventRow<'_>> = d
        .events
        .iter()
        .map(|v| EventRow {
            evaluation_id: &e.id,
            seq: v.seq,
            payload: &v.payload,
            at: v.at,
        })
        .collect();
    event_log::insert(conn, &rows).await
}
