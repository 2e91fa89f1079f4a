//! Opening the database: one writer connection, a pool of readers, migrations.

use crate::error::db;
use crate::migrate::migrate;
use assay_store::{Result, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a connection of its pool (the writer is shared by every write of
/// the process).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// Prepared statements kept per connection (the store has a few dozen distinct statements).
const STATEMENT_CACHE: usize = 256;

/// A write transaction: it holds SQLite's write lock from `BEGIN IMMEDIATE` to its end.
pub(crate) type WriteTx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The SQLite store: one database file in WAL mode.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection: every write.
    pub(crate) writer: SqlitePool,
    /// Reads (the same pool as `writer` for an in-memory database).
    pub(crate) reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let readers = std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok())
            .unwrap_or(4)
            .clamp(2, 16);
        SqliteStore::open_with(path, readers).await
    }

    /// Like `open`, with `readers` connections for reads.
    pub async fn open_with(path: impl AsRef<Path>, readers: u32) -> Result<SqliteStore> {
        if let Some(dir) = path.as_ref().parent().filter(|d| !d.as_os_str().is_empty()) {
            // A folder that cannot be made is a setup problem: no retry mends it.
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
            .statement_cache_capacity(STATEMENT_CACHE);
        // Several processes opening a new file at once race to switch it to WAL, and SQLite
        // answers that switch with SQLITE_BUSY without waiting for `busy_timeout`: the loser
        // tries again (briefly, with backoff) instead of failing to start.
        let mut wait = Duration::from_millis(10);
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let writer = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.clone())
                .await
                .map_err(db);
            match opened {
                Ok(writer) => break writer,
                Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        };
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(600))
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db)?;
        Ok(SqliteStore { writer, reader })
    }

    /// A private in-memory database on a single connection (tests, throwaway runs).
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db)?;
        migrate(&pool).await?;
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

    /// Takes the write lock up front, so that the transaction never fails half-way on a lock
    /// upgrade, and other processes on the file wait (`busy_timeout`) instead.
    pub(crate) async fn write_tx(&self) -> Result<WriteTx> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}
