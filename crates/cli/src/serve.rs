//! `assay serve` (API + workers in one process) and `assay worker` (workers alone), wired from
//! the library crates with embedded defaults: SQLite in `<data>/assay.db`.

use crate::EngineArgs;
use anyhow::{Context, Result};
use assay_domain::{LimitPolicy, QuotaPolicy, RetryPolicy};
use assay_sandbox::{CancellationToken, Engine};
use assay_server::AppState;
use assay_store::bus::LocalBus;
use assay_store::{ClaimPolicy, Store};
use assay_store_sqlite::SqliteStore;
use assay_worker::{Worker, WorkerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// Data folder: the SQLite database and the admin key live here.
    #[arg(long = "data", default_value = "./assay-data", env = "ASSAY_DATA")]
    pub data: PathBuf,
    /// Settings file (TOML): quotas, JWT issuer, CORS. See docs/configuration.md.
    #[arg(long = "config", env = "ASSAY_CONFIG")]
    pub config: Option<PathBuf>,
}

impl DataArgs {
    pub fn settings(&self) -> Result<assay_server::settings::Settings> {
        crate::config::load(self.config.as_deref())
    }
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Concurrent runs in this process (default: the number of cores; 0 = none).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Lease length; a worker that stops heartbeating for this long loses its job to another.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// On SIGTERM, how long running evaluations may go on before they are handed back.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Attempts for platform failures before an evaluation is dead-lettered.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    assay_domain::parse_duration(s).map_err(|e| e.to_string())
}

async fn open_store(data: &Path) -> Result<Arc<SqliteStore>> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let db = data.join("assay.db");
    let store = SqliteStore::open(&db)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    Ok(Arc::new(store))
}

fn retry(args: &WorkerArgs) -> RetryPolicy {
    RetryPolicy {
        max_attempts: args.max_attempts.max(1),
        ..RetryPolicy::default()
    }
}

async fn start_worker(
    store: Arc<dyn Store>,
    bus: LocalBus,
    args: &WorkerArgs,
    quotas: &QuotaPolicy,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let defaults = WorkerConfig::default();
    let slots = args.slots.unwrap_or(defaults.slots);
    if slots == 0 {
        return Ok(None);
    }
    let engine = Engine::new(args.engine.config()?).await?;
    let cfg = WorkerConfig {
        slots,
        lease: args.lease,
        grace: args.grace,
        retry: retry(args),
        claim: ClaimPolicy::from(quotas),
        ..defaults
    };
    eprintln!(
        "assay: worker {} with {} slots on {} (state {})",
        cfg.id,
        slots,
        engine.runtime(),
        args.engine.state_dir.display()
    );
    let worker = Worker::new(store, engine, bus, cfg);
    Ok(Some(tokio::spawn(worker.run(shutdown))))
}

/// SIGTERM or SIGINT.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub async fn serve(listen: SocketAddr, data: DataArgs, worker: WorkerArgs) -> Result<()> {
    let settings = Arc::new(data.settings()?);
    settings.quotas.validate()?;
    assay_server::http::check(&settings.http)?;
    let jwt = match &settings.jwt {
        Some(j) => {
            let v = Arc::new(assay_server::jwt::JwtVerifier::new(j)?);
            v.prime().await;
            eprintln!("assay: accepting JWTs from issuer {:?}", j.issuer);
            Some(v)
        }
        None => None,
    };
    let store = open_store(&data.data).await?;
    if let Some(key) = &settings.admin.key {
        // Before the bootstrap: with an operator key, no admin.key file is generated.
        match assay_server::install_operator_admin_key(store.as_ref(), key.expose())
            .await
            .map_err(anyhow::Error::msg)?
        {
            Some(id) => eprintln!("assay: installed the configured admin key as {id}"),
            None => eprintln!("assay: the configured admin key is installed"),
        }
    }
    match assay_server::bootstrap_admin_key(store.as_ref(), &data.data)
        .await
        .map_err(anyhow::Error::msg)?
    {
        Some(path) => eprintln!(
            "assay: created an admin API key; it is in {} (mode 0600)",
            path.display()
        ),
        None if settings.admin.key.is_some() => {}
        None => eprintln!(
            "assay: API keys exist; the first admin key was written to {} on first start",
            data.data.join("admin.key").display()
        ),
    }
    let bus = LocalBus::new();
    let shutdown = CancellationToken::new();
    let store_dyn: Arc<dyn Store> = store.clone();
    let worker_task = start_worker(
        store_dyn.clone(),
        bus.clone(),
        &worker,
        &settings.quotas,
        shutdown.clone(),
    )
    .await?;
    let state = AppState {
        store: store_dyn,
        bus,
        limits: LimitPolicy::default(),
        retry: retry(&worker),
        settings,
        jwt,
        quota: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port (with --listen 127.0.0.1:0).
    println!("assay: listening on http://{addr}");
    let app = assay_server::router(state);
    let stop = shutdown.clone();
    // With the peer's address: the audit log records it as each call's source.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        terminated().await;
        eprintln!("assay: shutting down: no new work is claimed; running evaluations finish or are handed back");
        stop.cancel();
    })
    .await?;
    shutdown.cancel();
    if let Some(t) = worker_task {
        let _ = t.await;
    }
    Ok(())
}

pub async fn worker(data: DataArgs, args: WorkerArgs) -> Result<()> {
    // A worker applies the running caps (`[quotas]`); the rest of the settings is the API's.
    let settings = data.settings()?;
    settings.quotas.validate()?;
    let store = open_store(&data.data).await?;
    let shutdown = CancellationToken::new();
    let task = start_worker(
        store,
        LocalBus::new(),
        &args,
        &settings.quotas,
        shutdown.clone(),
    )
    .await?
    .context("--slots 0: nothing to do")?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        terminated().await;
        eprintln!("assay: worker stopping: running evaluations finish or are handed back");
        stop.cancel();
    });
    task.await?;
    Ok(())
}
