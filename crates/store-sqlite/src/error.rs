//! sqlx errors as store errors, sorted by whether the same call may succeed if tried again
//! (`Unavailable`: busy, locked, I/O, no connection in time) or not (`Backend`: corrupt data,
//! a constraint, a broken schema, a bug). Every sqlx error of this crate goes through [`db`].

use assay_store::StoreError;
use sqlx::migrate::MigrateError;

/// The store error for a sqlx error.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if retryable(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// A row that does not hold what the schema promises (only an edit behind the store's back, or
/// a bug, makes one): retrying reads the same row again.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt row: {what}"))
}

fn retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(retryable_code),
        // The connection (or the pool) could not serve the call now.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Migrate(m) => match m.as_ref() {
            // Another process held the write lock for longer than the busy timeout.
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => retryable(e),
            _ => false,
        },
        // Decoding, type and argument errors, rows that are not there, bad configuration: the
        // same call meets the same data and the same code.
        _ => false,
    }
}

/// Whether a SQLite result code (extended codes included: the primary code is the low byte,
/// <https://www.sqlite.org/rescode.html>) is worth a retry.
fn retryable_code(code: i32) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const INTERRUPT: i32 = 9;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const PROTOCOL: i32 = 15;
    const SCHEMA: i32 = 17;
    // BUSY and LOCKED: another connection holds a lock past the busy timeout. IOERR, FULL and
    // NOMEM: the disk or the memory failed us, and may not next time. PROTOCOL: a race on the
    // WAL's locks. SCHEMA: the schema changed under a prepared statement; preparing it again
    // works. Everything else (ERROR, CONSTRAINT, CORRUPT, NOTADB, READONLY, CANTOPEN, PERM,
    // MISMATCH, TOOBIG, …) needs a person or a code change.
    matches!(
        code & 0xff,
        BUSY | LOCKED | NOMEM | INTERRUPT | IOERR | FULL | PROTOCOL | SCHEMA
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::{Connection, SqliteConnection};
    use std::time::Duration;

    fn is_retryable(e: sqlx::Error) -> bool {
        let mapped = db(e);
        match &mapped {
            StoreError::Unavailable(_) => assert!(mapped.is_retryable()),
            StoreError::Backend(_) => assert!(!mapped.is_retryable()),
            other => panic!("only Unavailable or Backend: {other:?}"),
        }
        mapped.is_retryable()
    }

    #[test]
    fn result_codes_by_primary_code() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED_SHAREDCACHE, SQLITE_IOERR_FSYNC,
        // SQLITE_FULL, SQLITE_PROTOCOL.
        for code in [5, 517, 262, 10, 1034, 13, 15] {
            assert!(retryable_code(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_TRIGGER, SQLITE_CORRUPT,
        // SQLITE_NOTADB, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_MISMATCH.
        for code in [1, 2067, 1811, 11, 26, 8, 14, 20] {
            assert!(!retryable_code(code), "{code}");
        }
    }

    #[test]
    fn errors_without_a_database_code() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        assert!(is_retryable(sqlx::Error::Io(io)));
        assert!(is_retryable(sqlx::Error::PoolTimedOut));
        assert!(is_retryable(sqlx::Error::PoolClosed));
        assert!(is_retryable(sqlx::Error::WorkerCrashed));
        assert!(!is_retryable(sqlx::Error::RowNotFound));
        assert!(!is_retryable(sqlx::Error::ColumnNotFound("x".into())));
        assert!(!is_retryable(sqlx::Error::Protocol("garbage".into())));
        assert!(!is_retryable(sqlx::Error::Migrate(Box::new(
            MigrateError::VersionMismatch(3)
        ))));
        assert!(!matches!(corrupt("x"), StoreError::Unavailable(_)));
    }

    async fn connect(path: &std::path::Path, busy: Duration) -> SqliteConnection {
        SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .busy_timeout(busy),
        )
        .await
        .expect("connect")
    }

    #[tokio::test]
    async fn errors_sqlite_gives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let mut a = connect(&path, Duration::from_secs(5)).await;
        sqlx::raw_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&mut a)
            .await
            .expect("schema");
        // Another connection holds the write lock: busy.
        let mut b = connect(&path, Duration::ZERO).await;
        let lock = a.begin_with("BEGIN IMMEDIATE").await.expect("lock");
        let busy = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut b).await;
        assert!(is_retryable(busy.expect_err("busy")));
        lock.rollback().await.expect("unlock");
        // A constraint, a missing table: retrying changes nothing.
        sqlx::raw_sql("INSERT INTO t VALUES (1, 'x')")
            .execute(&mut b)
            .await
            .expect("insert");
        for sql in [
            "INSERT INTO t VALUES (1, 'again')",
            "INSERT INTO t VALUES (2, NULL)",
            "SELECT * FROM missing",
        ] {
            let e = sqlx::raw_sql(sql).execute(&mut b).await.expect_err(sql);
            assert!(!is_retryable(e), "{sql}");
        }
        // A file that is not a database.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).expect("write junk");
        let mut j = connect(&junk, Duration::ZERO).await;
        let e = sqlx::raw_sql("SELECT * FROM sqlite_master")
            .execute(&mut j)
            .await
            .expect_err("not a database");
        assert!(!is_retryable(e));
        // A closed pool.
        let pool = SqlitePoolOptions::new()
            .connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .expect("pool");
        pool.close().await;
        let e = sqlx::raw_sql("SELECT 1")
            .execute(&pool)
            .await
            .expect_err("closed");
        assert!(is_retryable(e));
    }
}
