//! What `assay serve` and `assay worker` share: their flags (data folder, store, settings file,
//! workers), the operator settings, the worker pool over a sandbox engine, and the signals that
//! stop them.

use crate::args::{EngineArgs, StoreArgs, duration_arg};
use anyhow::Result;
use assay_domain::RetryPolicy;
use assay_sandbox::{CancellationToken, Engine, Sandbox};
use assay_server::settings::Settings;
use assay_store::bus::LocalBus;
use assay_store::{ClaimPolicy, Store};
use assay_worker::{Worker, WorkerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a node's files and store are, and its settings file.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Settings file (TOML): quotas, JWT issuer, CORS. See docs/configuration.md.
    #[arg(long = "config", env = "ASSAY_CONFIG")]
    pub config: Option<PathBuf>,
}

impl NodeArgs {
    /// The operator settings (file and `ASSAY_<SECTION>__<KEY>`), their quotas checked.
    pub fn settings(&self) -> Result<Settings> {
        let settings = crate::server_settings::load(self.config.as_deref())?;
        settings.quotas.validate()?;
        Ok(settings)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Concurrent runs in this process (default: the number of cores; 0 = none).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Lease length; a worker that stops heartbeating for this long loses its job to another.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub lease: Duration,
    /// On SIGTERM, how long running evaluations may go on before they are handed back.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub grace: Duration,
    /// Attempts for platform failures before an evaluation is dead-lettered.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl WorkerArgs {
    /// The retry policy of this node (the API stamps it on new evaluations; workers apply it).
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// Starts the workers on `store` (none with `--slots 0`), stopped by `shutdown`.
    pub async fn start(
        &self,
        store: Arc<dyn Store>,
        // Output to the blob store is not switched on yet: the API does not serve it (issue 9).
        blobs: Option<assay_blob::Blobs>,
        bus: LocalBus,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        let defaults = WorkerConfig::default();
        let slots = self.slots.unwrap_or(defaults.slots);
        if slots == 0 {
            return Ok(None);
        }
        let sandbox: Arc<dyn Sandbox> = Arc::new(Engine::new(self.engine.config()?).await?);
        let cfg = WorkerConfig {
            slots,
            lease: self.lease,
            grace: self.grace,
            retry: self.retry(),
            claim: ClaimPolicy::from(&settings.quotas),
            ..defaults
        };
        let runtime = sandbox.runtime_name().to_string();
        let mut worker = Worker::new(store, sandbox, bus, cfg);
        if let Some(blobs) = blobs {
            worker = worker.with_blobs(blobs);
        }
        eprintln!(
            "assay: worker {} with {slots} slots on {runtime} (state {})",
            worker.id(),
            self.engine.state_dir.display()
        );
        Ok(Some(tokio::spawn(worker.run(shutdown))))
    }
}

/// SIGTERM or SIGINT.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
