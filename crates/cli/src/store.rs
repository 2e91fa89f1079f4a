//! Opening the store and the blob store that URLs name: the only place in the binary that knows
//! the backends, so that every command (`serve`, `worker`, `admin`, `audit`, `store copy`, `gc`)
//! accepts the same URLs and says the same things about them.

use anyhow::{Context, Result, bail};
use assay_blob::{BlobUrl, Blobs};
use assay_store::bus::LocalBus;
use assay_store::{Store, StoreUrl};
use assay_store_postgres::{PgOptions, PgStore};
use assay_store_sqlite::SqliteStore;
use std::sync::Arc;

/// The environment variable naming a file that holds the PostgreSQL password (so that it is in
/// neither the URL nor the process's arguments).
pub const PASSWORD_FILE_ENV: &str = "ASSAY_STORE_PASSWORD_FILE";

/// Opens the store (a SQLite database is created, with its folder, if it does not exist yet;
/// a PostgreSQL database must exist, and its schema is migrated).
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    Ok(match open_backend(url).await? {
        Backend::Sqlite(s) => Arc::new(s),
        Backend::Postgres(s) => Arc::new(*s),
    })
}

/// [`open`] for a node: with PostgreSQL, the database's notifications also wake this node's
/// waiters (`bus`), so that live output and `?wait` cross nodes without waiting for a poll.
pub async fn open_node(url: &StoreUrl, bus: &LocalBus) -> Result<Arc<dyn Store>> {
    Ok(match open_backend(url).await? {
        Backend::Sqlite(s) => Arc::new(s),
        Backend::Postgres(s) => {
            // The listener lives as long as the process.
            drop(s.listen(bus.clone()));
            Arc::new(*s)
        }
    })
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

async fn open_backend(url: &StoreUrl) -> Result<Backend> {
    match url {
        StoreUrl::Sqlite { path } => {
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("opening {url}"))?;
            Ok(Backend::Sqlite(store))
        }
        StoreUrl::Postgres { url: raw } => {
            let password = match std::env::var_os(PASSWORD_FILE_ENV) {
                Some(file) => Some(
                    std::fs::read_to_string(&file)
                        .with_context(|| {
                            format!("reading {PASSWORD_FILE_ENV} ({})", file.to_string_lossy())
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                None => None,
            };
            let options = PgOptions {
                password,
                ..PgOptions::default()
            };
            let store = PgStore::open(raw, options)
                .await
                .with_context(|| format!("opening {url}"))?;
            Ok(Backend::Postgres(Box::new(store)))
        }
    }
}

/// Opens the blob store (`file://` creates its directory; `s3://` reads its endpoint, region and
/// credentials from the environment, and is first contacted by the first write or read).
pub async fn open_blobs(url: &BlobUrl) -> Result<Blobs> {
    Blobs::open_env(url)
        .await
        .with_context(|| format!("opening the blob store {url}"))
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
    async fn a_missing_database_is_not_created_and_passwords_are_never_shown() {
        let pg = StoreUrl::parse("postgres://assay:pw@127.0.0.1:1/assay").unwrap();
        let err = format!("{:#}", open(&pg).await.err().unwrap());
        assert!(!err.contains(":pw@"), "the password is never shown: {err}");

        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::default_for(dir.path());
        let err = open_existing(&url).await.err().unwrap().to_string();
        assert!(err.contains("no Assay database"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        open(&url).await.unwrap();
        open_existing(&url).await.unwrap();
    }
}
