//! A fresh PostgreSQL database per test, on the server of `ASSAY_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the fixture is. A server that
//! cannot be reached fails the test with a message saying so: these tests are never skipped.
use assay_store_postgres::{Clock, PgOptions, PgStore};
use sqlx::{Connection, PgConnection};
use std::ops::Deref;

/// Connections of a test's pool: the suite runs tests in parallel, and the server's
/// `max_connections` (100 by default) is shared by all of them.
pub const POOL: u32 = 6;

/// The server's URL (its `postgres` database: where databases are created and dropped).
pub fn server_url() -> String {
    std::env::var("ASSAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a URL ending in /DATABASE");
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

async fn admin() -> PgConnection {
    let url = server_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL tests need a server: cannot connect to {url} ({e}). Start one, or \
             point ASSAY_TEST_POSTGRES at one (postgres://USER@HOST:PORT/DB, trust auth)"
        )
    })
}

/// A new, empty database (no schema yet), dropped with the value.
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn create() -> Database {
        let name = format!("assay_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        conn.close().await.ok();
        Database {
            url: with_database(&server_url(), &name),
            name,
        }
    }

    /// A store on this database.
    pub async fn open(&self, clock: Clock) -> PgStore {
        PgStore::open(
            &self.url,
            PgOptions {
                max_connections: POOL,
                clock,
                password: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Best effort, on a thread of its own (drop cannot await): connections still open are
        // ended by FORCE.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server_url()).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A store on a fresh database, driven by the callers' clock (the conformance suite's).
pub struct Fixture {
    // Field order: the store's pool goes before its database is dropped.
    pub store: PgStore,
    pub db: Database,
}

impl Deref for Fixture {
    type Target = PgStore;
    fn deref(&self) -> &PgStore {
        &self.store
    }
}

pub async fn fresh() -> Fixture {
    fresh_with(Clock::Caller).await
}

pub async fn fresh_with(clock: Clock) -> Fixture {
    let db = Database::create().await;
    let store = db.open(clock).await;
    Fixture { store, db }
}
