//! `assay keys create|list|revoke`: API keys through the API's `/v1/keys` (an admin key).

use crate::args::{duration_arg, rfc3339_arg, role_arg};
use crate::http::{Api, REQUEST_TIMEOUT};
use crate::render::{announce_key, err_write, out_write, print_json, short_time, table};
use anyhow::{Context, Result};
use assay_api::Role;
use assay_api::keys::{CreateKeyRequest, KeyList, KeyListParams, KeyState, KeyView, NewKeyView};
use assay_api::time::rfc3339;
use assay_store::now_millis;
use reqwest::Method;
use std::time::Duration;

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
        #[arg(long, value_parser = role_arg())]
        role: Role,
        /// A name to recognise the key by (1 to 100 characters).
        #[arg(long)]
        name: String,
        /// Expire this long from now, e.g. 30d or 12h [default: never].
        #[arg(long, value_name = "DURATION", value_parser = duration_arg, conflicts_with = "expires_at")]
        expires_in: Option<Duration>,
        /// Expire at this time (RFC 3339, e.g. 2030-01-31T00:00:00Z) [default: never].
        #[arg(long, value_name = "TIME", value_parser = rfc3339_arg)]
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
        /// Print the JSON (`{"items": [...]}`).
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

pub async fn run(cmd: KeysCommand, api: &Api) -> Result<u8> {
    match cmd {
        KeysCommand::Create {
            tenant,
            role,
            name,
            expires_in,
            expires_at,
            json,
        } => {
            let expires_at = match expires_in {
                Some(d) => {
                    let at = i64::try_from(d.as_millis())
                        .ok()
                        .and_then(|ms| now_millis().checked_add(ms))
                        .context("--expires-in: too far in the future")?;
                    Some(rfc3339(at))
                }
                None => expires_at,
            };
            let body = CreateKeyRequest {
                tenant,
                role: role.as_str().to_string(),
                name,
                expires_at,
            };
            let k: NewKeyView = api
                .call(
                    api.req(Method::POST, &["v1", "keys"])
                        .json(&body)
                        .timeout(REQUEST_TIMEOUT),
                )
                .await?;
            if json {
                print_json(&k)?;
            } else {
                announce_key(&k)?;
            }
        }
        KeysCommand::List { tenant, json } => {
            let list: KeyList = api
                .call_with(Method::GET, &["v1", "keys"], &KeyListParams { tenant })
                .await?;
            if json {
                print_json(&list)?;
            } else if list.items.is_empty() {
                err_write(b"no keys\n")?;
            } else {
                out_write(render_keys(&list.items).as_bytes())?;
            }
        }
        KeysCommand::Revoke { id, json } => {
            let k: KeyView = api
                .call(
                    api.req(Method::DELETE, &["v1", "keys", &id])
                        .timeout(REQUEST_TIMEOUT),
                )
                .await?;
            if json {
                print_json(&k)?;
            } else {
                let at = k
                    .revoked_at
                    .as_deref()
                    .map(|t| format!(" at {} UTC", short_time(t)))
                    .unwrap_or_default();
                out_write(format!("{}: revoked{at}\n", k.id).as_bytes())?;
            }
        }
    }
    Ok(0)
}

fn state_name(s: KeyState) -> &'static str {
    match s {
        KeyState::Active => "active",
        KeyState::Expired => "expired",
        KeyState::Revoked => "revoked",
    }
}

/// `assay keys list`: a table.
fn render_keys(items: &[KeyView]) -> String {
    let time = |t: &Option<String>| t.as_deref().map_or("-".to_string(), short_time);
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|k| {
            [
                k.id.clone(),
                k.tenant.clone(),
                k.role.to_string(),
                state_name(k.state).to_string(),
                short_time(&k.created_at),
                time(&k.expires_at),
                time(&k.last_used_at),
                k.name.clone(),
            ]
        })
        .collect();
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
    table(header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_never_needs_the_secret() {
        let items = vec![
            KeyView {
                id: "key_1".into(),
                name: "ci runner".into(),
                tenant: "acme".into(),
                role: Role::Member,
                state: KeyState::Active,
                created_at: "2030-01-02T03:04:05.000Z".into(),
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            },
            KeyView {
                id: "key_22".into(),
                name: "old".into(),
                tenant: "ops".into(),
                role: Role::Admin,
                state: KeyState::Revoked,
                created_at: "2030-01-01T00:00:00.000Z".into(),
                expires_at: None,
                revoked_at: Some("2030-01-03T00:00:00Z".into()),
                last_used_at: None,
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
