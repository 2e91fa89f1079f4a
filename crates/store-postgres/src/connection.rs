//! Opening the database (a pool of connections, migrations) and the store's clock.
//!
//! Time: leases, backoff and every timestamp the store writes are compared and written with one
//! clock. With several servers on one database their clocks disagree, so in production the
//! clock is the database's ([`Clock::Database`]: `clock_timestamp()`, read once per
//! transaction, in its first statement where possible) and the `now` the caller passes is
//! ignored: a node whose clock runs ahead can never reap a lease that is still live by the
//! database's clock. [`Clock::Caller`] uses the `now` arguments instead, which is what the
//! conformance suite needs to drive time synthetically.

use crate::error::db;
use crate::migrate::migrate;
use assay_store::{Millis, Result, StoreError, StoreUrl};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The database's clock in unix milliseconds, as SQL.
macro_rules! db_now {
    () => {
        "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}
pub(crate) use db_now;

/// How long a call waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection idle for this long is closed (the pool opens another when needed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Which clock the store compares and writes times with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// The database server's clock (`clock_timestamp()`); the callers' `now` is ignored. The
    /// production setting: every node agrees on when a lease expires.
    #[default]
    Database,
    /// The `now` each call passes (tests that drive time themselves).
    Caller,
}

/// How to open a [`PgStore`].
#[derive(Clone)]
pub struct PgOptions {
    /// The pool's size: at most this many connections to the server.
    pub max_connections: u32,
    pub clock: Clock,
    /// The password, if not in the URL (e.g. read from `ASSAY_STORE_PASSWORD_FILE`); it wins
    /// over one in the URL.
    pub password: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 10,
            clock: Clock::Database,
            password: None,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("max_connections", &self.max_connections)
            .field("clock", &self.clock)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `BEGIN` of a transaction whose commit does not wait for its WAL to reach the disk. Only for a
/// claim, whose loss in a server crash is harmless: the job is simply queued again, and the
/// worker's next write (synchronous) fails `LeaseLost`; any later synchronous commit flushes it
/// anyway. It keeps the claims' lock short (no fsync while holding it).
macro_rules! begin_async_commit {
    () => {
        "BEGIN; SET LOCAL synchronous_commit = off"
    };
}
pub(crate) use begin_async_commit;

/// A transaction of the store.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The PostgreSQL store: a pool of connections to one database, shared by any number of
/// servers.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) clock: Clock,
    /// How to connect (the listener opens its own connection).
    pub(crate) connect: PgConnectOptions,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connect options: they hold the password.
        f.debug_struct("PgStore")
            .field("host", &self.connect.get_host())
            .field("port", &self.connect.get_port())
            .field("database", &self.connect.get_database())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`) and applies pending
    /// migrations. A server that cannot be reached is `Unavailable` (retryable); a bad URL,
    /// bad credentials or a missing database are `Backend`.
    pub async fn open(url: &str, options: PgOptions) -> Result<PgStore> {
        let shown = match StoreUrl::parse(url) {
            Ok(u @ StoreUrl::Postgres { .. }) => u.to_string(),
            Ok(other) => {
                return Err(StoreError::Backend(format!(
                    "{other} is not a PostgreSQL URL (postgres://USER@HOST[:PORT]/DB)"
                )));
            }
            Err(e) => return Err(StoreError::Backend(e.to_string())),
        };
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("PostgreSQL URL {shown}: {e}")))?
            .application_name("assay");
        if let Some(password) = &options.password {
            connect = connect.password(password);
        }
        let label = |e: sqlx::Error| match db(e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("{shown}: {m}")),
            StoreError::Backend(m) => StoreError::Backend(format!("{shown}: {m}")),
            other => other,
        };
        // One connection first: a server that is down or refuses fails at once with its own
        // error (a pool would retry until its acquire timeout and report only that).
        sqlx::PgConnection::connect_with(&connect)
            .await
            .map_err(label)?
            .close()
            .await
            .map_err(label)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            // No ping before handing out a connection: it would double the round trips of
            // every call. A connection that died since is an I/O error of the call itself
            // (`Unavailable`: the caller retries, on a fresh connection).
            .test_before_acquire(false)
            .connect_lazy_with(connect.clone());
        migrate(&pool).await?;
        Ok(PgStore {
            pool,
            clock: options.clock,
            connect,
        })
    }

    /// The clock this store compares and writes times with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `now` to bind as the `COALESCE($n, db_now!())` of a statement: the caller's in
    /// [`Clock::Caller`] mode, `NULL` (the database's clock) in [`Clock::Database`] mode.
    pub(crate) fn now_arg(&self, now: Millis) -> Option<Millis> {
        match self.clock {
            Clock::Caller => Some(now),
            Clock::Database => None,
        }
    }

    /// The time a transaction uses: the caller's, or the database's read on `conn`.
    pub(crate) async fn now_on(
        &self,
        conn: &mut sqlx::PgConnection,
        now: Millis,
    ) -> Result<Millis> {
        match self.clock {
            Clock::Caller => Ok(now),
            Clock::Database => sqlx::query_scalar(concat!("SELECT ", db_now!()))
                .fetch_one(conn)
                .await
                .map_err(db),
        }
    }

    /// A transaction (READ COMMITTED, committed durably).
    pub(crate) async fn begin(&self) -> Result<Tx> {
        self.pool.begin().await.map_err(db)
    }
}

/// `url` (`postgres://…/DB[?…]`) naming database `db` instead, its query string kept; `None`
/// if `url` does not end in `/DATABASE`. For tools that make a database beside another
/// (benchmarks, tests).
pub fn url_with_database(url: &str, db: &str) -> Option<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/')?;
    Some(match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    })
}
