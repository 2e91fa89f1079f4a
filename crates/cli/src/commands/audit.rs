//! `assay audit verify|export`: the audit log from the command line.
//!
//! `verify` is offline: it opens the node's store and checks the whole hash chain; exit status 1
//! on a break. `export` prints entries as JSON Lines, oldest first: from a running server with
//! an admin key (`GET /v1/audit`), or offline from a store (`--data` or `--store`). Both print
//! the API's `AuditEntryView`, with the same filter (`AuditParams`) turned into the store's by
//! the service's own `audit_filter`.

use crate::args::{StoreArgs, rfc3339_arg, store_url_arg};
use crate::audit_chain;
use crate::client_settings::Connection;
use crate::http::{Api, connect, report};
use crate::render::{out_write, print_json_line};
use anyhow::{Result, anyhow};
use assay_api::MAX_PAGE;
use assay_api::audit::{AuditPage, AuditParams};
use assay_service::queries::audit_filter;
use assay_service::views::audit_entry;
use assay_store::{Store, StoreUrl};
use reqwest::Method;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit log's hash chain (offline, on a node's store): every entry's hash, every
    /// link, no entry missing, the newest ones included. Exit status 1 on a break.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print audit entries as JSON Lines (one object per line), oldest first.
    ///
    /// From the server (with an admin key, like other client commands), or with --data or
    /// --store straight from a node's store (no server, no key).
    Export {
        /// Read this data folder's database instead of asking a server.
        #[arg(long = "data", value_name = "DIR", conflicts_with = "store")]
        data: Option<PathBuf>,
        /// Read this store instead of asking a server (sqlite://PATH).
        #[arg(long, value_name = "URL", value_parser = store_url_arg)]
        store: Option<StoreUrl>,
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
    #[arg(long, value_name = "TIME", value_parser = rfc3339_arg)]
    after: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = rfc3339_arg)]
    before: Option<String>,
}

impl ExportFilter {
    /// The first page's query: oldest first, largest pages.
    fn params(self) -> AuditParams {
        AuditParams {
            actor: self.actor,
            tenant: self.tenant,
            action: self.action,
            target: None,
            outcome: self.outcome,
            after: self.after,
            before: self.before,
            order: Some("oldest".into()),
            cursor: None,
            limit: Some(MAX_PAGE),
        }
    }
}

pub async fn run(cmd: AuditCommand, conn: &Connection) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { store, json } => verify(&store.url(), json).await,
        AuditCommand::Export {
            data,
            store,
            filter,
        } => {
            let offline = store.or_else(|| data.map(|d| StoreUrl::default_for(&d)));
            match offline {
                Some(url) => {
                    let store = crate::store::open_existing(&url).await?;
                    let exported = export_offline(store.as_ref(), filter.params()).await;
                    store.close().await;
                    report(exported)
                }
                None => report(export_http(&connect(conn)?, filter.params()).await),
            }
        }
    }
}

async fn verify(url: &StoreUrl, json: bool) -> Result<ExitCode> {
    let store = crate::store::open_existing(url).await?;
    let v = audit_chain::verify(store.as_ref()).await;
    store.close().await;
    let v = v?;
    if json {
        print_json_line(&v)?;
    } else {
        out_write(format!("{}\n", audit_chain::describe(&v)).as_bytes())?;
    }
    Ok(if v.broken.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn export_offline(store: &dyn Store, params: AuditParams) -> Result<u8> {
    let mut filter = audit_filter(params).map_err(|e| anyhow!("{}", e.message))?;
    loop {
        let page = store.list_audit(&filter).await?;
        for e in &page.items {
            print_json_line(&audit_entry(e))?;
        }
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => return Ok(0),
        }
    }
}

async fn export_http(api: &Api, mut params: AuditParams) -> Result<u8> {
    loop {
        let page: AuditPage = api
            .call_with(Method::GET, &["v1", "audit"], &params)
            .await?;
        for e in &page.items {
            print_json_line(e)?;
        }
        match page.next_cursor.filter(|c| !c.is_empty()) {
            Some(c) => params.cursor = Some(c),
            None => return Ok(0),
        }
    }
}
