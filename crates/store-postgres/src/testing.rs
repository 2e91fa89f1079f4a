//! For tests only (feature `testing`): a fresh, empty PostgreSQL database per test, on the
//! server `ASSAY_TEST_POSTGRES` names (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped when the value is. A server that cannot be reached fails the test with a message
//! saying so: tests that need PostgreSQL are never skipped.

use sqlx::{Connection, PgConnection};

/// The server's URL (its maintenance database: where databases are created and dropped).
pub fn server_url() -> String {
    std::env::var("ASSAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database replaced by `db` (its query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    crate::url_with_database(url, db).expect("a URL ending in /DATABASE")
}

/// A connection to the server's maintenance database; panics with how to get one.
pub async fn admin() -> PgConnection {
    let url = server_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "this test needs PostgreSQL: cannot connect to {url} ({e}). Start one, or point \
             ASSAY_TEST_POSTGRES at one (postgres://USER@HOST:PORT/DB, trust auth)"
        )
    })
}

/// A new, empty database (no schema yet), dropped (with its connections) with the value.
pub struct TestDatabase {
    pub name: String,
    /// Its URL, on the server of [`server_url`].
    pub url: String,
}

impl TestDatabase {
    /// Creates `<prefix>_<random>`.
    pub async fn create(prefix: &str) -> TestDatabase {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        conn.close().await.ok();
        TestDatabase {
            url: with_database(&server_url(), &name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await: a thread of its own with its own runtime. Best effort: FORCE ends
        // connections still open.
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
