//! A fresh PostgreSQL database per test, on the server of `ASSAY_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the fixture is. A server that
//! cannot be reached fails the test with a message saying so: these tests are never skipped.
use assay_store_postgres::testing::TestDatabase;
use assay_store_postgres::{Clock, PgOptions, PgStore};
use std::ops::Deref;

/// Connections of a test's pool: the suite runs tests in parallel, and the server's
/// `max_connections` (100 by default) is shared by all of them.
pub const POOL: u32 = 6;

/// A new, empty database (no schema yet), dropped with the value.
pub struct Database(TestDatabase);

impl Deref for Database {
    type Target = TestDatabase;
    fn deref(&self) -> &TestDatabase {
        &self.0
    }
}

impl Database {
    pub async fn create() -> Database {
        Database(TestDatabase::create("assay_t").await)
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
