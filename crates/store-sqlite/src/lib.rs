//! SQLite backend of `assay-store`: the embedded default.
//!
//! One database file in WAL mode. All writes go through a pool of exactly one connection and
//! run in `BEGIN IMMEDIATE` transactions (SQLite has one writer at a time; taking the write lock
//! up front means a transaction never fails half-way on a lock upgrade, and other processes on
//! the same file wait on `busy_timeout`). Reads use a separate pool of several connections,
//! which WAL lets run next to the writer.
//!
//! The queue lives in the evaluations table itself (status, `not_before`, lease token and
//! expiry), so enqueueing is the insert and cannot disagree with it. Every write of a running
//! job is fenced with `WHERE id = ? AND lease_token = ?`. Event seqs come from the row's
//! `next_seq`, bumped in the same write transaction as the event insert: gapless and strictly
//! increasing per evaluation.
#![forbid(unsafe_code)]

mod audit;

use assay_domain::{
    AfterAttempt, EvaluationStatus, Language, Limits, OutputStream, ProgramFile, RetryPolicy,
    RunResult, RunStatus,
};
use assay_store::{
    ApiKey, AuditEntry, AuditFilter, AuditVerification, Claim, ClaimPolicy, Evaluation, Event,
    EventKind, LeaseState, ListFilter, Millis, NewAuditEntry, NewEvaluation, Page, QueueStats,
    Result, Role, Store, StoreError, SubmitOutcome, WorkerInfo,
};
use serde_json::json;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `use_key` records a use at most this often per key (keeps authentication off the writer).
const KEY_USE_GRANULARITY_MS: Millis = 60_000;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection: every write.
    writer: SqlitePool,
    /// Reads (the same pool as `writer` for an in-memory database).
    reader: SqlitePool,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let readers = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(4)
            .clamp(2, 16);
        SqliteStore::open_with(path, readers).await
    }

    /// Like `open`, with `readers` connections for reads.
    pub async fn open_with(path: impl AsRef<Path>, readers: u32) -> Result<SqliteStore> {
        if let Some(dir) = path.as_ref().parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("temp_store", "memory")
            .statement_cache_capacity(256);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        MIGRATOR.run(&writer).await.map_err(backend)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(Duration::from_secs(600))
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Ok(SqliteStore { writer, reader })
    }

    /// A private in-memory database on a single connection (tests, throwaway runs).
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(SqliteStore {
            writer: pool.clone(),
            reader: pool,
        })
    }

    /// Closes both pools (waits for connections in use to come back).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

macro_rules! eval_cols {
    () => {
        "pk, id, tenant, status, language, entrypoint, files, stdin, limits, priority, labels, \
         attempts, max_attempts, created_at, started_at, finished_at, result, error, worker_id, \
         cancel_requested, idempotency_key"
    };
}

/// The same columns of `evaluations e` (for joins).
macro_rules! eval_cols_e {
    () => {
        "e.pk, e.id, e.tenant, e.status, e.language, e.entrypoint, e.files, e.stdin, e.limits, \
         e.priority, e.labels, e.attempts, e.max_attempts, e.created_at, e.started_at, \
         e.finished_at, e.result, e.error, e.worker_id, e.cancel_requested, e.idempotency_key"
    };
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("corrupt {what}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(backend)
}

fn parse_language(s: &str) -> Result<Language> {
    match s {
        "python" => Ok(Language::Python),
        other => Err(StoreError::Backend(format!("unknown language {other:?}"))),
    }
}

fn parse_status(s: &str) -> Result<EvaluationStatus> {
    EvaluationStatus::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown status {s:?}")))
}

fn u32_col(row: &SqliteRow, col: &str) -> Result<u32> {
    let v: i64 = row.try_get(col).map_err(backend)?;
    u32::try_from(v).map_err(|_| StoreError::Backend(format!("{col} out of range: {v}")))
}

/// The row's internal key and the evaluation.
fn evaluation_from_row(row: &SqliteRow) -> Result<(i64, Evaluation)> {
    let get_s = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(backend) };
    let get_os = |c: &str| -> Result<Option<String>> {
        row.try_get::<Option<String>, _>(c).map_err(backend)
    };
    let get_oi =
        |c: &str| -> Result<Option<i64>> { row.try_get::<Option<i64>, _>(c).map_err(backend) };
    let pk: i64 = row.try_get("pk").map_err(backend)?;
    let files: Vec<ProgramFile> = parse_json(&get_s("files")?, "files")?;
    let limits: Limits = parse_json(&get_s("limits")?, "limits")?;
    let labels: BTreeMap<String, String> = parse_json(&get_s("labels")?, "labels")?;
    let result: Option<RunResult> = match get_os("result")? {
        Some(s) => Some(parse_json(&s, "result")?),
        None => None,
    };
    let priority: i64 = row.try_get("priority").map_err(backend)?;
    Ok((
        pk,
        Evaluation {
            id: get_s("id")?,
            tenant: get_s("tenant")?,
            status: parse_status(&get_s("status")?)?,
            language: parse_language(&get_s("language")?)?,
            entrypoint: get_s("entrypoint")?,
            files,
            stdin: get_s("stdin")?,
            limits,
            priority: i32::try_from(priority).map_err(backend)?,
            labels,
            attempts: u32_col(row, "attempts")?,
            max_attempts: u32_col(row, "max_attempts")?,
            created_at: row.try_get("created_at").map_err(backend)?,
            started_at: get_oi("started_at")?,
            finished_at: get_oi("finished_at")?,
            result,
            error: get_os("error")?,
            worker_id: get_os("worker_id")?,
            cancel_requested: row.try_get("cancel_requested").map_err(backend)?,
            idempotency_key: get_os("idempotency_key")?,
        },
    ))
}

macro_rules! key_cols {
    () => {
        "id, name, tenant, role, hash, created_at, expires_at, revoked_at, last_used_at"
    };
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKey> {
    let role: String = row.try_get("role").map_err(backend)?;
    Ok(ApiKey {
        id: row.try_get("id").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        tenant: row.try_get("tenant").map_err(backend)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Backend(format!("unknown role {role:?}")))?,
        hash: row.try_get("hash").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        revoked_at: row.try_get("revoked_at").map_err(backend)?,
        last_used_at: row.try_get("last_used_at").map_err(backend)?,
    })
}

fn worker_from_row(row: &SqliteRow) -> Result<WorkerInfo> {
    Ok(WorkerInfo {
        id: row.try_get("id").map_err(backend)?,
        hostname: row.try_get("hostname").map_err(backend)?,
        runtime: row.try_get("runtime").map_err(backend)?,
        slots: u32_col(row, "slots")?,
        running: u32_col(row, "running")?,
        started_at: row.try_get("started_at").map_err(backend)?,
        last_seen: row.try_get("last_seen").map_err(backend)?,
    })
}

/// What the state machine needs to know about one evaluation, read inside a write transaction.
struct Current {
    pk: i64,
    id: String,
    status: EvaluationStatus,
    attempts: u32,
    max_attempts: u32,
    cancel_requested: bool,
    lease_token: Option<String>,
    worker_id: Option<String>,
}

fn current_from_row(row: &SqliteRow) -> Result<Current> {
    Ok(Current {
        pk: row.try_get("pk").map_err(backend)?,
        id: row.try_get("id").map_err(backend)?,
        status: parse_status(&row.try_get::<String, _>("status").map_err(backend)?)?,
        attempts: u32_col(row, "attempts")?,
        max_attempts: u32_col(row, "max_attempts")?,
        cancel_requested: row.try_get("cancel_requested").map_err(backend)?,
        lease_token: row.try_get("lease_token").map_err(backend)?,
        worker_id: row.try_get("worker_id").map_err(backend)?,
    })
}

impl Current {
    /// The lease `token` is the current one of a running attempt.
    fn holds(&self, token: &str) -> bool {
        self.status == EvaluationStatus::Running && self.lease_token.as_deref() == Some(token)
    }
}

macro_rules! current_cols {
    () => {
        "pk, id, status, attempts, max_attempts, cancel_requested, lease_token, worker_id"
    };
}

async fn load_current(conn: &mut SqliteConnection, id: &str) -> Result<Option<Current>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        current_cols!(),
        " FROM evaluations WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    row.as_ref().map(current_from_row).transpose()
}

/// Loads the evaluation for a fenced operation: `NotFound` or `LeaseLost` unless `token` is the
/// current lease.
async fn load_fenced(conn: &mut SqliteConnection, id: &str, token: &str) -> Result<Current> {
    match load_current(conn, id).await? {
        None => Err(StoreError::NotFound(id.to_string())),
        Some(cur) if cur.holds(token) => Ok(cur),
        Some(_) => Err(StoreError::LeaseLost(id.to_string())),
    }
}

async fn load_evaluation(conn: &mut SqliteConnection, pk: i64) -> Result<Evaluation> {
    let row = sqlx::query(concat!(
        "SELECT ",
        eval_cols!(),
        " FROM evaluations WHERE pk = ?"
    ))
    .bind(pk)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(evaluation_from_row(&row)?.1)
}

/// The reason to report when a fenced write matched no row.
async fn fence_error(conn: &mut SqliteConnection, id: &str) -> StoreError {
    match sqlx::query("SELECT 1 FROM evaluations WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(Some(_)) => StoreError::LeaseLost(id.to_string()),
        Ok(None) => StoreError::NotFound(id.to_string()),
        Err(e) => backend(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Events and transitions (all inside a write transaction)

async fn insert_event(
    conn: &mut SqliteConnection,
    id: &str,
    seq: i64,
    kind: EventKind,
    data: &str,
    at: Millis,
) -> Result<()> {
    sqlx::query("INSERT INTO events (evaluation_id, seq, kind, data, at) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(seq)
        .bind(kind.as_str())
        .bind(data)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

fn status_data(status: EvaluationStatus, attempt: u32, error: Option<&str>) -> String {
    let mut v = json!({ "status": status.as_str(), "attempt": attempt });
    if let Some(e) = error {
        v["error"] = json!(e);
    }
    v.to_string()
}

/// Ends the evaluation with a terminal `status`: the row, then `status` and `result` events
/// (their two seqs are reserved by the same UPDATE).
async fn to_terminal(
    conn: &mut SqliteConnection,
    cur: &Current,
    status: EvaluationStatus,
    result: Option<&RunResult>,
    error: Option<&str>,
    now: Millis,
) -> Result<()> {
    let result_json = result.map(to_json).transpose()?;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE evaluations SET status = ?, result = ?, error = ?, finished_at = ?, \
         lease_token = NULL, lease_expires_at = NULL, next_seq = next_seq + 2 \
         WHERE pk = ? RETURNING next_seq - 2",
    )
    .bind(status.as_str())
    .bind(result_json)
    .bind(error)
    .bind(now)
    .bind(cur.pk)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let final_state = json!({
        "status": status.as_str(),
        "result": result,
        "error": error,
        "attempts": cur.attempts,
    })
    .to_string();
    sqlx::query(
        "INSERT INTO events (evaluation_id, seq, kind, data, at) \
         VALUES (?, ?, 'status', ?, ?), (?, ?, 'result', ?, ?)",
    )
    .bind(&cur.id)
    .bind(seq)
    .bind(status_data(status, cur.attempts, error))
    .bind(now)
    .bind(&cur.id)
    .bind(seq + 1)
    .bind(final_state)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Back to the queue, claimable from `not_before`. `error`, when given, replaces the last error.
async fn to_queued(
    conn: &mut SqliteConnection,
    cur: &Current,
    attempts: u32,
    not_before: Millis,
    error: Option<&str>,
    now: Millis,
) -> Result<()> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE evaluations SET status = 'queued', attempts = ?, not_before = ?, \
         error = COALESCE(?, error), lease_token = NULL, lease_expires_at = NULL, \
         next_seq = next_seq + 1 WHERE pk = ? RETURNING next_seq - 1",
    )
    .bind(i64::from(attempts))
    .bind(not_before)
    .bind(error)
    .bind(cur.pk)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let data = status_data(EvaluationStatus::Queued, attempts, error);
    insert_event(conn, &cur.id, seq, EventKind::Status, &data, now).await
}

/// A platform failure of the current attempt (errored run, lost lease): retry with backoff, or
/// dead-letter after the evaluation's `max_attempts`; `cancelled` if a cancel was requested.
/// Returns the new status.
async fn platform_failure(
    conn: &mut SqliteConnection,
    cur: &Current,
    result: Option<&RunResult>,
    reason: &str,
    policy: &RetryPolicy,
    now: Millis,
) -> Result<EvaluationStatus> {
    if cur.cancel_requested {
        let st = EvaluationStatus::Cancelled;
        to_terminal(conn, cur, st, result, Some(reason), now).await?;
        return Ok(st);
    }
    let policy = RetryPolicy {
        max_attempts: cur.max_attempts,
        ..*policy
    };
    match policy.after_platform_failure(cur.attempts, reason) {
        AfterAttempt::Retry { after } => {
            let not_before = now.saturating_add(after.as_millis() as i64);
            to_queued(conn, cur, cur.attempts, not_before, Some(reason), now).await?;
            Ok(EvaluationStatus::Queued)
        }
        AfterAttempt::Dead { reason } => {
            let st = EvaluationStatus::Dead;
            to_terminal(conn, cur, st, None, Some(&reason), now).await?;
            Ok(st)
        }
        AfterAttempt::Final(st) => {
            // Not produced by after_platform_failure; handled for completeness.
            to_terminal(conn, cur, st, result, Some(reason), now).await?;
            Ok(st)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Submission

type Query = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// Row counts of the multi-row INSERT statements: a batch goes in as few statements as these
/// allow (each size is one cached prepared statement per table).
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// `INSERT … VALUES (row), (row), …` for each size of `CHUNKS`.
struct BulkInsert {
    head: &'static str,
    row: &'static str,
    sql: [OnceLock<Arc<str>>; CHUNKS.len()],
}

impl BulkInsert {
    const fn new(head: &'static str, row: &'static str) -> BulkInsert {
        BulkInsert {
            head,
            row,
            sql: [const { OnceLock::new() }; CHUNKS.len()],
        }
    }

    fn sql(&self, chunk: usize) -> Arc<str> {
        self.sql[chunk]
            .get_or_init(|| {
                format!("{} {}", self.head, vec![self.row; CHUNKS[chunk]].join(", ")).into()
            })
            .clone()
    }

    /// Inserts every item, binding each with `bind`.
    async fn run<T>(
        &self,
        conn: &mut SqliteConnection,
        mut items: &[T],
        bind: fn(Query, &T) -> Query,
    ) -> Result<()> {
        while !items.is_empty() {
            let chunk = CHUNKS
                .iter()
                .position(|&n| n <= items.len())
                .unwrap_or(CHUNKS.len() - 1);
            let (now, rest) = items.split_at(CHUNKS[chunk]);
            let mut q = sqlx::query(AssertSqlSafe(self.sql(chunk)));
            for item in now {
                q = bind(q, item);
            }
            q.execute(&mut *conn).await.map_err(backend)?;
            items = rest;
        }
        Ok(())
    }
}

static INSERT_EVALUATIONS: BulkInsert = BulkInsert::new(
    "INSERT INTO evaluations (pk, id, tenant, status, language, entrypoint, files, stdin, \
     limits, priority, labels, attempts, max_attempts, created_at, idempotency_key, not_before, \
     next_seq) VALUES",
    // next_seq = 2: the queued event is seq 1.
    "(?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 0, 2)",
);

static INSERT_QUEUED_EVENTS: BulkInsert = BulkInsert::new(
    "INSERT INTO events (evaluation_id, seq, kind, data, at) VALUES",
    "(?, 1, 'status', ?, ?)",
);

static INSERT_LABELS: BulkInsert = BulkInsert::new(
    "INSERT INTO evaluation_labels (key, value, created_at, pk) VALUES",
    "(?, ?, ?, ?)",
);

/// One evaluation to insert, serialised.
struct NewRow {
    pk: i64,
    files: String,
    limits: String,
    labels: String,
    evaluation: Evaluation,
}

fn bind_evaluation(q: Query, r: &NewRow) -> Query {
    let e = &r.evaluation;
    q.bind(r.pk)
        .bind(&e.id)
        .bind(&e.tenant)
        .bind(e.language.as_str())
        .bind(&e.entrypoint)
        .bind(&r.files)
        .bind(&e.stdin)
        .bind(&r.limits)
        .bind(e.priority)
        .bind(&r.labels)
        .bind(i64::from(e.max_attempts))
        .bind(e.created_at)
        .bind(&e.idempotency_key)
}

fn bind_queued_event(q: Query, r: &NewRow) -> Query {
    q.bind(&r.evaluation.id)
        .bind(status_data(EvaluationStatus::Queued, 0, None))
        .bind(r.evaluation.created_at)
}

fn bind_label(q: Query, l: &(String, String, Millis, i64)) -> Query {
    q.bind(&l.0).bind(&l.1).bind(l.2).bind(l.3)
}

/// Inserts the new evaluations (with their labels and first event) inside the caller's write
/// transaction. Idempotency keys already used by the tenant, or earlier in `items`, give
/// `Existing`.
async fn insert_evaluations(
    conn: &mut SqliteConnection,
    items: Vec<NewEvaluation>,
    now: Millis,
) -> Result<Vec<SubmitOutcome>> {
    // pks are assigned here rather than by SQLite so that multi-row inserts need no RETURNING;
    // safe because the caller holds the write lock.
    let mut next_pk: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pk), 0) + 1 FROM evaluations")
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
    enum Slot {
        New(usize),
        Existing(Box<Evaluation>),
    }
    let mut slots = Vec::with_capacity(items.len());
    let mut rows: Vec<NewRow> = Vec::with_capacity(items.len());
    let mut keys_in_batch: HashMap<(String, String), usize> = HashMap::new();
    for new in items {
        if let Some(key) = &new.idempotency_key {
            if let Some(&i) = keys_in_batch.get(&(new.tenant.clone(), key.clone())) {
                slots.push(Slot::Existing(Box::new(rows[i].evaluation.clone())));
                continue;
            }
            let row = sqlx::query(concat!(
                "SELECT ",
                eval_cols!(),
                " FROM evaluations WHERE tenant = ? AND idempotency_key = ?"
            ))
            .bind(&new.tenant)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
            if let Some(row) = row {
                slots.push(Slot::Existing(Box::new(evaluation_from_row(&row)?.1)));
                continue;
            }
            keys_in_batch.insert((new.tenant.clone(), key.clone()), rows.len());
        }
        let sub = new.submission;
        let evaluation = Evaluation {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: new.tenant,
            status: EvaluationStatus::Queued,
            language: sub.language,
            entrypoint: sub.program.entrypoint().to_string(),
            files: sub.program.files().to_vec(),
            stdin: sub.stdin,
            limits: sub.limits,
            priority: sub.priority,
            labels: sub.labels,
            attempts: 0,
            max_attempts: new.max_attempts,
            created_at: now,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            worker_id: None,
            cancel_requested: false,
            idempotency_key: new.idempotency_key,
        };
        slots.push(Slot::New(rows.len()));
        rows.push(NewRow {
            pk: next_pk,
            files: to_json(&evaluation.files)?,
            limits: to_json(&evaluation.limits)?,
            labels: to_json(&evaluation.labels)?,
            evaluation,
        });
        next_pk += 1;
    }
    let labels: Vec<(String, String, Millis, i64)> = rows
        .iter()
        .flat_map(|r| {
            r.evaluation
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone(), r.evaluation.created_at, r.pk))
        })
        .collect();
    INSERT_EVALUATIONS.run(conn, &rows, bind_evaluation).await?;
    INSERT_LABELS.run(conn, &labels, bind_label).await?;
    INSERT_QUEUED_EVENTS
        .run(conn, &rows, bind_queued_event)
        .await?;
    let mut rows: Vec<Option<Evaluation>> = rows.into_iter().map(|r| Some(r.evaluation)).collect();
    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Slot::New(i) => SubmitOutcome::Created(rows[i].take().expect("each row once")),
            Slot::Existing(e) => SubmitOutcome::Existing(*e),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Fair claiming

/// The queued job to claim next (its `pk`), under `policy`'s running caps: among tenants below
/// their cap with a claimable job, the tenant with the fewest running evaluations, then the
/// highest priority, then the oldest. Runs inside the claim's write transaction.
///
/// Cost: one scan of the running evaluations (few: at most the slots of all workers), one
/// index seek per tenant with queued work to find those tenants, then one seek per tenant
/// (in rising order of running count, stopping once no later tenant can win) for its best job.
async fn pick_claimable(
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
    .map_err(backend)?
    {
        let tenant: String = row.try_get("tenant").map_err(backend)?;
        let n: i64 = row.try_get("n").map_err(backend)?;
        running.insert(tenant, u32::try_from(n).unwrap_or(u32::MAX));
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
    .map_err(backend)?;
    let mut candidates: Vec<(u32, String)> = tenants
        .into_iter()
        .filter_map(|t| {
            let n = running.get(&t).copied().unwrap_or(0);
            let capped = policy.max_running(&t).is_some_and(|cap| n >= cap);
            (!capped).then_some((n, t))
        })
        .collect();
    candidates.sort();
    // (running, -priority, created_at, pk): the smallest wins.
    let mut best: Option<(u32, i64, Millis, i64)> = None;
    for (n, tenant) in candidates {
        if best.is_some_and(|b| b.0 < n) {
            break;
        }
        let row = sqlx::query(
            "SELECT pk, priority, created_at FROM evaluations INDEXED BY evaluations_queue_tenant \
             WHERE status = 'queued' AND tenant = ? AND not_before <= ? \
             ORDER BY priority DESC, created_at, pk LIMIT 1",
        )
        .bind(&tenant)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        let Some(row) = row else { continue };
        let priority: i64 = row.try_get("priority").map_err(backend)?;
        let key = (
            n,
            -priority,
            row.try_get::<Millis, _>("created_at").map_err(backend)?,
            row.try_get::<i64, _>("pk").map_err(backend)?,
        );
        if best.is_none_or(|b| key < b) {
            best = Some(key);
        }
    }
    Ok(best.map(|b| b.3))
}

// ---------------------------------------------------------------------------------------------
// Cursors: "<created_at>.<pk>" of the last item of a page.

fn encode_cursor(created_at: Millis, pk: i64) -> String {
    format!("{created_at}.{pk}")
}

fn decode_cursor(s: &str) -> Result<(Millis, i64)> {
    let (a, b) = s.split_once('.').ok_or(StoreError::InvalidCursor)?;
    let parse = |x: &str| -> Result<i64> {
        if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
            return Err(StoreError::InvalidCursor);
        }
        x.parse().map_err(|_| StoreError::InvalidCursor)
    };
    Ok((parse(a)?, parse(b)?))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn submit(&self, new: NewEvaluation, now: Millis) -> Result<SubmitOutcome> {
        let mut tx = self.write_tx().await?;
        let out = insert_evaluations(&mut tx, vec![new], now).await?;
        tx.commit().await.map_err(backend)?;
        out.into_iter()
            .next()
            .ok_or_else(|| StoreError::Backend("no outcome".into()))
    }

    async fn submit_batch(
        &self,
        items: Vec<NewEvaluation>,
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        // An error drops `tx`: everything is rolled back.
        let out = insert_evaluations(&mut tx, items, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<Evaluation>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            eval_cols!(),
            " FROM evaluations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref()
            .map(|r| evaluation_from_row(r).map(|(_, e)| e))
            .transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<Page<Evaluation>> {
        let cursor = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = filter.limit.max(1);
        // Only fixed fragments go into the SQL; every value is bound. With a label, the label
        // index drives the scan (it is ordered like the listing); otherwise the evaluations'.
        let (mut sql, created) = if filter.label.is_some() {
            (
                String::from(concat!(
                    "SELECT ",
                    eval_cols_e!(),
                    " FROM evaluation_labels l JOIN evaluations e ON e.pk = l.pk \
                     WHERE l.key = ? AND l.value = ?"
                )),
                "l",
            )
        } else {
            (
                String::from(concat!(
                    "SELECT ",
                    eval_cols_e!(),
                    " FROM evaluations e WHERE 1"
                )),
                "e",
            )
        };
        if filter.tenant.is_some() {
            sql.push_str(" AND e.tenant = ?");
        }
        if filter.status.is_some() {
            sql.push_str(" AND e.status = ?");
        }
        if filter.created_after.is_some() {
            sql.push_str(&format!(" AND {created}.created_at >= ?"));
        }
        if filter.created_before.is_some() {
            sql.push_str(&format!(" AND {created}.created_at < ?"));
        }
        if cursor.is_some() {
            sql.push_str(&format!(
                " AND ({created}.created_at, {created}.pk) < (?, ?)"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY {created}.created_at DESC, {created}.pk DESC LIMIT ?"
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some((k, v)) = &filter.label {
            q = q.bind(k.clone()).bind(v.clone());
        }
        if let Some(t) = &filter.tenant {
            q = q.bind(t.clone());
        }
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(a) = filter.created_after {
            q = q.bind(a);
        }
        if let Some(b) = filter.created_before {
            q = q.bind(b);
        }
        if let Some((c, pk)) = cursor {
            q = q.bind(c).bind(pk);
        }
        q = q.bind(i64::from(limit) + 1);
        let rows = q.fetch_all(&self.reader).await.map_err(backend)?;
        let mut items = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last = None;
        let more = rows.len() > limit as usize;
        for row in rows.iter().take(limit as usize) {
            let (pk, e) = evaluation_from_row(row)?;
            last = Some((e.created_at, pk));
            items.push(e);
        }
        let next_cursor = match (more, last) {
            (true, Some((c, pk))) => Some(encode_cursor(c, pk)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn cancel(&self, id: &str, now: Millis) -> Result<Evaluation> {
        let mut tx = self.write_tx().await?;
        let cur = load_current(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        match cur.status {
            EvaluationStatus::Queued => {
                to_terminal(&mut tx, &cur, EvaluationStatus::Cancelled, None, None, now).await?;
            }
            EvaluationStatus::Running if !cur.cancel_requested => {
                sqlx::query("UPDATE evaluations SET cancel_requested = 1 WHERE pk = ?")
                    .bind(cur.pk)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            _ => {}
        }
        let e = load_evaluation(&mut tx, cur.pk).await?;
        tx.commit().await.map_err(backend)?;
        Ok(e)
    }

    async fn claim(
        &self,
        worker_id: &str,
        lease: Duration,
        policy: &ClaimPolicy,
        now: Millis,
    ) -> Result<Option<Claim>> {
        let token = uuid::Uuid::new_v4().to_string();
        let expires = now.saturating_add(lease.as_millis() as i64);
        let mut tx = self.write_tx().await?;
        // The pick and the update share the write lock: no other claim can slip in between.
        let Some(pk) = pick_claimable(&mut tx, policy, now).await? else {
            return Ok(None);
        };
        let row = sqlx::query(concat!(
            "UPDATE evaluations SET status = 'running', attempts = attempts + 1, \
             lease_token = ?, lease_expires_at = ?, worker_id = ?, started_at = ?, \
             next_seq = next_seq + 1 \
             WHERE pk = ? AND status = 'queued' \
             RETURNING ",
            eval_cols!(),
            ", next_seq - 1 AS event_seq"
        ))
        .bind(&token)
        .bind(expires)
        .bind(worker_id)
        .bind(now)
        .bind(pk)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Err(StoreError::Backend(format!(
                "claim: queued row {pk} vanished inside the transaction"
            )));
        };
        let (_, evaluation) = evaluation_from_row(&row)?;
        let seq: i64 = row.try_get("event_seq").map_err(backend)?;
        let data = status_data(EvaluationStatus::Running, evaluation.attempts, None);
        insert_event(&mut tx, &evaluation.id, seq, EventKind::Status, &data, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(Claim {
            attempt: evaluation.attempts,
            evaluation,
            token,
            lease_expires_at: expires,
        }))
    }

    async fn count_queued(&self, tenant: Option<&str>) -> Result<u64> {
        // Both forms count entries of a partial index of the queue only (one tenant: a range).
        let n: i64 = match tenant {
            Some(t) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM evaluations INDEXED BY evaluations_queue_tenant \
                 WHERE status = 'queued' AND tenant = ?",
            )
            .bind(t)
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?,
            None => sqlx::query_scalar(
                "SELECT COUNT(*) FROM evaluations INDEXED BY evaluations_queue_tenant \
                 WHERE status = 'queued'",
            )
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?,
        };
        Ok(n.max(0) as u64)
    }

    async fn heartbeat(
        &self,
        id: &str,
        token: &str,
        lease: Duration,
        now: Millis,
    ) -> Result<LeaseState> {
        let expires = now.saturating_add(lease.as_millis() as i64);
        let mut conn = self.writer.acquire().await.map_err(backend)?;
        let rows = sqlx::query(
            "UPDATE evaluations SET lease_expires_at = ? \
             WHERE id = ? AND lease_token = ? AND status = 'running' RETURNING cancel_requested",
        )
        .bind(expires)
        .bind(id)
        .bind(token)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        match rows.first() {
            Some(row) => Ok(LeaseState {
                cancel_requested: row.try_get("cancel_requested").map_err(backend)?,
            }),
            None => Err(fence_error(&mut conn, id).await),
        }
    }

    async fn append_output(
        &self,
        id: &str,
        token: &str,
        stream: OutputStream,
        data: &str,
        now: Millis,
    ) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE evaluations SET next_seq = next_seq + 1 \
             WHERE id = ? AND lease_token = ? AND status = 'running' RETURNING next_seq - 1",
        )
        .bind(id)
        .bind(token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(seq) = seq else {
            return Err(fence_error(&mut tx, id).await);
        };
        insert_event(&mut tx, id, seq, EventKind::from(stream), data, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(seq)
    }

    async fn finish(
        &self,
        id: &str,
        token: &str,
        result: &RunResult,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<EvaluationStatus> {
        let mut tx = self.write_tx().await?;
        let cur = load_fenced(&mut tx, id, token).await?;
        let status = if result.status == RunStatus::Errored {
            let reason = result
                .error
                .clone()
                .unwrap_or_else(|| "the platform failed to run the program".to_string());
            platform_failure(&mut tx, &cur, Some(result), &reason, policy, now).await?
        } else {
            let st = EvaluationStatus::from(result.status);
            to_terminal(
                &mut tx,
                &cur,
                st,
                Some(result),
                result.error.as_deref(),
                now,
            )
            .await?;
            st
        };
        tx.commit().await.map_err(backend)?;
        Ok(status)
    }

    async fn release(&self, id: &str, token: &str, now: Millis) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let cur = load_fenced(&mut tx, id, token).await?;
        if cur.cancel_requested {
            to_terminal(&mut tx, &cur, EvaluationStatus::Cancelled, None, None, now).await?;
        } else {
            let attempts = cur.attempts.saturating_sub(1);
            to_queued(&mut tx, &cur, attempts, 0, None, now).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn reap_expired(&self, policy: &RetryPolicy, now: Millis) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            current_cols!(),
            " FROM evaluations WHERE status = 'running' AND lease_expires_at <= ?"
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let expired = rows
            .iter()
            .map(current_from_row)
            .collect::<Result<Vec<_>>>()?;
        for cur in &expired {
            let reason = format!(
                "lease expired (worker {} lost)",
                cur.worker_id.as_deref().unwrap_or("unknown")
            );
            platform_failure(&mut tx, cur, None, &reason, policy, now).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(expired.len() as u64)
    }

    async fn events(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT evaluation_id, seq, kind, data, at FROM events \
             WHERE evaluation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind").map_err(backend)?;
                Ok(Event {
                    evaluation_id: row.try_get("evaluation_id").map_err(backend)?,
                    seq: row.try_get("seq").map_err(backend)?,
                    kind: EventKind::parse(&kind)
                        .ok_or_else(|| StoreError::Backend(format!("unknown kind {kind:?}")))?,
                    data: row.try_get("data").map_err(backend)?,
                    at: row.try_get("at").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn queue_stats(&self, tenant: Option<&str>, now: Millis) -> Result<QueueStats> {
        let mut conn = self.reader.acquire().await.map_err(backend)?;
        let mut counts: BTreeMap<String, u64> = EvaluationStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        // `?1 IS NULL`: all tenants; else the (tenant, status, created_at) index serves both.
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM evaluations \
             WHERE ?1 IS NULL OR tenant = ?1 GROUP BY status",
        )
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        for row in rows {
            let status: String = row.try_get("status").map_err(backend)?;
            let n: i64 = row.try_get("n").map_err(backend)?;
            counts.insert(status, n.max(0) as u64);
        }
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM evaluations \
             WHERE status = 'queued' AND (?1 IS NULL OR tenant = ?1)",
        )
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        let workers = sqlx::query(
            "SELECT id, hostname, runtime, slots, running, started_at, last_seen \
             FROM workers ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?
        .iter()
        .map(worker_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(QueueStats {
            counts,
            oldest_queued_age_ms: oldest.map(|t| (now - t).max(0)),
            workers,
        })
    }

    async fn requeue(&self, id: &str, now: Millis) -> Result<Evaluation> {
        let mut tx = self.write_tx().await?;
        let cur = load_current(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        if cur.status != EvaluationStatus::Dead {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                status: cur.status,
                action: "requeue",
            });
        }
        let seq: i64 = sqlx::query_scalar(
            "UPDATE evaluations SET status = 'queued', attempts = 0, not_before = 0, \
             error = NULL, result = NULL, finished_at = NULL, worker_id = NULL, \
             lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0, \
             next_seq = next_seq + 1 WHERE pk = ? RETURNING next_seq - 1",
        )
        .bind(cur.pk)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let data = status_data(EvaluationStatus::Queued, 0, None);
        insert_event(&mut tx, &cur.id, seq, EventKind::Status, &data, now).await?;
        let e = load_evaluation(&mut tx, cur.pk).await?;
        tx.commit().await.map_err(backend)?;
        Ok(e)
    }

    async fn worker_heartbeat(&self, info: &WorkerInfo) -> Result<()> {
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
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, tenant, role, hash, created_at, expires_at, \
             revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.tenant)
        .bind(key.role.as_str())
        .bind(&key.hash)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn use_key(&self, hash: &str, now: Millis) -> Result<Option<ApiKey>> {
        let Some(row) = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE hash = ?"
        ))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        else {
            return Ok(None);
        };
        let mut key = key_from_row(&row)?;
        // Record the use, at most once per granule: authentication stays a read.
        let stale = key
            .last_used_at
            .is_none_or(|t| now - t >= KEY_USE_GRANULARITY_MS);
        if stale {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ? \
                 WHERE hash = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(now)
            .bind(hash)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
            key.last_used_at = Some(key.last_used_at.map_or(now, |t| t.max(now)));
        }
        Ok(Some(key))
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>> {
        sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at, id"
        ))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn revoke_key(&self, id: &str, now: Millis) -> Result<ApiKey> {
        // One statement: the first revocation wins, later ones change nothing.
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING ",
            key_cols!()
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        match row {
            Some(row) => key_from_row(&row),
            None => Err(StoreError::NotFound(id.to_string())),
        }
    }

    async fn count_keys(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        self.audit_append(entry).await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditEntry>> {
        self.audit_list(filter).await
    }

    async fn verify_audit(&self) -> Result<AuditVerification> {
        self.audit_verify().await
    }
}
