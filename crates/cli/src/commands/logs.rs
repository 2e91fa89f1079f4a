//! `assay logs`: an evaluation's output (stdout to stdout, stderr to stderr), or `-f` until it
//! ends.

use crate::events::{StreamMode, follow};
use crate::http::Api;
use crate::render::{err_write, out_write};
use anyhow::Result;
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
    if a.follow {
        follow(api, &a.id, StreamMode::UntilResult, true).await?;
        return Ok(0);
    }
    let e = api.evaluation(&a.id).await?;
    let terminal = e.status.is_terminal();
    let mode = if terminal {
        StreamMode::UntilResult
    } else {
        StreamMode::UntilIdle(LOGS_IDLE)
    };
    let outcome = follow(api, &a.id, mode, true).await?;
    if terminal && !outcome.saw_output {
        // A server that keeps no event history: the result still has the output.
        let last = outcome.result.unwrap_or(e);
        if let Some(r) = &last.result {
            out_write(r.stdout.as_bytes())?;
            err_write(r.stderr.as_bytes())?;
        }
    }
    Ok(0)
}
