//! Writing a transition: the one place where an evaluation's lifecycle, its queue entry, its
//! events and the wake-ups change together.
//!
//! Every transition is: load the lifecycle, ask `assay_store::lifecycle` what happens, and
//! [`persist`] the `Change`. No lock is held while the store decides: the write back is
//! conditional on the row's `revision` being the one loaded (every write of the queue state,
//! heartbeats included, bumps it), so a transition that raced another one writes nothing and
//! starts over from the new state ([`apply`]). Persisting is one statement, committed on its
//! own, so a transition costs two round trips whatever it touches:
//!
//! - the whole lifecycle, written back, with `revision` bumped and `next_seq` moved past the new
//!   events (gapless: seqs are reserved by the same UPDATE);
//! - the events, numbered from the old `next_seq`;
//! - the `queue` row: inserted when the evaluation becomes queued (or its backoff changes),
//!   deleted when it stops being queued: the queue holds exactly the queued evaluations;
//! - `pg_notify('assay_events', id)` and, when it became queued, `pg_notify('assay_queue')`:
//!   hints to the listeners of every server, sent when the statement's transaction commits.
//!
//! A claim writes with the same fragments ([`persist_set`], [`persist_effects`]) inside its own
//! transaction (see `claim`).

use crate::connection::{PgStore, db_now};
use crate::error::db;
use crate::rows::{
    Current, current_from_row, evaluation_cols, evaluation_from_row, get, lifecycle_cols,
};
use assay_domain::EvaluationStatus;
use assay_store::lifecycle::Change;
use assay_store::record::encode_result;
use assay_store::{Evaluation, Millis, Result, StoreError};
use sqlx::PgConnection;

/// Attempts of a transition that keeps losing races (each lost race is another write that
/// succeeded: the evaluation moved on).
const RACES: usize = 16;

/// The whole evaluation `id` (its lifecycle at one revision) and the transition's time (`now`,
/// or the database's clock: see `PgStore::now_arg`); `NotFound` if there is none.
pub(crate) async fn load(
    conn: &mut PgConnection,
    id: &str,
    now: Option<Millis>,
) -> Result<(Current, Evaluation, Millis)> {
    let row = sqlx::query(concat!(
        "SELECT ",
        evaluation_cols!(),
        ", COALESCE($2::bigint, ",
        db_now!(),
        ") AS now FROM evaluations e WHERE e.id = $1"
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    let (cur, e) = evaluation_from_row(&row)?;
    Ok((cur, e, get(&row, "now")?))
}

/// Loads `id`, asks `decide` (`None`: nothing changes) and persists, until the write lands on
/// the revision it was decided on. Returns the evaluation before and the change made.
pub(crate) async fn apply(
    store: &PgStore,
    id: &str,
    now: Millis,
    decide: impl Fn(&Current, Millis) -> Result<Option<Change>>,
) -> Result<(Evaluation, Option<Change>)> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    for _ in 0..RACES {
        let (cur, e, now) = load(&mut conn, id, store.now_arg(now)).await?;
        let Some(change) = decide(&cur, now)? else {
            return Ok((e, None));
        };
        if persist(&mut conn, &cur, &change, now).await? {
            return Ok((e, Some(change)));
        }
    }
    Err(StoreError::Unavailable(format!(
        "evaluation {id} changed under every attempt to write it"
    )))
}

/// Loads the lifecycles of running evaluations whose lease expired by `now` (candidates for
/// the reaper; each is written back only if still at the revision read).
pub(crate) async fn expired(conn: &mut PgConnection, now: Millis) -> Result<Vec<Current>> {
    // The partial index of running evaluations finds them (few); the expiry is read from the
    // rows.
    sqlx::query(concat!(
        "SELECT ",
        lifecycle_cols!(),
        " FROM evaluations e WHERE e.status = 'running' AND e.lease_expires_at <= $1"
    ))
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?
    .iter()
    .map(current_from_row)
    .collect()
}

/// The lifecycle's columns written back (parameters `$3`–`$15`; `$15`: events appended).
macro_rules! persist_set {
    () => {
        "status = $3, attempts = $4, max_attempts = $5, not_before = $6, lease_token = $7, \
         lease_expires_at = $8, worker_id = $9, started_at = $10, finished_at = $11, \
         result = $12, error = $13, cancel_requested = $14, next_seq = next_seq + $15, \
         revision = revision + 1"
    };
}

/// What follows the write of the row `upd` (which returns `pk`, `id`, `tenant`, `priority`,
/// `created_at`, `not_before` and `first_seq`): its events (`$16` kinds, `$17` data, `$18`
/// time), its queue entry (`$19`: now queued, `$20`: no longer queued).
macro_rules! persist_effects {
    () => {
        "ev AS ( \
           INSERT INTO events (evaluation_id, seq, kind, data, at) \
           SELECT upd.id, upd.first_seq + o.n - 1, o.kind, o.data, $18 \
           FROM upd, unnest($16::text[], $17::text[]) WITH ORDINALITY AS o (kind, data, n)), \
         enqueue AS ( \
           INSERT INTO queue (pk, tenant, priority, created_at, not_before) \
           SELECT pk, tenant, priority, created_at, not_before FROM upd WHERE $19 \
           ON CONFLICT (pk) DO UPDATE SET not_before = excluded.not_before), \
         dequeue AS (DELETE FROM queue WHERE $20 AND pk IN (SELECT pk FROM upd))"
    };
}

pub(crate) use {persist_effects, persist_set};

const PERSIST: &str = concat!(
    "WITH upd AS (UPDATE evaluations SET ",
    persist_set!(),
    " WHERE pk = $1 AND revision = $2 \
      RETURNING pk, id, tenant, priority, created_at, not_before, next_seq - $15 AS first_seq), ",
    persist_effects!(),
    " SELECT upd.first_seq, pg_notify('assay_events', upd.id) AS event_hint, \
        CASE WHEN $19 THEN pg_notify('assay_queue', '') END AS queue_hint \
      FROM upd"
);

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds `$1`–`$20` of a statement made of [`persist_set`] and [`persist_effects`]: `change`
/// of `cur`, at `now`.
pub(crate) fn bind_persist<'q>(
    q: Query<'q>,
    cur: &Current,
    change: &Change,
    now: Millis,
) -> Query<'q> {
    let before = cur.lifecycle.status;
    let l = &change.next;
    let queued = l.status == EvaluationStatus::Queued;
    let n = i64::try_from(change.events.len()).unwrap_or(i64::MAX);
    let kinds: Vec<String> = change
        .events
        .iter()
        .map(|e| e.kind().as_str().to_string())
        .collect();
    let data: Vec<String> = change.events.iter().map(|e| e.encode()).collect();
    q.bind(cur.pk)
        .bind(cur.revision)
        .bind(l.status.as_str())
        .bind(i64::from(l.attempts))
        .bind(i64::from(l.max_attempts))
        .bind(l.not_before)
        .bind(l.lease_token.clone())
        .bind(l.lease_expires_at)
        .bind(l.worker_id.clone())
        .bind(l.started_at)
        .bind(l.finished_at)
        .bind(l.result.as_ref().map(encode_result))
        .bind(l.error.clone())
        .bind(l.cancel_requested)
        .bind(n)
        .bind(kinds)
        .bind(data)
        .bind(now)
        .bind(queued)
        .bind(before == EvaluationStatus::Queued && !queued)
}

/// Writes `change` of the evaluation `cur` (see the module's documentation), at `now`, if the
/// row is still at `cur`'s revision. `false`: it is not (nothing was written).
pub(crate) async fn persist(
    conn: &mut PgConnection,
    cur: &Current,
    change: &Change,
    now: Millis,
) -> Result<bool> {
    let row = bind_persist(sqlx::query(PERSIST), cur, change, now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// Why a fenced single-statement write matched no row.
pub(crate) async fn fence_error(conn: &mut PgConnection, id: &str) -> StoreError {
    match sqlx::query("SELECT 1 FROM evaluations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(Some(_)) => StoreError::LeaseLost(id.to_string()),
        Ok(None) => StoreError::NotFound(id.to_string()),
        Err(e) => db(e),
    }
}
