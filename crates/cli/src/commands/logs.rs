//! `assay logs`: an evaluation's output (stdout to stdout, stderr to stderr), or `-f` until it
//! ends. A finished evaluation's streams come whole and byte for byte from the output endpoint;
//! a live one's from its event stream (the first 64 KiB of each stream), then the rest.

use crate::events::{StreamMode, follow};
use crate::http::Api;
use crate::output::{write_rest, write_streams};
use anyhow::{Result, anyhow};
use std::time::Duration;

/// Without `--follow` on a live evaluation: the history is over once the stream has been quiet
/// this long.
const LOGS_IDLE: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Keep following until the evaluation ends.
    #[arg(long, short = 'f')]
    follow: bool,
    id: String,
}

pub async fn run(a: LogsArgs, api: &Api) -> Result<u8> {
    if !a.follow {
        let e = api.evaluation(&a.id).await?;
        if e.status.is_terminal() {
            write_streams(api, &a.id, [0, 0]).await?;
            return Ok(0);
        }
        // Live: what it wrote so far (the start of each stream), until the stream is quiet.
        let outcome = follow(api, &a.id, StreamMode::UntilIdle(LOGS_IDLE), true).await?;
        if let Some(done) = &outcome.result {
            write_rest(api, done, outcome.shown).await?;
        }
        return Ok(0);
    }
    let outcome = follow(api, &a.id, StreamMode::UntilResult, true).await?;
    let done = outcome
        .result
        .ok_or_else(|| anyhow!("the event stream ended without a result"))?;
    write_rest(api, &done, outcome.shown).await?;
    Ok(0)
}
