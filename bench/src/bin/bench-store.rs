//! `bench-store`: claims per second at the store level, on an empty store and on the same store
//! holding a long history (by default 1,000,000 finished evaluations), for each store given.
//!
//! For each `--store`, in one run:
//!
//! 1. a fresh store: PostgreSQL, a new database on the given server (dropped at the end);
//!    SQLite, a new file in the given folder (removed at the end);
//! 2. **empty**: `--jobs` evaluations (spread over `--tenants` tenants) are queued, then drained
//!    by claimers that claim and finish (`succeeded`) until nothing is left, first with one
//!    claimer, then with `--parallel` claimers at once; each figure is the median of
//!    `--rounds` drains, in claims (+ finishes) per second;
//! 3. the history is written with the backend's bulk SQL (`seed_finished`, feature `bench`);
//! 4. **full**: the same drains again.
//!
//! It prints a table (and one line of JSON, always the last line) with the full/empty ratio
//! (target: at least 0.80, the history must not slow claims) and the absolute rate (target for
//! PostgreSQL: at least 1,000 claims/s with `--parallel` claimers). Timing targets are reported,
//! never asserted; only a store that fails makes the process exit non-zero.
#![forbid(unsafe_code)]

#[path = "../common.rs"]
mod common;

use anyhow::{Context, Result, bail};
use assay_domain::{Language, LimitPolicy, Program, RetryPolicy, RunResult, RunStatus, Submission};
use assay_store::{ClaimPolicy, NewEvaluation, Store, StoreUrl, now_millis};
use assay_store_postgres::{Clock, PgOptions, PgStore};
use assay_store_sqlite::SqliteStore;
use clap::Parser;
use common::{median, pass, round2};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Target: claims on the full store at least this share of those on the empty one.
const RATIO_TARGET: f64 = 0.8;
/// Target: PostgreSQL claims (+ finishes) per second with the parallel claimers.
const PG_RATE_TARGET: f64 = 1000.0;
const LEASE: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "bench-store",
    about = "Store-level claim + finish rate on an empty store and on one with a long history"
)]
struct Args {
    /// Stores to measure: `postgres://USER@HOST[:PORT]/DB` (a server: the benchmark creates and
    /// drops a database of its own on it) or `sqlite://FOLDER` (the benchmark's database file
    /// is created in it and removed). Repeat the flag for several.
    #[arg(long = "store", required = true)]
    stores: Vec<String>,
    /// Finished evaluations of the history.
    #[arg(long, default_value_t = 1_000_000)]
    history: u64,
    /// Evaluations queued and drained per measurement.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Tenants the queued evaluations are spread over.
    #[arg(long, default_value_t = 4)]
    tenants: usize,
    /// Concurrent claimers of the parallel measurement.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Drains per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A small history and few jobs: proves the benchmark works (for CI), figures are rough.
    #[arg(long)]
    quick: bool,
    /// Print only the JSON line on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
}

/// A store under test, and how to clean up after it.
struct Bench {
    store: Arc<dyn Store>,
    backend: &'static str,
    seed: Seeder,
    cleanup: Cleanup,
}

enum Seeder {
    Postgres(Box<PgStore>),
    Sqlite(SqliteStore),
}

enum Cleanup {
    PgDatabase { admin: String, name: String },
    File(PathBuf),
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> Result<String> {
    assay_store_postgres::url_with_database(url, db).context("a URL ending in /DATABASE")
}

async fn open(url: &str) -> Result<Bench> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    match StoreUrl::parse(url)? {
        StoreUrl::Postgres { url } => {
            use sqlx::Connection;
            let name = format!("assay_bench_{suffix}");
            let mut admin = sqlx::PgConnection::connect(&url).await.with_context(|| {
                format!("connect to {}", StoreUrl::Postgres { url: url.clone() })
            })?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .context("CREATE DATABASE")?;
            admin.close().await.ok();
            let store = PgStore::open(
                &with_database(&url, &name)?,
                PgOptions {
                    max_connections: 16,
                    clock: Clock::Database,
                    password: None,
                },
            )
            .await?;
            Ok(Bench {
                store: Arc::new(store.clone()),
                backend: "postgres",
                seed: Seeder::Postgres(Box::new(store)),
                cleanup: Cleanup::PgDatabase { admin: url, name },
            })
        }
        StoreUrl::Sqlite { path } => {
            let file = path.join(format!("bench-store-{suffix}.db"));
            let store = SqliteStore::open(&file).await?;
            Ok(Bench {
                store: Arc::new(store.clone()),
                backend: "sqlite",
                seed: Seeder::Sqlite(store),
                cleanup: Cleanup::File(file),
            })
        }
    }
}

async fn cleanup(b: Bench) {
    b.store.close().await;
    match b.cleanup {
        Cleanup::PgDatabase { admin, name } => {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
                if let Err(e) = dropped {
                    eprintln!("could not drop {name}: {e}");
                }
            }
        }
        Cleanup::File(file) => {
            for ext in ["", "-wal", "-shm"] {
                let mut f = file.clone().into_os_string();
                f.push(ext);
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

fn job(tenant: usize) -> NewEvaluation {
    NewEvaluation {
        tenant: format!("bench-{tenant}"),
        submission: Submission {
            language: Language::Python,
            program: Program::single("print(1)\n"),
            stdin: String::new(),
            limits: LimitPolicy::default().defaults,
            priority: 0,
            labels: Default::default(),
        },
        idempotency_key: None,
        max_attempts: 3,
    }
}

fn succeeded() -> RunResult {
    let mut r = RunResult::platform_error("runc", "");
    r.status = RunStatus::Succeeded;
    r.error = None;
    r.exit_code = Some(0);
    r.stdout = "1\n".into();
    r
}

/// Queues `jobs` evaluations, then drains them with `claimers` at once; claims per second.
async fn drain(
    store: &Arc<dyn Store>,
    jobs: usize,
    tenants: usize,
    claimers: usize,
) -> Result<f64> {
    let items: Vec<NewEvaluation> = (0..jobs).map(|i| job(i % tenants.max(1))).collect();
    for chunk in items.chunks(1000) {
        store.submit_batch(chunk.to_vec(), now_millis()).await?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..claimers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-w{w}");
            let (policy, retry, result) =
                (ClaimPolicy::default(), RetryPolicy::default(), succeeded());
            let mut n = 0usize;
            while let Some(c) = store.claim(&worker, LEASE, &policy, now_millis()).await? {
                store
                    .finish(&c.evaluation.id, &c.token, &result, &retry, now_millis())
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        claimed += t.await.context("claimer")??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let left = store.count_queued(None).await?;
    if claimed != jobs || left != 0 {
        bail!("claimed {claimed} of {jobs}, {left} left queued");
    }
    #[expect(clippy::cast_precision_loss, reason = "a count of jobs")]
    Ok(claimed as f64 / elapsed)
}

/// The median rate of `rounds` drains with 1 and with `parallel` claimers.
async fn measure(b: &Bench, args: &Args, label: &str) -> Result<(f64, f64)> {
    let mut one = Vec::new();
    let mut many = Vec::new();
    for round in 0..args.rounds {
        one.push(drain(&b.store, args.jobs, args.tenants, 1).await?);
        many.push(drain(&b.store, args.jobs, args.tenants, args.parallel).await?);
        eprintln!(
            "  {label} round {}: {:.0}/s @1, {:.0}/s @{}",
            round + 1,
            one[round],
            many[round],
            args.parallel
        );
    }
    Ok((median(&one).unwrap_or(0.0), median(&many).unwrap_or(0.0)))
}

async fn run_store(url: &str, args: &Args) -> Result<Value> {
    let b = open(url).await?;
    let result = async {
        eprintln!("{}: warming up", b.backend);
        drain(&b.store, args.jobs.min(200), args.tenants, args.parallel).await?;
        let empty = measure(&b, args, "empty").await?;
        eprintln!(
            "{}: writing {} finished evaluations",
            b.backend, args.history
        );
        let started = Instant::now();
        let before = now_millis() - 86_400_000;
        match &b.seed {
            Seeder::Postgres(s) => s.seed_finished(args.history, before).await?,
            Seeder::Sqlite(s) => s.seed_finished(args.history, before).await?,
        }
        let seed_s = started.elapsed().as_secs_f64();
        let full = measure(&b, args, "full").await?;
        anyhow::Ok((empty, full, seed_s))
    }
    .await;
    let backend = b.backend;
    cleanup(b).await;
    let ((e1, ep), (f1, fp), seed_s) = result?;
    let ratio = |f: f64, e: f64| if e > 0.0 { f / e } else { 0.0 };
    Ok(json!({
        "store": backend,
        "history": args.history,
        "seed_s": round2(seed_s),
        "empty": {"claims_per_s_1": round2(e1), "claims_per_s_parallel": round2(ep)},
        "full": {"claims_per_s_1": round2(f1), "claims_per_s_parallel": round2(fp)},
        "ratio_1": round2(ratio(f1, e1)),
        "ratio_parallel": round2(ratio(fp, ep)),
    }))
}

/// The 1-minute load average (other work on the machine skews every figure).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn print_table(results: &[Value], parallel: usize) {
    println!(
        "{:<9} {:>9} {:>8} {:>12} {:>12} {:>12} {:>12} {:>8} {:>8}  result",
        "store",
        "history",
        "seed s",
        "empty @1",
        "full @1",
        "empty @P",
        "full @P",
        "ratio@1",
        "ratio@P"
    );
    for r in results {
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        let ratio_ok = f(&r["ratio_1"]) >= RATIO_TARGET && f(&r["ratio_parallel"]) >= RATIO_TARGET;
        let rate_ok =
            r["store"] != "postgres" || f(&r["full"]["claims_per_s_parallel"]) >= PG_RATE_TARGET;
        println!(
            "{:<9} {:>9} {:>8.1} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>8.2} {:>8.2}  ratio {} rate {}",
            r["store"].as_str().unwrap_or("?"),
            r["history"],
            f(&r["seed_s"]),
            f(&r["empty"]["claims_per_s_1"]),
            f(&r["full"]["claims_per_s_1"]),
            f(&r["empty"]["claims_per_s_parallel"]),
            f(&r["full"]["claims_per_s_parallel"]),
            f(&r["ratio_1"]),
            f(&r["ratio_parallel"]),
            pass(ratio_ok),
            pass(rate_ok),
        );
    }
    println!(
        "claims (+ finishes) per second; @P = {parallel} claimers at once; targets: full/empty \
         >= {RATIO_TARGET}, PostgreSQL >= {PG_RATE_TARGET}/s @P"
    );
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.history = args.history.min(20_000);
        args.jobs = args.jobs.min(300);
        args.rounds = 1;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load_before = load_average();
    let mut results = Vec::new();
    let mut failed = false;
    for url in &args.stores {
        match rt.block_on(run_store(url, &args)) {
            Ok(v) => results.push(v),
            Err(e) => {
                eprintln!("FAILURE: {url}: {e:#}");
                failed = true;
            }
        }
    }
    let load_after = load_average();
    if !args.json {
        print_table(&results, args.parallel);
        println!(
            "load average: {} before, {} after (other work on the machine skews every figure)",
            common::fmt_opt(load_before, 2),
            common::fmt_opt(load_after, 2)
        );
    }
    println!(
        "{}",
        json!({"parallel": args.parallel, "jobs": args.jobs, "tenants": args.tenants,
               "rounds": args.rounds, "load_before": load_before, "load_after": load_after,
               "results": results})
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
