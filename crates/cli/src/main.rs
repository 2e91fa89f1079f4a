//! The `assay` command.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use assay_domain::{
    LimitOverrides, LimitPolicy, OutputStream, Program, RunResult, RunStatus, format_size,
};
use assay_sandbox::doctor::{self, Level};
use assay_sandbox::{
    CancellationToken, Engine, EngineConfig, Environment, RunEvent, RunRequest, RuntimeChoice,
};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

mod audit;
mod client;
mod config;
mod keys;
mod serve;

#[derive(Parser)]
#[command(
    name = "assay",
    version,
    about = "Run untrusted code in single-use sandboxes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: client::Connection,
}

#[derive(clap::Args)]
pub struct EngineArgs {
    /// OCI runtime: runc, crun, runsc (gVisor) or auto (the strongest installed).
    #[arg(long, default_value = "auto", env = "ASSAY_RUNTIME")]
    pub runtime: RuntimeChoice,
    /// Where sandbox bundles and runtime state live (best on a tmpfs).
    #[arg(long, default_value = "/run/assay", env = "ASSAY_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Register an extra environment: NAME=DIR:COMMAND, where DIR is a root file system or an
    /// unpacked OCI image and COMMAND the interpreter inside it (e.g. py=/srv/img:/usr/bin/python3).
    #[arg(long = "register-env", value_name = "NAME=DIR:COMMAND")]
    register_env: Vec<String>,
}

impl EngineArgs {
    pub fn config(&self) -> Result<EngineConfig> {
        let mut environments = vec![Environment::python()];
        for spec in &self.register_env {
            let (name, rest) = spec
                .split_once('=')
                .with_context(|| format!("--register-env {spec:?}: expected NAME=DIR:COMMAND"))?;
            let (dir, command) = rest
                .split_once(':')
                .with_context(|| format!("--register-env {spec:?}: expected NAME=DIR:COMMAND"))?;
            let command = command.split_whitespace().map(String::from).collect();
            environments.push(Environment::from_dir(name, &PathBuf::from(dir), command)?);
        }
        Ok(EngineConfig {
            runtime: self.runtime,
            state_dir: self.state_dir.clone(),
            environments,
            ..EngineConfig::default()
        })
    }
}

#[derive(Subcommand)]
// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run one program in a fresh sandbox, print its output live, then the result.
    Run {
        /// The program (a Python file).
        file: PathBuf,
        /// Wall-clock limit, e.g. 3s or 500ms.
        #[arg(long)]
        timeout: Option<String>,
        /// CPU-time limit, e.g. 2s.
        #[arg(long)]
        cpu_time: Option<String>,
        /// Memory limit, e.g. 256MiB.
        #[arg(long)]
        memory: Option<String>,
        /// Output limit per stream, e.g. 1MiB.
        #[arg(long)]
        output: Option<String>,
        /// Maximum number of processes and threads.
        #[arg(long)]
        pids: Option<u32>,
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
    },
    /// Run the API and workers in one process (SQLite and a local data folder).
    Serve {
        /// Address to listen on (`127.0.0.1:0` picks a free port and prints it).
        #[arg(long, default_value = "127.0.0.1:8080", env = "ASSAY_LISTEN")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        data: serve::DataArgs,
        #[command(flatten)]
        worker: serve::WorkerArgs,
    },
    /// Run workers alone against the same database as a server.
    Worker {
        #[command(flatten)]
        data: serve::DataArgs,
        #[command(flatten)]
        worker: serve::WorkerArgs,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Offline administration of a data folder (no server, no key needed).
    #[command(subcommand)]
    Admin(keys::AdminCommand),
    /// The audit log: verify its hash chain (offline), export it as JSON Lines.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print the OpenAPI document of the HTTP API (committed as docs/openapi.json).
    Openapi,
    /// Check that this host can run sandboxes, and say what to fix.
    Doctor {
        #[arg(long, default_value = "/run/assay", env = "ASSAY_STATE_DIR")]
        state_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("assay: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            file,
            timeout,
            cpu_time,
            memory,
            output,
            pids,
            stdin,
            env,
            json,
            engine,
            args,
        } => {
            let code = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let overrides: LimitOverrides =
                serde_json::from_value(serde_json::Value::Object(client::limits_json(
                    timeout.as_deref(),
                    cpu_time.as_deref(),
                    memory.as_deref(),
                    output.as_deref(),
                    pids,
                )?))?;
            let limits = LimitPolicy::default().resolve(&overrides)?;
            let stdin = match stdin {
                Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                None => Vec::new(),
            };
            let engine = Engine::new(engine.config()?).await?;
            let req = RunRequest {
                program: Program::single(code),
                environment: env,
                args,
                stdin,
                limits,
            };
            let cancel = CancellationToken::new();
            let ctrl_c = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    ctrl_c.cancel();
                }
            });
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
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
            let result = engine.run(req, Some(tx), cancel).await;
            printer.await.ok();
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                print_summary(&result);
            }
            Ok(exit_code_for(&result))
        }
        Command::Serve {
            listen,
            data,
            worker,
        } => {
            serve::serve(listen, data, worker).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { data, worker } => {
            serve::worker(data, worker).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(cmd) => client::run(cmd, &cli.conn).await,
        Command::Audit(cmd) => audit::run(cmd, &cli.conn).await,
        Command::Admin(cmd) => {
            keys::admin(cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            print!("{}", assay_server::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { state_dir } => {
            let checks = doctor::run_checks(&state_dir).await;
            let mut failed = false;
            for c in &checks {
                let tag = match c.level {
                    Level::Ok => "ok  ",
                    Level::Warn => "warn",
                    Level::Fail => {
                        failed = true;
                        "FAIL"
                    }
                };
                println!("[{tag}] {:<11} {}", c.name, c.detail);
                if !c.fix.is_empty() {
                    println!("       {:<11} fix: {}", "", c.fix);
                }
            }
            if failed {
                println!("\nSome checks failed: sandboxes cannot run until they are fixed.");
                Ok(ExitCode::from(1))
            } else {
                println!("\nThis host can run sandboxes.");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn print_summary(r: &RunResult) {
    let mut line = format!(
        "── {} · exit {} · wall {} ms · cpu {} ms · peak {} · {}",
        r.status,
        r.exit_code.map_or("-".into(), |c| c.to_string()),
        r.wall_ms,
        r.cpu_ms,
        format_size(r.peak_memory_bytes),
        r.runtime
    );
    if let Some(sig) = r.signal {
        line.push_str(&format!(" · signal {sig}"));
    }
    if r.stdout_truncated || r.stderr_truncated {
        line.push_str(" · output truncated");
    }
    eprintln!("{line}");
    if let Some(e) = &r.error {
        eprintln!("   error: {e}");
    }
}

/// 0: succeeded; 1: the program did not succeed; 3: the platform failed (errored).
fn exit_code_for(r: &RunResult) -> ExitCode {
    match r.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Errored => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}
