//! sqlx errors as store errors, sorted by whether the same call may succeed if tried again
//! (`Unavailable`: no connection, the server shutting down or failing over, a deadlock or
//! serialization failure, resources exhausted) or not (`Backend`: a constraint, a broken schema,
//! bad credentials, corrupt data, a bug). Every sqlx error of this crate goes through [`db`].
//!
//! PostgreSQL says which with its SQLSTATE (<https://www.postgresql.org/docs/current/errcodes-appendix.html>):
//! the class (first two characters) mostly decides.

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

/// The SQLSTATE of a database error.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `e` is a unique violation of the constraint (or unique index) `name`.
pub(crate) fn is_unique_violation(e: &sqlx::Error, name: &str) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("23505") && d.constraint() == Some(name)
        }
        _ => false,
    }
}

fn retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(_) => sqlstate(e).is_some_and(|c| retryable_code(&c)),
        // The connection (or the pool) could not serve the call now.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Migrate(m) => match m.as_ref() {
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => retryable(e),
            _ => false,
        },
        // Decoding, type and argument errors, rows that are not there, bad configuration, a
        // protocol violation: the same call meets the same data and the same code.
        _ => false,
    }
}

/// Whether a SQLSTATE is worth a retry.
fn retryable_code(code: &str) -> bool {
    let class = code.get(..2).unwrap_or(code);
    match class {
        // 08: connection exception. 53: insufficient resources (too many connections, out of
        // memory or disk). 58: system error (I/O). 57P0x: the server is shutting down or
        // starting (admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped is
        // 57P04 and is not retried); 57014: a statement timeout or cancellation.
        "08" | "53" | "58" => true,
        // 40001 serialization failure, 40P01 deadlock detected: the transaction was rolled back
        // whole, the same call may well pass.
        "40" => matches!(code, "40001" | "40P01"),
        "57" => matches!(code, "57P01" | "57P02" | "57P03" | "57014"),
        // 55P03 lock_not_available (a lock timeout), 55006 object in use.
        "55" => matches!(code, "55P03" | "55006"),
        // 25006 read_only_sql_transaction: a standby after a failover; the primary is back soon.
        "25" => code == "25006",
        // Everything else (23 constraints, 42 syntax or a missing table, 22 data, 28 bad
        // credentials, 3D000 no such database, P0001 a raised exception, …) needs a person or
        // a code change.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_class() {
        for code in [
            "08000", "08006", "08001", "53300", "53200", "58030", "40001", "40P01", "57P01",
            "57P02", "57P03", "57014", "55P03", "25006",
        ] {
            assert!(retryable_code(code), "{code}");
        }
        for code in [
            "23505", "23503", "23514", "42P01", "42601", "22P02", "28P01", "28000", "3D000",
            "P0001", "42501", "40002", "57P04", "XX000", "0A000",
        ] {
            assert!(!retryable_code(code), "{code}");
        }
    }

    #[test]
    fn errors_without_a_database_code() {
        let mapped = |e| match db(e) {
            StoreError::Unavailable(_) => true,
            StoreError::Backend(_) => false,
            other => panic!("only Unavailable or Backend: {other:?}"),
        };
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(mapped(sqlx::Error::Io(io)));
        assert!(mapped(sqlx::Error::PoolTimedOut));
        assert!(mapped(sqlx::Error::PoolClosed));
        assert!(mapped(sqlx::Error::WorkerCrashed));
        assert!(!mapped(sqlx::Error::RowNotFound));
        assert!(!mapped(sqlx::Error::ColumnNotFound("x".into())));
        assert!(!mapped(sqlx::Error::Protocol("garbage".into())));
        assert!(!mapped(sqlx::Error::Migrate(Box::new(
            MigrateError::VersionMismatch(3)
        ))));
        assert!(!matches!(corrupt("x"), StoreError::Unavailable(_)));
    }
}
