//! `assay worker`: workers alone, against the same store as a server.

use crate::node::{NodeArgs, WorkerArgs, terminated};
use anyhow::{Context, Result};
use assay_sandbox::CancellationToken;
use assay_store::bus::LocalBus;

#[derive(clap::Args, Debug)]
pub struct WorkerCommandArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

pub async fn run(a: WorkerCommandArgs) -> Result<()> {
    // A worker applies the running caps (`[quotas]`); the rest of the settings is the API's.
    let settings = a.node.settings()?;
    let bus = LocalBus::new();
    let store = crate::store::open_node(&a.node.store.url(), &bus).await?;
    let blobs = crate::store::open_blobs(&a.node.store.blob_url()?).await?;
    let shutdown = CancellationToken::new();
    let task = a
        .worker
        .start(store, Some(blobs), bus, &settings, shutdown.clone())
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
