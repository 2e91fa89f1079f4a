//! `assay gc --older-than 30d`: deletes, once, the evaluations that finished longer ago than
//! that, with their events and output blobs (offline: on a node's store, no server needed; a
//! server may be running on it). `assay serve` does the same on a schedule with `[retention]`;
//! both are `crate::retention`.

use crate::args::{StoreArgs, duration_arg};
use crate::render::out_write;
use crate::retention::{self, Swept};
use anyhow::Result;
use assay_sandbox::CancellationToken;
use assay_store::now_millis;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Delete evaluations that finished (any final status, dead letters included) longer ago
    /// than this, e.g. 30d or 12h. Queued and running evaluations are never deleted.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    older_than: Duration,
    /// Count what would be deleted (evaluations, and the output objects their results
    /// reference), delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(a: GcArgs) -> Result<()> {
    let before = retention::cutoff(now_millis(), a.older_than)?;
    let store = crate::store::open_existing(&a.store.url()).await?;
    if a.dry_run {
        let counted = retention::count(store.as_ref(), before).await;
        store.close().await;
        let text = format!(
            "would delete {}; nothing was deleted (--dry-run)\n",
            counted?.describe(before, a.older_than)
        );
        out_write(text.as_bytes())?;
        return Ok(());
    }
    let blobs = crate::store::open_blobs(&a.store.blob_url()?).await?;
    let mut swept = Swept::default();
    let result = retention::sweep(
        store.as_ref(),
        &blobs,
        before,
        &CancellationToken::new(),
        &mut swept,
    )
    .await;
    store.close().await;
    // What was done is said even when a step failed (then the error follows, exit status 2).
    let text = format!(
        "deleted {}; the audit log is kept\n",
        swept.describe(before, a.older_than)
    );
    out_write(text.as_bytes())?;
    result
}
