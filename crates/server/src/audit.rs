//! The audit trail over HTTP: a request id on every answer, one audit entry per state-changing
//! call and per failed authentication, and `GET /v1/audit` (admin keys only).
//!
//! Three middlewares cooperate:
//! - [`request_id`] (around the whole app) makes a fresh id per request (a client's
//!   `X-Request-Id` is never trusted), puts it in the request's extensions and answers it in
//!   `X-Request-Id`.
//! - [`record`] (around every `/v1` route, outside authentication) writes the entry once the
//!   answer is known: actor (key id), tenant, action, target, outcome, HTTP status, the peer's
//!   address, the request id, the time. Unauthenticated calls that authentication refused are
//!   `auth.failed` (any method) with the refusal's reason and, at most, the first 6 hex digits
//!   of the SHA-256 of the presented credential (never the credential). Calls that only read
//!   are recorded only when refused (403, 429).
//! - [`expose_caller`] (inside authentication) hands the authenticated [`Caller`] to `record`
//!   through the response's extensions.
//!
//! Never recorded: request bodies, key secrets, query strings. An answer's body is read only
//! for errors (the stable error `code`; for failed authentications the fixed message) and for
//! the ids that `POST /v1/evaluations/batch` and `POST /v1/keys` created (`id` fields only).
//!
//! If the entry cannot be written, the call's answer is sent anyway and the failure is logged.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::view::{parse_time, rfc3339};
use assay_store::{AuditEntry, AuditFilter, AuditOutcome, NewAuditEntry, now_millis};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Error bodies larger than this are not read (their code is then not recorded).
const MAX_READ_BODY: usize = 4 << 20;
/// Longest target and detail recorded.
const MAX_FIELD: usize = 200;
/// Ids of a batch recorded in the entry's detail, at most.
const MAX_BATCH_IDS: usize = 1000;

/// The id of the request being served (`X-Request-Id` of its answer).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Middleware around the whole app: a new request id per request, answered in `X-Request-Id`.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req_{}", uuid::Uuid::new_v4().simple());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// Middleware inside authentication: passes the caller out to [`record`].
pub async fn expose_caller(req: Request, next: Next) -> Response {
    let caller = req.extensions().get::<Caller>().cloned();
    let mut resp = next.run(req).await;
    if let Some(c) = caller {
        resp.extensions_mut().insert(c);
    }
    resp
}

/// The action name of a call: `<resource>.<verb>` for the known routes, else `METHOD path`.
fn action(method: &Method, route: &str) -> String {
    let known = match (method.as_str(), route) {
        ("POST", "/v1/evaluations") => "evaluation.submit",
        ("POST", "/v1/evaluations/batch") => "evaluation.batch",
        ("POST", "/v1/evaluations/{id}/cancel") => "evaluation.cancel",
        ("POST", "/v1/evaluations/{id}/requeue") => "evaluation.requeue",
        ("POST", "/v1/keys") => "key.create",
        ("DELETE", "/v1/keys/{id}") => "key.revoke",
        ("GET", "/v1/evaluations") => "evaluation.list",
        ("GET", "/v1/evaluations/{id}") => "evaluation.get",
        ("GET", "/v1/evaluations/{id}/events") => "evaluation.events",
        ("GET", "/v1/queue") => "queue.get",
        ("GET", "/v1/dead-letters") => "dead_letter.list",
        ("GET", "/v1/keys") => "key.list",
        ("GET", "/v1/me") => "me.get",
        ("GET", "/v1/audit") => "audit.list",
        _ => "",
    };
    if known.is_empty() {
        format!("{method} {route}")
    } else {
        known.to_string()
    }
}

fn outcome_of(status: StatusCode) -> AuditOutcome {
    match status.as_u16() {
        200..=399 => AuditOutcome::Ok,
        401 | 403 | 429 => AuditOutcome::Denied,
        _ => AuditOutcome::Error,
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The value of the `{id}` segment of `route` in `path` (matched from the end: inside a nested
/// router the path has lost its prefix).
fn path_id(route: &str, path: &str) -> Option<String> {
    route
        .rsplit('/')
        .zip(path.rsplit('/'))
        .find(|(r, _)| *r == "{id}")
        .map(|(_, p)| clip(p))
}

/// Splits the answer into its parts and its body bytes (bounded); the answer is rebuilt
/// from them unchanged. `None` (and the answer untouched) if the body is too large.
async fn read_body(resp: Response) -> (Response, Option<Bytes>) {
    let known_small = resp
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_READ_BODY as u64);
    if !known_small {
        return (resp, None);
    }
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, MAX_READ_BODY).await {
        Ok(b) => (Response::from_parts(parts, Body::from(b.clone())), Some(b)),
        // Only an in-memory body of a known size is read: this does not happen.
        Err(e) => (
            axum::response::IntoResponse::into_response(ApiError::internal(e)),
            None,
        ),
    }
}

/// Middleware around every `/v1` route (outside authentication): records the call.
pub async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let at = now_millis();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()));
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string());
    // Kept only to name a refused credential (6 hex digits of its hash, computed only when
    // authentication fails), never the value.
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let mut resp = next.run(req).await;
    let status = resp.status();
    let caller = resp.extensions().get::<Caller>().cloned();
    let writes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut entry = NewAuditEntry {
        at,
        actor: None,
        tenant: None,
        action: String::new(),
        target: path_id(&route, &path),
        outcome: outcome_of(status),
        status: status.as_u16(),
        source,
        request_id,
        detail: None,
    };
    match &caller {
        None if status.is_client_error() || status.is_server_error() => {
            // Authentication refused the call (it never reached a handler).
            let (r, body) = read_body(resp).await;
            resp = r;
            entry.action = "auth.failed".into();
            if status.is_client_error() {
                entry.outcome = AuditOutcome::Denied;
            }
            let reason = body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["error"]["message"].as_str().map(clip));
            let credential_hint = authorization
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' ').map(|(_, k)| k.trim()))
                .filter(|k| !k.is_empty())
                .map(|k| hex::encode(Sha256::digest(k.as_bytes()))[..6].to_string());
            entry.detail = Some(match (reason, &credential_hint) {
                (Some(r), Some(h)) => format!("{r} (credential sha256 {h}…)"),
                (Some(r), None) => r,
                (None, Some(h)) => format!("refused (credential sha256 {h}…)"),
                (None, None) => "refused".into(),
            });
            entry.detail = entry.detail.map(|d| clip(&d));
        }
        None => return resp,
        Some(c) => {
            if !writes && entry.outcome != AuditOutcome::Denied {
                return resp;
            }
            entry.actor = Some(c.key_id.clone());
            entry.tenant = Some(c.tenant.clone());
            entry.action = action(&method, &route);
            if status.is_success() {
                match entry.action.as_str() {
                    "evaluation.submit" => {
                        entry.target = resp
                            .headers()
                            .get(header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|l| l.rsplit('/').next())
                            .map(clip);
                    }
                    "evaluation.batch" | "key.create" => {
                        let (r, body) = read_body(resp).await;
                        resp = r;
                        let v = body
                            .as_deref()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                            .unwrap_or_default();
                        if entry.action == "key.create" {
                            entry.target = v["id"].as_str().map(clip);
                        } else if let Some(items) = v["items"].as_array() {
                            let ids: Vec<&str> = items
                                .iter()
                                .take(MAX_BATCH_IDS)
                                .filter_map(|i| i["id"].as_str())
                                .collect();
                            entry.detail =
                                Some(format!("{} evaluations: {}", items.len(), ids.join(",")));
                        }
                    }
                    _ => {}
                }
            } else {
                let (r, body) = read_body(resp).await;
                resp = r;
                entry.detail = body
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v["error"]["code"].as_str().map(clip));
            }
        }
    }
    if let Err(e) = st.store.append_audit(entry).await {
        tracing::error!(error = %e, "could not write the audit entry");
    }
    resp
}

/// One audit entry as the API shows it (and `assay audit export` prints it).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Eq)]
pub struct AuditEntryView {
    /// 1, 2, 3, … in order of recording, without gaps.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// Unix milliseconds (what the hash covers).
    pub at_ms: i64,
    /// The key id (or external subject) that made the call; absent for failed authentications.
    pub actor: Option<String>,
    pub tenant: Option<String>,
    /// e.g. `evaluation.submit`, `evaluation.cancel`, `key.create`, `key.revoke`, `auth.failed`.
    pub action: String,
    /// The evaluation or key acted on.
    pub target: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// The peer's IP address.
    pub source: Option<String>,
    /// As answered in `X-Request-Id`.
    pub request_id: String,
    /// The error code, why authentication failed, or the ids of a batch.
    pub detail: Option<String>,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this entry's fields and `prev_hash`.
    pub hash: String,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(e: &AuditEntry) -> Self {
        let n = &e.entry;
        AuditEntryView {
            seq: e.seq,
            at: rfc3339(n.at),
            at_ms: n.at,
            actor: n.actor.clone(),
            tenant: n.tenant.clone(),
            action: n.action.clone(),
            target: n.target.clone(),
            outcome: n.outcome.as_str().to_string(),
            status: n.status,
            source: n.source.clone(),
            request_id: n.request_id.clone(),
            detail: n.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct AuditPage {
    pub items: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only calls by this key id (or subject).
    actor: Option<String>,
    /// Only calls by this tenant's keys.
    tenant: Option<String>,
    /// Only this action (e.g. `evaluation.submit`, `auth.failed`).
    action: Option<String>,
    /// Only calls on this evaluation or key id.
    target: Option<String>,
    /// `ok`, `denied` or `error`.
    outcome: Option<String>,
    /// RFC 3339: at or after.
    after: Option<String>,
    /// RFC 3339: before.
    before: Option<String>,
    /// `newest` (default) or `oldest` first.
    order: Option<String>,
    /// From a previous page's `next_cursor` (same order).
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
}

fn audit_filter(p: AuditParams) -> Result<AuditFilter, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let outcome = p
        .outcome
        .map(|o| {
            AuditOutcome::parse(&o)
                .ok_or_else(|| bad(format!("outcome must be ok, denied or error, not {o:?}")))
        })
        .transpose()?;
    let time = |s: Option<String>, name: &str| {
        s.map(|s| parse_time(&s).ok_or_else(|| bad(format!("{name} must be an RFC 3339 time"))))
            .transpose()
    };
    let oldest_first = match p.order.as_deref() {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(o) => return Err(bad(format!("order must be newest or oldest, not {o:?}"))),
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit must be 1 to 1000".into()));
    }
    Ok(AuditFilter {
        actor: p.actor,
        tenant: p.tenant,
        action: p.action,
        target: p.target,
        outcome,
        after: time(p.after, "after")?,
        before: time(p.before, "before")?,
        oldest_first,
        cursor: p.cursor,
        limit,
    })
}

/// The audit log (admin keys only): every state-changing call and every failed
/// authentication, newest first (`order=oldest`: in chain order). Entries are hash-chained;
/// `assay audit verify` checks the chain.
#[utoipa::path(get, path = "/v1/audit", params(AuditParams),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody),
        (status = 401, description = "No or bad API key", body = ErrorBody),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require_admin()?;
    let filter = audit_filter(crate::api::params(q)?)?;
    let page = st.store.list_audit(&filter).await?;
    Ok(Json(AuditPage {
        items: page.items.iter().map(AuditEntryView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_targets() {
        assert_eq!(
            action(&Method::POST, "/v1/evaluations/{id}/cancel"),
            "evaluation.cancel"
        );
        assert_eq!(action(&Method::DELETE, "/v1/keys/{id}"), "key.revoke");
        assert_eq!(action(&Method::PUT, "/v1/other"), "PUT /v1/other");
        assert_eq!(
            path_id("/v1/evaluations/{id}/cancel", "/v1/evaluations/abc/cancel").as_deref(),
            Some("abc")
        );
        assert_eq!(
            path_id("/v1/keys/{id}", "/keys/key_1").as_deref(),
            Some("key_1")
        );
        assert_eq!(path_id("/v1/evaluations", "/v1/evaluations"), None);
        assert_eq!(clip(&"é".repeat(300)).chars().count(), MAX_FIELD + 1);
        assert_eq!(outcome_of(StatusCode::ACCEPTED), AuditOutcome::Ok);
        assert_eq!(outcome_of(StatusCode::FORBIDDEN), AuditOutcome::Denied);
        assert_eq!(outcome_of(StatusCode::CONFLICT), AuditOutcome::Error);
    }
}
