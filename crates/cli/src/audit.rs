//! `assay audit verify|export`: the audit log from the command line.
//!
//! `verify` is offline: it opens the data folder's database (through the store, as the server
//! does) and checks the whole hash chain; exit status 1 on a break. `export` prints entries as
//! JSON Lines, oldest first: from a running server with an admin key (`GET /v1/audit`, like the
//! other client commands), or offline from a data folder with `--data`. Both print the same
//! objects (the API's `AuditEntryView`).

use crate::client::{Api, Connection, REQUEST_TIMEOUT, connect, out_write, report};
use anyhow::{Context, Result, bail};
use assay_server::audit::AuditEntryView;
use assay_server::view::parse_time;
use assay_store::{AuditFilter, AuditOutcome, Store};
use assay_store_sqlite::SqliteStore;
use reqwest::Method;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Entries per request or query while exporting.
const PAGE: u32 = 1000;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit log's hash chain (offline, on a data folder): every entry's hash, every
    /// link, no entry missing, the newest ones included. Exit status 1 on a break.
    Verify {
        /// Data folder of the server (holds assay.db).
        #[arg(long = "data", default_value = "./assay-data", env = "ASSAY_DATA")]
        data: PathBuf,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print audit entries as JSON Lines (one object per line), oldest first.
    ///
    /// From the server (with an admin key, like other client commands), or with --data straight
    /// from a data folder (no server, no key).
    Export {
        /// Read this data folder's database instead of asking a server.
        #[arg(long = "data", value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(flatten)]
        filter: ExportFilter,
    },
}

#[derive(clap::Args, Debug, Default)]
pub struct ExportFilter {
    /// Only calls by this key id.
    #[arg(long)]
    actor: Option<String>,
    /// Only calls by this tenant's keys.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this action (e.g. evaluation.submit, key.revoke, auth.failed).
    #[arg(long)]
    action: Option<String>,
    /// Only this outcome.
    #[arg(long, value_parser = ["ok", "denied", "error"])]
    outcome: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    after: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    before: Option<String>,
}

pub async fn run(cmd: AuditCommand, conn: &Connection) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { data, json } => verify(&data, json).await,
        AuditCommand::Export {
            data: Some(data),
            filter,
        } => {
            let store = open(&data).await?;
            report(export_offline(&store, &filter).await)
        }
        AuditCommand::Export { data: None, filter } => {
            let api = connect(conn)?;
            report(export_http(&api, &filter).await)
        }
    }
}

/// The data folder's store; never creates a database where there is none.
async fn open(data: &Path) -> Result<SqliteStore> {
    let db = data.join("assay.db");
    if !db.is_file() {
        bail!(
            "no database at {} (is --data the server's data folder?)",
            db.display()
        );
    }
    SqliteStore::open(&db)
        .await
        .with_context(|| format!("opening {}", db.display()))
}

async fn verify(data: &Path, json: bool) -> Result<ExitCode> {
    let store = open(data).await?;
    let v = store
        .verify_audit()
        .await
        .context("reading the audit log")?;
    store.close().await;
    if json {
        out_write(format!("{}\n", serde_json::to_string(&v)?).as_bytes())?;
    } else {
        let text = match &v.broken {
            None => format!(
                "audit log OK: {} entries, chain intact (head: entry {}, hash {})\n",
                v.entries, v.head_seq, v.head_hash
            ),
            Some(b) => format!(
                "audit log BROKEN at entry {}: {b}\n({} entries before it are intact)\n",
                b.seq(),
                v.entries
            ),
        };
        out_write(text.as_bytes())?;
    }
    Ok(if v.broken.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_line(e: &AuditEntryView) -> Result<()> {
    out_write(format!("{}\n", serde_json::to_string(e)?).as_bytes())?;
    Ok(())
}

async fn export_offline(store: &SqliteStore, f: &ExportFilter) -> Result<u8> {
    let time = |s: &Option<String>, flag: &str| -> Result<Option<i64>> {
        s.as_deref()
            .map(|t| parse_time(t).with_context(|| format!("--{flag}: not an RFC 3339 time")))
            .transpose()
    };
    let mut filter = AuditFilter {
        actor: f.actor.clone(),
        tenant: f.tenant.clone(),
        action: f.action.clone(),
        target: None,
        outcome: f.outcome.as_deref().and_then(AuditOutcome::parse),
        after: time(&f.after, "after")?,
        before: time(&f.before, "before")?,
        oldest_first: true,
        cursor: None,
        limit: PAGE,
    };
    loop {
        let page = store.list_audit(&filter).await?;
        for e in &page.items {
            print_line(&AuditEntryView::from(e))?;
        }
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => return Ok(0),
        }
    }
}

async fn export_http(api: &Api, f: &ExportFilter) -> Result<u8> {
    #[derive(Deserialize)]
    struct Page {
        items: Vec<AuditEntryView>,
        #[serde(default)]
        next_cursor: Option<String>,
    }
    let mut query: Vec<(&str, String)> = vec![("order", "oldest".into())];
    for (name, v) in [
        ("actor", &f.actor),
        ("tenant", &f.tenant),
        ("action", &f.action),
        ("outcome", &f.outcome),
        ("after", &f.after),
        ("before", &f.before),
    ] {
        if let Some(v) = v {
            query.push((name, v.clone()));
        }
    }
    query.push(("limit", PAGE.to_string()));
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(c) = cursor.take() {
            q.push(("cursor", c));
        }
        let (_, page): (_, Page) = api
            .call_as(
                api.req(Method::GET, &["v1", "audit"])
                    .query(&q)
                    .timeout(REQUEST_TIMEOUT),
            )
            .await?;
        for e in &page.items {
            print_line(e)?;
        }
        match page.next_cursor.filter(|c| !c.is_empty()) {
            Some(c) => cursor = Some(c),
            None => return Ok(0),
        }
    }
}
