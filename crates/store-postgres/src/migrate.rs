//! The schema's migrations (`migrations/NNNN_name.sql`, embedded) and how they are applied.
//!
//! Versions and names are the SQLite backend's, one for one (a test compares them), so that
//! "schema version N" means the same thing whatever the backend; the SQL is PostgreSQL's own.
//! The migrator is built here rather than by `sqlx::migrate!` so that the crate needs no sqlx
//! macros; it records each migration in `_sqlx_migrations` as sqlx's own migrator does.
//!
//! Several servers may start at once on a new database: all migrations run in one transaction
//! that first takes a transaction-scoped advisory lock. The first server migrates; the others
//! wait for the lock, then find every migration recorded and do nothing. A failure rolls back
//! the whole transaction, lock included (a session lock could outlive a failed migration on a
//! pooled connection).

use crate::error::db;
use assay_store::Result;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPool;
use std::sync::LazyLock;

/// Version, description (the file name's, with spaces) and SQL of every migration, in order.
const MIGRATIONS: [(i64, &str, &str); 5] = [
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "fair claim",
        include_str!("../migrations/0002_fair_claim.sql"),
    ),
    (3, "audit", include_str!("../migrations/0003_audit.sql")),
    (
        4,
        "output once",
        include_str!("../migrations/0004_output_once.sql"),
    ),
    (
        5,
        "admission and retention",
        include_str!("../migrations/0005_admission_and_retention.sql"),
    ),
];

/// The advisory lock migrations run under ("assay mg" in ASCII): one key per database.
const MIGRATION_LOCK: i64 = 0x6173_7361_7920_6d67;

/// The migrations this crate applies: version and description, in order (the file
/// `NNNN_some_name.sql` is version `NNNN`, description `some name`).
pub fn migration_versions() -> Vec<(i64, &'static str)> {
    MIGRATIONS.iter().map(|&(v, d, _)| (v, d)).collect()
}

static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut m = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    // The transaction's advisory lock below serialises migrators; sqlx's own would be a session
    // lock.
    m.set_locking(false);
    m
});

/// Applies the pending migrations, all in one transaction under [`MIGRATION_LOCK`].
pub(crate) async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // Each migration runs in a savepoint of this transaction. `run_direct` rather than `run`:
    // `run`'s `Acquire` bound makes the caller's future fail to be `Send` (sqlx keeps
    // `run_direct` public for exactly this).
    MIGRATOR
        .run_direct(None, &mut *tx, false)
        .await
        .map_err(|e| db(sqlx::Error::Migrate(Box::new(e))))?;
    tx.commit().await.map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `migrations/` is listed, under the version and description sqlx derives
    /// from its name (`NNNN_some_name.sql` → `NNNN`, `some name`).
    #[test]
    fn every_migration_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .expect("migrations folder")
            .map(|entry| {
                let path = entry.expect("entry").path();
                let name = path
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned();
                let (version, rest) = name.split_once('_').expect("NNNN_name.sql");
                let description = rest.strip_suffix(".sql").expect(".sql").replace('_', " ");
                let sql = std::fs::read_to_string(&path).expect("read");
                (version.parse().expect("a version"), description, sql)
            })
            .collect();
        files.sort();
        let listed: Vec<(i64, String, String)> = MIGRATIONS
            .iter()
            .map(|&(v, d, sql)| (v, d.to_string(), sql.to_string()))
            .collect();
        assert_eq!(listed, files);
    }
}
