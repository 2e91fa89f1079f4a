//! Claiming: [`FairPick`] decides (fair share, then priority, then age, under running caps)
//! and `Lifecycle::claim` leases, as in every backend; this module makes the decision exact
//! while any number of servers claim at once.
//!
//! The decision is global: which tenant comes first depends on how many every tenant runs.
//! Concurrent claimers would all choose the same job, and a lock per tenant only makes them
//! chase each other (each finds, once it holds a tenant's lock, that another tenant now comes
//! first: measured, half the claims of four claimers started over, some a dozen times). Claims
//! therefore take turns on one transaction-scoped advisory lock, like SQLite's single writer
//! but for claims only (submissions, heartbeats, output and finishes never wait for it), and
//! each claim decides on an exact, fresh view:
//!
//! 1. **Lock**, in the round trip of `BEGIN` (a statement without parameters).
//! 2. **Plan** (one statement, its snapshot taken under the lock, so it holds every claim
//!    before): the tenants with queued work (a skip scan of the `queue` table's tenant index:
//!    one seek per tenant), how many evaluations each runs (the partial index of running
//!    evaluations), the best claimable job of the tenants that run the fewest (one seek each;
//!    `FairPick` asks for others only when those cannot win) with its lifecycle, and the time.
//! 3. **Decide**: `FairPick` names the job; `Lifecycle::claim` decides its lease.
//! 4. **Write** (one statement): the job's row is locked `FOR NO KEY UPDATE SKIP LOCKED` if it
//!    is still at the revision the plan read (a cancellation that got there first wins, and is
//!    never waited for), and the claim is written as `transition::persist` writes any change
//!    (out of `queue`, the `running` event, the wake-up). If the job moved on, the claim plans
//!    again.
//!
//! The transaction commits without waiting for the disk (a lost claim is harmless, see
//! `connection::begin_async_commit`), so the lock is held for two round trips and a commit,
//! never an fsync. A claim is four round trips; one on an empty queue, three.

use crate::connection::{PgStore, begin_async_commit, db_now};
use crate::error::db;
use crate::rows::{
    Current, current_from_row, evaluation_cols, evaluation_from_row, get, input_from_row,
};
use crate::transition::{bind_persist, persist_effects, persist_set};
use assay_store::claim::{FairPick, QueueHead};
use assay_store::{Claim, ClaimPolicy, Millis, Result, StoreError, after};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::time::Duration;

/// Plans a claim may make before it reports contention (each one after the first was undone
/// by a transition of the chosen job that committed in between: a cancellation, say).
const MAX_ROUNDS: usize = 16;

/// `BEGIN` (committing without waiting for the disk, see `connection::begin_async_commit`)
/// and the claims' transaction-scoped advisory lock (keys "as" "cl" and 0), in one round trip.
const BEGIN_AND_LOCK: &str = concat!(
    begin_async_commit!(),
    "; SELECT pg_advisory_xact_lock(1634952044, 0)"
);

/// A head's columns: its queue entry and its lifecycle (`current_from_row`), from `queue h`
/// and `evaluations e`.
macro_rules! head_cols {
    () => {
        "h.pk, h.priority, h.created_at, e.id, e.revision, e.status, e.attempts, \
         e.max_attempts, e.not_before, e.lease_token, e.lease_expires_at, e.worker_id, \
         e.started_at, e.finished_at, e.result, e.error, e.cancel_requested"
    };
}

/// The plan: tenants with queued work, their running counts, the heads of those that run the
/// fewest (`fetched`), and the time (`clk`: one value for the whole statement), given as SQL
/// (the caller's time as `$1`, or the database's clock).
macro_rules! plan {
    ($now:expr) => {
        concat!(
            "WITH RECURSIVE q (tenant) AS ( \
               (SELECT tenant FROM queue ORDER BY tenant LIMIT 1) \
               UNION ALL \
               SELECT (SELECT tenant FROM queue WHERE tenant > q.tenant ORDER BY tenant LIMIT 1) \
               FROM q WHERE q.tenant IS NOT NULL), \
             clk AS (SELECT ",
            $now,
            " AS now), \
             r AS (SELECT tenant, count(*) AS n FROM evaluations WHERE status = 'running' \
                   GROUP BY tenant), \
             p AS (SELECT q.tenant, COALESCE(r.n, 0) AS running \
                   FROM q LEFT JOIN r ON r.tenant = q.tenant WHERE q.tenant IS NOT NULL), \
             low AS (SELECT min(running) AS n FROM p) \
             SELECT p.tenant, p.running, p.running = low.n AS fetched, clk.now, ",
            head_cols!(),
            " FROM p CROSS JOIN low CROSS JOIN clk \
             LEFT JOIN LATERAL (SELECT pk, priority, created_at FROM queue \
                 WHERE tenant = p.tenant AND p.running = low.n AND not_before <= clk.now \
                 ORDER BY priority DESC, created_at, pk LIMIT 1) h ON TRUE \
             LEFT JOIN evaluations e ON e.pk = h.pk"
        )
    };
}

/// [`plan!`] by the caller's clock (`$1`).
const PLAN_BY_CALLER: &str = plan!("$1::bigint");

/// [`plan!`] by the database's clock: without parameters, so that PostgreSQL plans the
/// statement once per connection (a parameter the planner can fold makes it plan every
/// execution anew).
const PLAN_BY_DATABASE: &str = plan!(db_now!());

/// A tenant's best job out of backoff, with its lifecycle (for tenants the plan did not look
/// at).
const HEAD: &str = concat!(
    "SELECT $1::text AS tenant, ",
    head_cols!(),
    " FROM (SELECT pk, priority, created_at FROM queue \
       WHERE tenant = $1 AND not_before <= $2 ORDER BY priority DESC, created_at, pk LIMIT 1) h \
     JOIN evaluations e ON e.pk = h.pk"
);

/// The claim's write: the job locked if it is still at the revision the plan read (skipping
/// it if another transaction holds it), then leased as `transition::persist` writes any change;
/// the row comes back whole, input included. No row: the job moved on.
const CLAIM: &str = concat!(
    "WITH job AS (SELECT pk FROM evaluations WHERE pk = $1 AND revision = $2 \
       FOR NO KEY UPDATE SKIP LOCKED), \
     upd AS (UPDATE evaluations e SET ",
    persist_set!(),
    " FROM job WHERE e.pk = job.pk \
       RETURNING ",
    evaluation_cols!(),
    ", e.files, e.stdin, e.next_seq - $15 AS first_seq), ",
    persist_effects!(),
    " SELECT upd.*, pg_notify('assay_events', upd.id) AS event_hint FROM upd"
);

/// A tenant's best claimable job: where it is in the queue, and its lifecycle.
type Head = Option<(QueueHead, Current)>;

/// What a claim knows: the plan, and the heads looked up since.
struct Knowledge {
    now: Millis,
    tenants: Vec<String>,
    running: HashMap<String, u32>,
    /// Heads looked up so far (`None`: nothing claimable).
    heads: HashMap<String, Head>,
}

/// Selected with `head_cols!` (no head: `pk` is NULL).
fn head_from_row(row: &PgRow) -> Result<Head> {
    let Some(key) = get::<Option<i64>>(row, "pk")? else {
        return Ok(None);
    };
    let head = QueueHead {
        key,
        priority: get(row, "priority")?,
        created_at: get(row, "created_at")?,
    };
    Ok(Some((head, current_from_row(row)?)))
}

/// Reads the plan; `None` when nothing is queued at all.
async fn plan(conn: &mut PgConnection, now: Option<Millis>) -> Result<Option<Knowledge>> {
    let rows = match now {
        Some(now) => {
            sqlx::query(PLAN_BY_CALLER)
                .bind(now)
                .fetch_all(&mut *conn)
                .await
        }
        None => sqlx::query(PLAN_BY_DATABASE).fetch_all(&mut *conn).await,
    }
    .map_err(db)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut k = Knowledge {
        now: get(first, "now")?,
        tenants: Vec::with_capacity(rows.len()),
        running: HashMap::with_capacity(rows.len()),
        heads: HashMap::new(),
    };
    for row in &rows {
        let tenant: String = get(row, "tenant")?;
        let running: i64 = get(row, "running")?;
        k.running
            .insert(tenant.clone(), u32::try_from(running).unwrap_or(u32::MAX));
        if get::<bool>(row, "fetched")? {
            k.heads.insert(tenant.clone(), head_from_row(row)?);
        }
        k.tenants.push(tenant);
    }
    Ok(Some(k))
}

/// The job [`FairPick`] chooses with what `k` knows (heads it lacks are looked up and kept).
async fn decide(
    conn: &mut PgConnection,
    k: &mut Knowledge,
    policy: &ClaimPolicy,
) -> Result<Option<Current>> {
    let mut pick = FairPick::new(&k.running, k.tenants.iter().cloned(), policy);
    let mut offered: HashMap<i64, Current> = HashMap::new();
    while let Some(tenant) = pick.next_tenant() {
        if !k.heads.contains_key(&tenant) {
            let row = sqlx::query(HEAD)
                .bind(&tenant)
                .bind(k.now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            let head = match row {
                Some(row) => head_from_row(&row)?,
                None => None,
            };
            k.heads.insert(tenant.clone(), head);
        }
        let head = k.heads.get(&tenant).and_then(Option::as_ref);
        if let Some((h, cur)) = head {
            offered.insert(h.key, cur.clone());
        }
        pick.offer(head.map(|(h, _)| *h));
    }
    Ok(pick.winner().and_then(|key| offered.remove(&key)))
}

pub(crate) async fn claim(
    store: &PgStore,
    worker_id: &str,
    lease: Duration,
    policy: &ClaimPolicy,
    now: Millis,
) -> Result<Option<Claim>> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    // 1. The claims' lock (released when the transaction ends, however it ends).
    let mut tx = conn.begin_with(BEGIN_AND_LOCK).await.map_err(db)?;
    for _ in 0..MAX_ROUNDS {
        // 2. Plan, 3. decide.
        let Some(mut k) = plan(&mut tx, store.now_arg(now)).await? else {
            // Nothing queued (the common answer of an idle queue).
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        };
        let Some(cur) = decide(&mut tx, &mut k, policy).await? else {
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        };
        let token = uuid::Uuid::new_v4().to_string();
        let lease_expires_at = after(k.now, lease);
        // Queued and out of backoff by the plan's snapshot, taken under the lock: a refusal is
        // a bug, not a race.
        let change = cur
            .lifecycle
            .claim(&cur.id, worker_id, &token, lease_expires_at, k.now)
            .map_err(|e| StoreError::Backend(format!("claim: the planned evaluation: {e}")))?;
        // 4. Write, if the job is still what the plan read.
        let row = bind_persist(sqlx::query(CLAIM), &cur, &change, k.now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(row) = row {
            let (_, evaluation) = evaluation_from_row(&row)?;
            let input = input_from_row(&row)?;
            tx.commit().await.map_err(db)?;
            return Ok(Some(Claim {
                attempt: change.next.attempts,
                evaluation,
                input,
                token,
                lease_expires_at,
            }));
        }
    }
    tx.rollback().await.map_err(db)?;
    Err(StoreError::Unavailable(
        "claim: every job chosen changed before it could be leased".into(),
    ))
}
