//! The schema's migrations (`migrations/NNNN_name.sql`, embedded) and how they are applied.
//!
//! The migrator is built here rather than by `sqlx::migrate!` so that the crate needs no sqlx
//! macros. It records each migration in `_sqlx_migrations` exactly as sqlx's macro did (version,
//! description, SHA-384 checksum of the file), so databases created before keep opening.

use crate::error::db;
use assay_store::Result;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqlitePool;
use std::sync::LazyLock;

/// Version, description (the file name's, with spaces) and SQL of every migration, in order.
/// Versions are shared with the PostgreSQL backend's migrations.
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

static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    Migrator::with_migrations(
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
    )
});

/// Applies the pending migrations on `pool`'s connection, all in one `BEGIN IMMEDIATE`
/// transaction: when several processes open a new file at once, one migrates while the others
/// wait for the write lock (`busy_timeout`), then find nothing left to do. (sqlx's own SQLite
/// migrator takes no lock: two of them would both try to apply the first migration.)
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    // Each migration runs in a savepoint inside this transaction. `run_direct` on the
    // connection rather than `run`: `run`'s `Acquire` bound makes the future of every caller
    // (`SqliteStore::open`) fail to be `Send` for all lifetimes, so it could not be spawned
    // (sqlx keeps `run_direct` public for exactly this).
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
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
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
