//! Opening the store a URL names: the only place in the binary that knows the backends, so that
//! every command (`serve`, `worker`, `admin create-key`, `audit verify`, `audit export --data`)
//! accepts the same URLs and says the same things about them.

use anyhow::{Context, Result, bail};
use assay_store::{Store, StoreUrl};
use assay_store_sqlite::SqliteStore;
use std::sync::Arc;

/// Opens the store (a SQLite database is created, with its folder, if it does not exist yet).
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    match url {
        StoreUrl::Sqlite { path } => {
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("opening {url}"))?;
            Ok(Arc::new(store))
        }
        StoreUrl::Postgres { .. } => bail!(
            "{url}: PostgreSQL is not supported yet (it comes in a later version of Assay); \
             use sqlite://PATH"
        ),
    }
}

/// Opens a store that must already hold Assay's data: offline tools (key recovery, the audit
/// log) must never turn a mistyped path into a new, empty database.
pub async fn open_existing(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    if let StoreUrl::Sqlite { path } = url
        && !path.is_file()
    {
        bail!(
            "no Assay database at {} (--data must be the folder `assay serve` uses, or --store \
             the URL of its store)",
            path.display()
        );
    }
    open(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn postgres_is_refused_clearly_and_a_missing_database_is_not_created() {
        let pg = StoreUrl::parse("postgres://assay:pw@db/assay").unwrap();
        let err = open(&pg).await.err().unwrap().to_string();
        assert!(
            err.contains("PostgreSQL is not supported yet") && err.contains("sqlite://"),
            "{err}"
        );
        assert!(!err.contains("pw"), "the password is never shown: {err}");

        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::default_for(dir.path());
        let err = open_existing(&url).await.err().unwrap().to_string();
        assert!(err.contains("no Assay database"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        open(&url).await.unwrap();
        open_existing(&url).await.unwrap();
    }
}
