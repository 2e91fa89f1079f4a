//! `assay run`: one program in a fresh sandbox on this host, its output live, then the result.
//! `--json` prints exactly one object, the API's `RunResultView` (a contract).

use crate::args::{EngineArgs, LimitArgs};
use crate::render::{exit_code_for, print_footer, print_json_line, summary_line};
use anyhow::{Context, Result};
use assay_api::evaluation::RunResultView;
use assay_domain::{LimitPolicy, OutputStream, Program};
use assay_sandbox::{CancellationToken, Engine, RunEvent, RunRequest};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The program (a Python file).
    file: PathBuf,
    /// File whose content is the program's stdin.
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// Environment to run in.
    #[arg(long, default_value = "python")]
    env: String,
    /// Print exactly one JSON object (the result) on stdout, nothing else.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
    /// Arguments passed to the program.
    #[arg(last = true)]
    args: Vec<String>,
    // Last: a help heading carries on to the flags declared after it.
    #[command(flatten, next_help_heading = "Limits")]
    limits: LimitArgs,
}

/// 0: succeeded; 1: the program did not succeed; 3: the platform failed (errored).
pub async fn run(a: RunArgs) -> Result<ExitCode> {
    let code = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let limits = LimitPolicy::default().resolve(&a.limits.overrides()?)?;
    let stdin = match &a.stdin {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => Vec::new(),
    };
    let engine = Engine::new(a.engine.config()?).await?;
    let req = RunRequest {
        program: Program::single(code),
        environment: a.env,
        args: a.args,
        stdin,
        limits,
        retain_output: None,
        output_budget: None,
    };
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let json = a.json;
    let printer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let RunEvent::Output { stream, data } = ev {
                if json {
                    continue;
                }
                let _ = match stream {
                    OutputStream::Stdout => std::io::stdout()
                        .write_all(&data)
                        .and_then(|_| std::io::stdout().flush()),
                    OutputStream::Stderr => std::io::stderr().write_all(&data),
                };
            }
        }
    });
    let result = RunResultView::from(engine.run(req, Some(tx), cancel).await);
    printer.await.ok();
    if json {
        print_json_line(&result)?;
    } else {
        print_footer(
            &summary_line(result.status.as_str(), Some(&result)),
            result.error.as_deref(),
        )?;
    }
    Ok(ExitCode::from(exit_code_for(result.status.into())))
}
