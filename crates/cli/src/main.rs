//! The `assay` command: parses the command line and hands it to the command's module.
#![forbid(unsafe_code)]

mod args;
mod audit_chain;
mod client_settings;
mod commands;
mod config;
mod events;
mod http;
mod node;
mod output;
mod program;
mod render;
mod retention;
mod server_settings;
mod store;

use anyhow::Result;
use clap::{Parser, Subcommand};
use commands::{
    admin, audit, batch, cancel, doctor, gc, get, keys, list, logs, openapi, run, serve,
    store_copy, submit, worker,
};
use std::process::ExitCode;

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
    conn: client_settings::Connection,
}

#[derive(Subcommand)]
enum Command {
    /// Run one program in a fresh sandbox, print its output live, then the result.
    Run(run::RunArgs),
    /// Run the API and workers in one process (by default SQLite in a local data folder).
    Serve(serve::ServeArgs),
    /// Run workers alone against the same store as a server.
    Worker(worker::WorkerCommandArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Offline administration of a node's store (no server, no key needed).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The audit log: verify its hash chain (offline), export it as JSON Lines.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Move an installation to another store (e.g. from SQLite to PostgreSQL).
    #[command(subcommand)]
    Store(store_copy::StoreCommand),
    /// Delete evaluations that finished longer ago than --older-than, with their events and
    /// output blobs (the audit log is kept). `assay serve` can do it on a schedule: see
    /// `[retention]` in docs/configuration.md.
    Gc(gc::GcArgs),
    /// Print the OpenAPI document of the HTTP API (committed as docs/openapi.json).
    Openapi,
    /// Check that this host can run sandboxes, and say what to fix.
    Doctor(doctor::DoctorArgs),
}

/// Commands that talk to an Assay server over its HTTP API.
#[derive(Subcommand)]
enum ClientCommand {
    /// Submit a program to the server; print its id, or wait for (or follow) its result.
    Submit(submit::SubmitArgs),
    /// Print an evaluation's output (stdout to stdout, stderr to stderr).
    Logs(logs::LogsArgs),
    /// Show one evaluation.
    Get(get::GetArgs),
    /// List evaluations, newest first.
    List(list::ListArgs),
    /// Cancel an evaluation (queued: at once; running: its sandbox is killed).
    Cancel(cancel::CancelArgs),
    /// Submit many programs: every *.py file of a directory, or one submission per line of a
    /// JSONL file.
    Batch(batch::BatchArgs),
    /// Manage API keys (needs an admin key): create, list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
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
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("assay: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let done = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::Run(a) => run::run(a).await,
        Command::Serve(a) => serve::run(a).await.map(done),
        Command::Worker(a) => worker::run(a).await.map(done),
        Command::Client(c) => {
            let api = http::connect(&cli.conn)?;
            http::report(match c {
                ClientCommand::Submit(a) => submit::run(a, &api).await,
                ClientCommand::Logs(a) => logs::run(a, &api).await,
                ClientCommand::Get(a) => get::run(a, &api).await,
                ClientCommand::List(a) => list::run(a, &api).await,
                ClientCommand::Cancel(a) => cancel::run(a, &api).await,
                ClientCommand::Batch(a) => batch::run(a, &api).await,
                ClientCommand::Keys(c) => keys::run(c, &api).await,
            })
        }
        Command::Admin(c) => admin::run(c).await.map(done),
        Command::Audit(c) => audit::run(c, &cli.conn).await,
        Command::Store(c) => store_copy::run(c).await.map(done),
        Command::Gc(a) => gc::run(a).await.map(done),
        Command::Openapi => {
            openapi::run();
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(a) => Ok(doctor::run(a).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("assay").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        // Global flags go anywhere; a server's --config is its settings file.
        let cli = parse(&["submit", "x.py", "--key", "k1", "--config", "c.toml"]);
        assert_eq!(cli.conn.key.as_deref(), Some("k1"));
        assert_eq!(cli.conn.config, Some("c.toml".into()));
        assert!(matches!(
            parse(&["logs", "-f", "ev1"]).command,
            Command::Client(ClientCommand::Logs(_))
        ));
        assert!(matches!(
            parse(&["serve", "--config", "s.toml"]).command,
            Command::Serve(_)
        ));
        // Moving and pruning an installation.
        assert!(matches!(
            parse(&[
                "store",
                "copy",
                "--from",
                "sqlite:///a.db",
                "--to",
                "postgres://u@h/db"
            ])
            .command,
            Command::Store(_)
        ));
        assert!(matches!(
            parse(&["gc", "--older-than", "30d", "--dry-run"]).command,
            Command::Gc(_)
        ));
        assert!(
            Cli::try_parse_from(["assay", "gc"]).is_err(),
            "--older-than is required"
        );
        // The limit flags of every command that runs programs.
        for cmd in ["run", "submit", "batch"] {
            let cli = Cli::try_parse_from([
                "assay",
                cmd,
                "x",
                "--timeout",
                "1s",
                "--cpu-time",
                "1s",
                "--memory",
                "1MiB",
                "--output",
                "1KiB",
                "--pids",
                "2",
            ]);
            assert!(cli.is_ok(), "{cmd}: {:?}", cli.err());
        }
    }
}
