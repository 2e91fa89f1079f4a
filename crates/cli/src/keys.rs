//! API keys from the command line.
//!
//! `assay keys create|list|revoke` are client commands (the API's `/v1/keys`, with an admin
//! key, found like every client command's). `assay admin create-key` is the offline recovery:
//! it opens the data folder's database directly (through the store, as the server does) and
//! needs no key and no running server, so an operator who lost every admin key gets back in.

use crate::client::{Api, REQUEST_TIMEOUT, err_write, out_write, print_json, short_time};
use crate::serve::DataArgs;
use anyhow::{Context, Result, bail};
use assay_store::{Store, now_millis};
use assay_store_sqlite::SqliteStore;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

const ROLES: [&str; 3] = ["admin", "member", "viewer"];

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key and print it (the only time it is shown).
    ///
    /// The key goes alone to stdout (so that `KEY=$(assay keys create ...)` works), what it is
    /// to stderr. The server stores only its hash.
    Create {
        /// The tenant the key belongs to (a-z, 0-9, '-', '_', '.').
        #[arg(long)]
        tenant: String,
        /// admin: everything, every tenant; member: submit, read and cancel the tenant's
        /// evaluations; viewer: read them.
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// A name to recognise the key by (1 to 100 characters).
        #[arg(long)]
        name: String,
        /// Expire this long from now, e.g. 30d or 12h [default: never].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, conflicts_with = "expires_at")]
        expires_in: Option<Duration>,
        /// Expire at this time (RFC 3339, e.g. 2030-01-31T00:00:00Z) [default: never].
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// Print the new key as a JSON object (with the key in `key`).
        #[arg(long)]
        json: bool,
    },
    /// List API keys (never the keys themselves), oldest first.
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the raw JSON (`{"items": [...]}`).
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key: the next request with it is refused.
    Revoke {
        /// The key's id (`key_...`, as `keys list` shows it), not the key itself.
        id: String,
        /// Print the revoked key as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an API key offline, in a data folder's database (recovery), and print it.
    ///
    /// For when no admin key is left: needs no key and no server (it works whether or not
    /// `assay serve` runs on the folder), only write access to the folder.
    CreateKey {
        #[command(flatten)]
        data: DataArgs,
        /// The tenant the key belongs to.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The key's role.
        #[arg(long, default_value = "admin", value_parser = ROLES)]
        role: String,
        /// A name to recognise the key by.
        #[arg(long, default_value = "recovery")]
        name: String,
        /// Print the new key as a JSON object (with the key in `key`).
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    assay_domain::parse_duration(s).map_err(|e| e.to_string())
}

/// A key as the API lists it. Lenient, like the client's other views.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyInfo {
    id: String,
    /// Only in the answer to a creation.
    key: Option<String>,
    name: String,
    tenant: String,
    role: String,
    state: Option<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
}

/// The new key alone on stdout; what it is, and that it is shown only now, on stderr.
fn announce(k: &KeyInfo, secret: &str) -> Result<()> {
    out_write(format!("{secret}\n").as_bytes())?;
    let expires = k
        .expires_at
        .as_deref()
        .map_or("never".to_string(), |t| format!("{} UTC", short_time(t)));
    err_write(
        format!(
            "created key {} for tenant {} (role {}, name {:?}, expires {expires})\n\
             This is the only time the key is shown: it is stored hashed and cannot be \
             retrieved later. Keep it somewhere safe.\n",
            k.id, k.tenant, k.role, k.name
        )
        .as_bytes(),
    )?;
    Ok(())
}

/// Runs `assay keys ...`; API failures go back to `client::run`, which reports them.
pub(crate) async fn run(cmd: KeysCommand, api: &Api) -> Result<u8> {
    match cmd {
        KeysCommand::Create {
            tenant,
            role,
            name,
            expires_in,
            expires_at,
            json,
        } => {
            let expires_at = match (expires_in, expires_at) {
                (Some(d), _) => {
                    let t = SystemTime::now()
                        .checked_add(d)
                        .context("--expires-in: too far in the future")?;
                    Some(humantime::format_rfc3339_seconds(t).to_string())
                }
                (None, t) => t,
            };
            let mut body = json!({"tenant": tenant, "role": role, "name": name});
            if let Some(t) = expires_at {
                body["expires_at"] = json!(t);
            }
            let (raw, k): (Value, KeyInfo) = api
                .call_as(
                    api.req(Method::POST, &["v1", "keys"])
                        .json(&body)
                        .timeout(REQUEST_TIMEOUT),
                )
                .await?;
            let Some(secret) = k.key.clone().filter(|s| !s.is_empty()) else {
                bail!("the server's answer holds no key");
            };
            if json {
                print_json(&raw)?;
            } else {
                announce(&k, &secret)?;
            }
            Ok(0)
        }
        KeysCommand::List { tenant, json } => {
            let mut rb = api.req(Method::GET, &["v1", "keys"]);
            if let Some(t) = &tenant {
                rb = rb.query(&[("tenant", t)]);
            }
            #[derive(Deserialize)]
            struct List {
                items: Vec<KeyInfo>,
            }
            let (raw, list): (Value, List) = api.call_as(rb.timeout(REQUEST_TIMEOUT)).await?;
            if json {
                print_json(&raw)?;
            } else if list.items.is_empty() {
                err_write(b"no keys\n")?;
            } else {
                out_write(render_keys(&list.items).as_bytes())?;
            }
            Ok(0)
        }
        KeysCommand::Revoke { id, json } => {
            let (raw, k): (Value, KeyInfo) = api
                .call_as(
                    api.req(Method::DELETE, &["v1", "keys", &id])
                        .timeout(REQUEST_TIMEOUT),
                )
                .await?;
            if json {
                print_json(&raw)?;
            } else {
                let at = k
                    .revoked_at
                    .as_deref()
                    .map(|t| format!(" at {} UTC", short_time(t)))
                    .unwrap_or_default();
                out_write(format!("{}: revoked{at}\n", k.id).as_bytes())?;
            }
            Ok(0)
        }
    }
}

/// `assay keys list`: a table.
fn render_keys(items: &[KeyInfo]) -> String {
    let time = |t: &Option<String>| t.as_deref().map_or("-".to_string(), short_time);
    let header = [
        "ID",
        "TENANT",
        "ROLE",
        "STATE",
        "CREATED (UTC)",
        "EXPIRES (UTC)",
        "LAST USED (UTC)",
        "NAME",
    ];
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|k| {
            let state = k.state.clone().unwrap_or_else(|| {
                if k.revoked_at.is_some() {
                    "revoked".into()
                } else {
                    "-".into()
                }
            });
            [
                k.id.clone(),
                k.tenant.clone(),
                k.role.clone(),
                state,
                time(&k.created_at),
                time(&k.expires_at),
                time(&k.last_used_at),
                k.name.clone(),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = width[i].saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for r in &rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// `assay admin ...`: offline, on the data folder.
pub async fn admin(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::CreateKey {
            data,
            tenant,
            role,
            name,
            json,
        } => {
            let db = data.data.join("assay.db");
            if !db.is_file() {
                bail!(
                    "no Assay database at {} (--data must be the folder `assay serve` uses)",
                    db.display()
                );
            }
            let role = assay_server::parse_role(&role)?;
            let (secret, key) = assay_server::new_key(&tenant, role, &name, None, now_millis())?;
            let store = SqliteStore::open(&db)
                .await
                .with_context(|| format!("opening {}", db.display()))?;
            let created = store.create_key(&key).await;
            store.close().await;
            created.with_context(|| format!("storing the key in {}", db.display()))?;
            let view = assay_server::view::NewKeyView::new(&key, secret.clone());
            let raw = serde_json::to_value(&view)?;
            if json {
                print_json(&raw)?;
            } else {
                let k: KeyInfo = serde_json::from_value(raw)?;
                announce(&k, &secret)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: AdminCommand,
    }

    #[test]
    fn admin_command_line() {
        TestCli::command().debug_assert();
        let cli = TestCli::try_parse_from(["assay", "create-key", "--data", "/d"]).unwrap();
        let AdminCommand::CreateKey {
            data,
            tenant,
            role,
            name,
            json,
        } = cli.cmd;
        assert_eq!(data.data, std::path::PathBuf::from("/d"));
        assert_eq!(
            (tenant.as_str(), role.as_str(), name.as_str()),
            ("default", "admin", "recovery")
        );
        assert!(!json);
        assert!(TestCli::try_parse_from(["assay", "create-key", "--role", "root"]).is_err());
    }

    #[test]
    fn key_table_never_needs_the_secret() {
        let items = vec![
            KeyInfo {
                id: "key_1".into(),
                name: "ci runner".into(),
                tenant: "acme".into(),
                role: "member".into(),
                state: Some("active".into()),
                created_at: Some("2030-01-02T03:04:05.000Z".into()),
                ..KeyInfo::default()
            },
            KeyInfo {
                id: "key_22".into(),
                name: "old".into(),
                tenant: "ops".into(),
                role: "admin".into(),
                revoked_at: Some("2030-01-03T00:00:00Z".into()),
                ..KeyInfo::default()
            },
        ];
        let t = render_keys(&items);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ID      TENANT  ROLE    STATE"), "{t}");
        assert!(lines[1].contains("2030-01-02 03:04:05"), "{t}");
        assert!(lines[1].ends_with("ci runner"), "{t}");
        assert!(lines[2].contains("revoked"), "{t}");
    }
}
