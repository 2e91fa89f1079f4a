//! `bench-service`: what the service adds on top of the sandbox, and what PostgreSQL changes
//! against SQLite, measured in the same run.
//!
//! One run of this binary measures, on the same machine and under the same load, for SQLite
//! (always: the reference) and for each PostgreSQL server named (on a fresh database, dropped
//! at the end):
//!
//! 1. latency, with one `assay serve --slots 2` per store running at once: `print('hello')`
//!    through [`Engine::run`] directly (the sandbox alone) and `POST /v1/evaluations?wait=30` on
//!    each server, interleaved run by run;
//! 2. read throughput: `GET /v1/evaluations/{id}` of one finished evaluation over many
//!    keep-alive connections, in short slices alternating between the servers;
//! 3. live-output delay on one process: an SSE client follows programs that print the time;
//! 4. batch throughput on SQLite in one process (`serve --slots 2`), then, for each store, on an
//!    API node (`serve --slots 0`) and two worker processes (`assay worker`): thousands of
//!    `print(1)` through `POST /v1/evaluations/batch`, timed until `GET /v1/queue` shows them
//!    all finished; each batch is compared with the sandbox alone at parallel 2 measured just
//!    before and just after it;
//! 5. on the same topology, the live-output delay across nodes (the client on the API node, the
//!    program in a worker process) and the end-to-end latency.
//!
//! It prints a table (and one line of JSON) that compares each figure with its baseline and
//! with the targets of the issues. Timing targets are reported, never asserted: only requests or
//! runs that did not end as expected (or a store that cannot be reached) make the process exit
//! non-zero.
#![forbid(unsafe_code)]

// The modules live in service/ (this file is the binary's root, as bench-sandbox's is
// sandbox.rs).
#[path = "service/baseline.rs"]
mod baseline;
#[path = "service/batch.rs"]
mod batch;
mod common;
#[path = "service/get.rs"]
mod get;
#[path = "service/latency.rs"]
mod latency;
#[path = "service/measured.rs"]
mod measured;
#[path = "service/node.rs"]
mod node;
#[path = "service/programs.rs"]
mod programs;
#[path = "service/report.rs"]
mod report;
#[path = "service/sse.rs"]
mod sse;
#[path = "service/stores.rs"]
mod stores;

use anyhow::{Context, Result, bail};
use assay_sandbox::{Engine, EngineConfig, Environment, RuntimeChoice, RuntimeKind};
use baseline::{Plan, SandboxBatch, default_limits, sandbox_batch};
use batch::{Group, batch_throughput};
use clap::Parser;
use common::{Failures, command_version};
use measured::{Batch, Measured, Settings, StoreResult};
use node::{NodeConfig, Server, find_assay, loadavg, postgres_cpu_ms, start_worker, stop_all};
use programs::{SLOTS, TRIVIAL, TRIVIAL_OUT};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use stores::{BenchStore, DEFAULT_POSTGRES, POSTGRES_ENV};

/// How many failures are printed in full (all are counted).
const MAX_PRINTED_FAILURES: usize = 20;

#[derive(Parser, Debug)]
#[command(
    name = "bench-service",
    about = "The evaluation service end to end against the sandbox alone, and PostgreSQL against \
             SQLite, measured in the same run"
)]
struct Args {
    /// Few runs: proves the benchmark works (for CI), figures are rough.
    #[arg(long)]
    quick: bool,
    /// PostgreSQL server to measure next to SQLite, `postgres://USER@HOST[:PORT]/DB`: the
    /// benchmark creates a database of its own on it (from DB's server) and drops it at the end.
    /// Repeat for several [default: $ASSAY_TEST_POSTGRES, else
    /// postgres://postgres@127.0.0.1:5432/postgres]. A server that cannot be reached is an
    /// error.
    #[arg(long = "store", value_name = "URL")]
    stores: Vec<String>,
    /// Measure SQLite only (no PostgreSQL server needed).
    #[arg(long, conflicts_with = "stores")]
    sqlite_only: bool,
    /// Worker processes (`assay worker`) next to the API node in the batch phase.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Slots of each worker process [default: 1: two workers run two sandboxes at once, as
    /// many as the baseline].
    #[arg(long, default_value_t = 1)]
    worker_slots: usize,
    /// OCI runtime of both the baseline and the servers [default: crun if installed, else runc].
    #[arg(long)]
    runtime: Option<RuntimeKind>,
    /// Print only the JSON line on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Measured runs of each latency and baseline batch [default: 200, --quick: 20].
    #[arg(long)]
    runs: Option<usize>,
    /// Evaluations submitted for each batch throughput [default: 5000, --quick: 150].
    #[arg(long)]
    evaluations: Option<usize>,
    /// Seconds of GET load on each server [default: 5, --quick: 2].
    #[arg(long)]
    get_secs: Option<f64>,
    /// Concurrent keep-alive connections of the GET load.
    #[arg(long, default_value_t = 48)]
    connections: usize,
    /// Timed lines of live output per store and topology [default: 200, --quick: 50].
    #[arg(long)]
    sse_lines: Option<usize>,
    /// Unmeasured runs before the latency measurements [default: 5, --quick: 2].
    #[arg(long)]
    warmup: Option<usize>,
    /// The `assay` binary [default: `assay` next to this binary, built if missing].
    #[arg(long)]
    assay: Option<PathBuf>,
    /// Where the temporary folder (databases, blobs, sandbox state, logs) is created
    /// [default: the system's temporary directory].
    #[arg(long)]
    tmp: Option<PathBuf>,
}

impl Args {
    fn settings(&self) -> Settings {
        let (runs, evaluations, get_secs, slices, sse, warmup) = if self.quick {
            (20, 150, 2.0, 4, 50, 2)
        } else {
            (200, 5000, 5.0, 5, 200, 5)
        };
        let runs = self.runs.unwrap_or(runs).max(1);
        Settings {
            runs,
            evaluations: self.evaluations.unwrap_or(evaluations).max(1),
            get_time: std::time::Duration::from_secs_f64(
                self.get_secs.unwrap_or(get_secs).max(0.1),
            ),
            get_slices: slices,
            connections: self.connections.max(1),
            sse_lines: self.sse_lines.unwrap_or(sse).max(1),
            remote_runs: (runs / 4).clamp(1, 50),
            warmup: self.warmup.unwrap_or(warmup),
            workers: self.workers.max(1),
            worker_slots: self.worker_slots.max(1),
        }
    }

    /// The PostgreSQL servers to measure.
    fn postgres(&self) -> Vec<String> {
        if self.sqlite_only {
            vec![]
        } else if !self.stores.is_empty() {
            self.stores.clone()
        } else {
            vec![std::env::var(POSTGRES_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES.to_string())]
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // On SIGINT or SIGTERM the measurement is dropped, and with it the servers (stopped by
    // their guards), the databases (dropped by theirs) and the temporary folder.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        r = real_main() => match r {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bench-service: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("bench-service: interrupted");
            ExitCode::from(130)
        }
        _ = term.recv() => {
            eprintln!("bench-service: terminated");
            ExitCode::from(143)
        }
    }
}

fn default_runtime() -> RuntimeKind {
    if RuntimeKind::Crun.find().is_some() {
        RuntimeKind::Crun
    } else {
        RuntimeKind::Runc
    }
}

async fn real_main() -> Result<ExitCode> {
    let args = Args::parse();
    let s = args.settings();
    let failures = Failures::default();
    let runtime = args.runtime.unwrap_or_else(default_runtime);
    if runtime.find().is_none() {
        bail!("runtime {runtime} is not installed");
    }
    let assay = find_assay(args.assay.as_deref())?;
    let load_start = loadavg();

    // One temporary folder for everything: the SQLite database, the blobs, and the sandbox
    // state of both the baseline engine and the servers live on the same file system.
    // Declared first, dropped last.
    let tmp = {
        let mut b = tempfile::Builder::new();
        b.prefix("assay-bench-service-");
        match &args.tmp {
            Some(dir) => b.tempdir_in(dir),
            None => b.tempdir(),
        }
        .context("creating a temporary folder")?
    };
    // The stores (and the PostgreSQL databases, dropped after the servers are stopped: the
    // stores are declared before them).
    let mut stores = vec![BenchStore::sqlite(tmp.path())?];
    let pg = args.postgres();
    for (i, url) in pg.iter().enumerate() {
        let label = if pg.len() == 1 {
            "postgres".to_string()
        } else {
            format!("postgres#{}", i + 1)
        };
        stores.push(BenchStore::postgres(url, &label, tmp.path()).await?);
    }
    let limits = default_limits()?;
    let engine = Engine::new(EngineConfig {
        runtime: RuntimeChoice::Exactly(runtime),
        state_dir: tmp.path().join("sandbox-state"),
        cgroup_parent: "assay-bench".into(),
        environments: vec![Environment::python()],
        ..EngineConfig::default()
    })
    .await
    .with_context(|| format!("starting an engine with {runtime}"))?;
    let state = tmp.path().join("state");
    let config = |st: &BenchStore| NodeConfig {
        assay: assay.clone(),
        runtime,
        store: st.url.clone(),
        blob: st.blob(),
        state: state.clone(),
    };
    let p2 = Plan {
        code: TRIVIAL,
        expected: TRIVIAL_OUT,
        limits,
        n: s.runs,
        parallel: SLOTS,
    };
    let mut baselines: Vec<(String, SandboxBatch)> = Vec::new();

    // 1-3. One process per store, all running.
    let mut servers = Vec::new();
    for st in &stores {
        let name = format!("{}: serve --slots {SLOTS}", st.label);
        servers.push(Server::start(&name, &config(st), SLOTS, &st.data())?);
    }
    let named: Vec<(&str, &Server)> = stores
        .iter()
        .zip(&servers)
        .map(|(st, sv)| (st.label.as_str(), sv))
        .collect();
    let pg_cpu = || -> Vec<Option<f64>> {
        stores
            .iter()
            .map(|st| st.pg_name().and_then(postgres_cpu_ms))
            .collect()
    };
    let pg_before = pg_cpu();
    let (hello, e2e) =
        latency::interleaved(&engine, limits, &named, s.runs, s.warmup, &failures).await;
    let e2e_pg_cpu: Vec<Option<f64>> = pg_before
        .into_iter()
        .zip(pg_cpu())
        .map(|(b, a)| b.zip(a).map(|(b, a)| (a - b) / (s.runs + s.warmup) as f64))
        .collect();
    let mut targets = Vec::new();
    for (st, sv) in stores.iter().zip(&servers) {
        match get::sample(sv).await {
            Ok(id) => targets.push(get::Target {
                label: &st.label,
                server: sv,
                id,
                pg_db: st.pg_name(),
            }),
            Err(e) => failures.add(format!("{}: GET: the sample evaluation: {e:#}", st.label)),
        }
    }
    let mut gets = get::interleaved(&targets, s.connections, s.get_time, s.get_slices, &failures)
        .await
        .into_iter();
    let mut results = Vec::new();
    for (((st, sv), e2e), e2e_pg_cpu) in stores.iter().zip(&servers).zip(e2e).zip(e2e_pg_cpu) {
        let get = if targets.iter().any(|t| t.label == st.label) {
            gets.next()
        } else {
            None
        };
        let label = format!("{}, one process", st.label);
        let sse_local = sse::delays(&label, sv, s.sse_lines, &failures).await;
        results.push(StoreResult {
            label: st.label.clone(),
            shown: st.shown.clone(),
            postgres: st.is_postgres(),
            e2e,
            e2e_pg_cpu,
            get,
            sse_local,
            batch_local: None,
            batch_workers: None,
            e2e_workers: None,
            sse_workers: None,
        });
    }
    drop(named);
    // 4. SQLite's batch in one process, the others stopped.
    let mut sqlite_server = servers.remove(0);
    stop_all(servers.iter_mut().map(|s| &mut s.node));
    drop(servers);
    baselines.push((
        "before the one-process batch".into(),
        sandbox_batch("sandbox alone", &engine, &p2, &failures).await,
    ));
    let label = format!("{}: batch, serve --slots {SLOTS}", stores[0].label);
    let group = Group {
        what: "server",
        pids: vec![sqlite_server.pid()],
    };
    let report = batch_throughput(
        &label,
        &sqlite_server,
        &[group],
        &stores[0],
        SLOTS,
        s.evaluations,
        &failures,
    )
    .await?;
    results[0].batch_local = Some(Batch {
        report,
        topology: format!("serve --slots {SLOTS}"),
        before: baselines.len() - 1,
        after: baselines.len(),
    });
    sqlite_server.node.stop();
    drop(sqlite_server);

    // 4-5. An API node and worker processes per store, one store after the other.
    for (st, result) in stores.iter().zip(&mut results) {
        baselines.push((
            format!("before {}'s workers batch", st.label),
            sandbox_batch("sandbox alone", &engine, &p2, &failures).await,
        ));
        let topology = format!(
            "API + {} workers x {} slot{}",
            s.workers,
            s.worker_slots,
            if s.worker_slots == 1 { "" } else { "s" }
        );
        measure_workers(
            st,
            result,
            &config(st),
            &s,
            &topology,
            baselines.len(),
            &failures,
        )
        .await?;
    }
    baselines.push((
        "at the end".into(),
        sandbox_batch("sandbox alone", &engine, &p2, &failures).await,
    ));
    drop(engine);

    let m = Measured {
        hello,
        baselines,
        stores: results,
        load_start,
        load_end: loadavg(),
    };
    let host = json!({
        "python": command_version("/usr/bin/python3", &["--version"]),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runtime_version": runtime.find().map(|p| command_version(&p.display().to_string(), &["--version"])),
        "postgres_version": (!pg.is_empty()).then(|| command_version("psql", &["--version"])),
        "loadavg_1m_start": m.load_start,
        "loadavg_1m_end": m.load_end,
    });
    let (table, json) = report::report(&m, &s, args.quick, runtime, &failures, host);
    if !args.json {
        print!("{table}");
    }
    println!(
        "{}",
        serde_json::to_string(&json).expect("JSON of plain values")
    );
    // The databases are dropped here (every node is stopped).
    drop(stores);

    let all = failures.all();
    if all.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\n{} failure(s):", all.len());
        for f in all.iter().take(MAX_PRINTED_FAILURES) {
            eprintln!("  - {f}");
        }
        if all.len() > MAX_PRINTED_FAILURES {
            eprintln!("  … and {} more", all.len() - MAX_PRINTED_FAILURES);
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The batch, the live-output delay across nodes and the end-to-end latency on an API node
/// (`serve --slots 0`, the store's data folder: its admin key) and worker processes.
async fn measure_workers(
    st: &BenchStore,
    result: &mut StoreResult,
    cfg: &NodeConfig,
    s: &Settings,
    topology: &str,
    baseline: usize,
    failures: &Failures,
) -> Result<()> {
    let mut api = Server::start(
        &format!("{}: serve --slots 0", st.label),
        cfg,
        0,
        &st.data(),
    )?;
    let mut workers = Vec::new();
    for w in 0..s.workers {
        let name = format!("{}: worker {}", st.label, w + 1);
        let dir: &Path = &st.dir.join(format!("worker-{}", w + 1));
        workers.push(start_worker(&name, cfg, s.worker_slots, dir)?);
    }
    let groups = [
        Group {
            what: "api",
            pids: vec![api.pid()],
        },
        Group {
            what: "workers",
            pids: workers.iter().map(|w| w.pid()).collect(),
        },
    ];
    let label = format!("{}: batch, {topology}", st.label);
    let slots = s.workers * s.worker_slots;
    let report =
        batch_throughput(&label, &api, &groups, st, slots, s.evaluations, failures).await?;
    result.batch_workers = Some(Batch {
        report,
        topology: topology.to_string(),
        before: baseline - 1,
        after: baseline,
    });
    let label = format!("{}, API node + workers", st.label);
    result.sse_workers = Some(sse::delays(&label, &api, s.sse_lines, failures).await);
    let label = format!("{}: end to end, API node + workers", st.label);
    result.e2e_workers =
        Some(latency::end_to_end(&label, &api, s.remote_runs, s.warmup.min(2), failures).await);
    stop_all(std::iter::once(&mut api.node).chain(workers.iter_mut()));
    Ok(())
}
