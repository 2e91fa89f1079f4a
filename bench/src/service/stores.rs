//! The stores under test: SQLite (a file in the benchmark's temporary folder, always measured:
//! it is the reference) and each PostgreSQL server named, on which a fresh database is created
//! for the run and dropped at its end, so that runs never see each other's data.

use anyhow::{Context, Result, bail};
use assay_store::StoreUrl;
use std::path::{Path, PathBuf};

/// The server the benchmark uses when no `--store` is given (as the PostgreSQL tests do).
pub(crate) const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The variable that overrides [`DEFAULT_POSTGRES`].
pub(crate) const POSTGRES_ENV: &str = "ASSAY_TEST_POSTGRES";

/// One store, and the folder of its nodes' files.
pub(crate) struct BenchStore {
    /// `sqlite`, `postgres`, `postgres#2`, ...
    pub(crate) label: String,
    /// What the nodes get as `--store`.
    pub(crate) url: String,
    /// The store as shown (no password).
    pub(crate) shown: String,
    /// The folder of this store's nodes: data folder (admin key), blobs, logs.
    pub(crate) dir: PathBuf,
    /// The database made for the run; dropped with the value.
    pg: Option<PgDatabase>,
}

impl BenchStore {
    pub(crate) fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// The PostgreSQL database made for the run.
    pub(crate) fn pg_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|d| d.name.as_str())
    }

    /// Transactions committed and rolled back so far in the run's PostgreSQL database
    /// (`pg_stat_database`, read from the server's own database so that the reading is not
    /// counted; PostgreSQL flushes these statistics up to a second late).
    pub(crate) async fn pg_xacts(&self) -> Option<i64> {
        use sqlx::Connection;
        let db = self.pg.as_ref()?;
        let mut conn = sqlx::PgConnection::connect(&db.admin).await.ok()?;
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&db.name)
        .fetch_optional(&mut conn)
        .await
        .ok()?;
        conn.close().await.ok();
        n
    }

    /// The data folder every API node of this store uses (the admin key is made there by the
    /// first one).
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `--blob`: the same for every node of the store.
    pub(crate) fn blob(&self) -> String {
        format!("file://{}", self.dir.join("blobs").display())
    }

    /// SQLite in `tmp/sqlite`.
    pub(crate) fn sqlite(tmp: &Path) -> Result<BenchStore> {
        let dir = tmp.join("sqlite");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let url = format!("sqlite://{}", dir.join("data").join("assay.db").display());
        Ok(BenchStore {
            label: "sqlite".into(),
            shown: url.clone(),
            url,
            dir,
            pg: None,
        })
    }

    /// A fresh database `assay_bench_<random>` on the server `server` names (its database is
    /// where the new one is created from).
    pub(crate) async fn postgres(server: &str, label: &str, tmp: &Path) -> Result<BenchStore> {
        let shown = match StoreUrl::parse(server)? {
            StoreUrl::Postgres { .. } => StoreUrl::parse(server)?.to_string(),
            StoreUrl::Sqlite { .. } => {
                bail!("--store {server}: a PostgreSQL URL (SQLite is always measured)")
            }
        };
        let name = format!("assay_bench_{}", uuid::Uuid::new_v4().simple());
        let db = PgDatabase::create(server, &name).await.with_context(|| {
            format!(
                "PostgreSQL at {shown}: the benchmark needs a server it can create databases \
                 on (start one, point --store or {POSTGRES_ENV} at one, or pass --sqlite-only)"
            )
        })?;
        let dir = tmp.join(label.replace('#', "-"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let url = with_database(server, &name)?;
        let shown = StoreUrl::parse(&url)?.to_string();
        eprintln!("{label}: created the database {name} ({shown})");
        Ok(BenchStore {
            label: label.to_string(),
            url,
            shown,
            dir,
            pg: Some(db),
        })
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> Result<String> {
    assay_store_postgres::url_with_database(url, db).context("a URL ending in /DATABASE")
}

/// A database made for the run, dropped (with its connections) when the value is.
struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    async fn create(admin: &str, name: &str) -> Result<PgDatabase> {
        use sqlx::Connection;
        let mut conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            sqlx::PgConnection::connect(admin),
        )
        .await
        .context("no answer within 10 s")?
        .context("cannot connect")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .context("CREATE DATABASE")?;
        conn.close().await.ok();
        Ok(PgDatabase {
            admin: admin.to_string(),
            name: name.to_string(),
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the benchmark's runtime, which cannot be blocked on: a thread with a
        // runtime of its own does the work, and is waited for.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
                conn.close().await.ok();
                Some(r.is_ok())
            })
        })
        .join();
        match done {
            Ok(Some(true)) => eprintln!("dropped the database {}", self.name),
            _ => eprintln!(
                "could not drop the database {} (drop it by hand)",
                self.name
            ),
        }
    }
}
