//! Whole evaluations in and out: retention (`delete_finished`) and the export and import that
//! `assay store copy` is made of. Rows are written as they were read: ids, times, queue state
//! and events keep their values, so a copied installation is the same installation.

use crate::bulk::{self, EventRow, NewRow};
use crate::connection::PgStore;
use crate::error::db;
use crate::rows::{evaluation_cols, evaluation_from_row, event_from_row, get, input_from_row};
use assay_domain::EvaluationStatus;
use assay_store::cursor::{decode_seq, encode_seq};
use assay_store::lifecycle::Lifecycle;
use assay_store::record::decode_result;
use assay_store::{Deleted, EvaluationDump, Event, Millis, Page, Result, StoreError};
use std::collections::HashMap;

pub(crate) async fn delete_finished(
    store: &PgStore,
    before: Millis,
    limit: u32,
) -> Result<Vec<Deleted>> {
    let terminal: Vec<&str> = EvaluationStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    // One statement: the oldest finished evaluations (the partial index of finished ones),
    // deleted with their events and labels (foreign keys cascade). Rows another transaction
    // holds (a requeue of a dead letter) are left for the next run.
    let rows = sqlx::query(
        "WITH doomed AS ( \
           SELECT pk FROM evaluations \
           WHERE finished_at IS NOT NULL AND finished_at < $1 AND status = ANY($2) \
           ORDER BY finished_at, pk LIMIT $3 FOR UPDATE SKIP LOCKED) \
         DELETE FROM evaluations e USING doomed WHERE e.pk = doomed.pk \
         RETURNING e.id, e.result, e.finished_at, e.pk",
    )
    .bind(before)
    .bind(terminal)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    let mut deleted = Vec::with_capacity(rows.len());
    for row in &rows {
        let result: Option<String> = get(row, "result")?;
        let blobs = match result.as_deref() {
            Some(r) => decode_result(r)?.blob_keys(),
            None => Vec::new(),
        };
        let order: (Option<Millis>, i64) = (get(row, "finished_at")?, get(row, "pk")?);
        deleted.push((
            order,
            Deleted {
                id: get(row, "id")?,
                blobs,
            },
        ));
    }
    deleted.sort_by_key(|d| d.0);
    Ok(deleted.into_iter().map(|(_, d)| d).collect())
}

pub(crate) async fn export(
    store: &PgStore,
    after: Option<&str>,
    limit: u32,
) -> Result<Page<EvaluationDump>> {
    let after = after.map(decode_seq).transpose()?.unwrap_or(0);
    let limit = limit.max(1);
    // One snapshot: the page and its events agree.
    let mut tx = store
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db)?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        ", e.files, e.stdin FROM evaluations e WHERE e.pk > $1 ORDER BY e.pk LIMIT $2"
    ))
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > take;
    let page = &rows[..rows.len().min(take)];
    let ids: Vec<String> = page
        .iter()
        .map(|r| get::<String>(r, "id"))
        .collect::<Result<_>>()?;
    let mut events: HashMap<String, Vec<Event>> = HashMap::new();
    for row in sqlx::query(
        "SELECT evaluation_id, seq, kind, data, at FROM events \
         WHERE evaluation_id = ANY($1) ORDER BY evaluation_id, seq",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    {
        let e = event_from_row(&row)?;
        events.entry(e.evaluation_id.clone()).or_default().push(e);
    }
    tx.rollback().await.map_err(db)?;
    let mut items = Vec::with_capacity(page.len());
    let mut last_pk = after;
    for row in page {
        let (cur, evaluation) = evaluation_from_row(row)?;
        last_pk = cur.pk;
        items.push(EvaluationDump {
            input: input_from_row(row)?,
            events: events.remove(&evaluation.id).unwrap_or_default(),
            evaluation,
            not_before: cur.lifecycle.not_before,
            lease_token: cur.lifecycle.lease_token,
            lease_expires_at: cur.lifecycle.lease_expires_at,
        });
    }
    Ok(Page {
        items,
        next_cursor: more.then(|| encode_seq(last_pk)),
    })
}

pub(crate) async fn import(store: &PgStore, dumps: Vec<EvaluationDump>) -> Result<()> {
    if dumps.is_empty() {
        return Ok(());
    }
    let lifecycles: Vec<Lifecycle> = dumps
        .iter()
        .map(|d| {
            let e = &d.evaluation;
            Lifecycle {
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
            }
        })
        .collect();
    let rows: Vec<NewRow<'_>> = dumps
        .iter()
        .zip(&lifecycles)
        .map(|(d, lifecycle)| NewRow {
            evaluation: &d.evaluation,
            lifecycle,
            input: &d.input,
            next_seq: d.events.iter().map(|v| v.seq).max().unwrap_or(0) + 1,
        })
        .collect();
    let events: Vec<EventRow<'_>> = dumps
        .iter()
        .flat_map(|d| {
            d.events.iter().map(|v| EventRow {
                evaluation_id: &d.evaluation.id,
                seq: v.seq,
                payload: &v.payload,
                at: v.at,
            })
        })
        .collect();
    let mut tx = store.begin().await?;
    // All or nothing: an id already here fails the statement, and the transaction with it.
    bulk::insert(&mut tx, &rows, &events)
        .await
        .map_err(|e| match db(e) {
            StoreError::Backend(m) => StoreError::Backend(format!("importing evaluations: {m}")),
            other => other,
        })?;
    tx.commit().await.map_err(db)
}
