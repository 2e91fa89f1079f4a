//! Routes and handlers.

use crate::audit;
use crate::auth::{Caller, require_key};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::keys;
use crate::view::{
    BatchRequest, BatchResponse, CreateKeyRequest, EvaluationPage, EvaluationView, Health, KeyList,
    KeyRole, KeyState, KeyView, MeView, NewKeyView, QueueView, parse_time,
};
use crate::{AppState, MAX_BODY_BYTES};
use assay_domain::{EvaluationStatus, SubmitRequest};
use assay_store::{Evaluation, ListFilter, NewEvaluation, SubmitOutcome, now_millis};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router, middleware};
use serde::Deserialize;
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::{IntoParams, OpenApi};

pub const MAX_BATCH: usize = 1000;
pub const MAX_WAIT_SECS: u64 = 60;
const MAX_IDEMPOTENCY_KEY: usize = 200;

#[derive(OpenApi)]
#[openapi(
    info(title = "Assay API", description = "Run untrusted code in single-use sandboxes.", version = "1"),
    paths(submit, submit_batch, list, get_one, cancel, events, requeue, queue, dead_letters,
        keys::create_key, keys::list_keys, keys::revoke_key, keys::me, audit::list, healthz, readyz),
    components(schemas(ErrorBody, EvaluationView, EvaluationPage, BatchRequest, BatchResponse, QueueView, Health,
        CreateKeyRequest, NewKeyView, KeyView, KeyList, KeyRole, KeyState, MeView,
        audit::AuditEntryView, audit::AuditPage)),
    modifiers(&BearerAuth, &CommonErrors),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("Assay API key (ak_…) or JWT")
                    .description(Some(
                        "`Authorization: Bearer <token>`. The token is an Assay API key \
                         (`ak_` and 40 hex digits), or, when the server is configured with \
                         `[jwt]`, a JWT (RS256 or ES256) from the configured issuer: `iss`, \
                         `aud`, `exp` and `sub` are required, the tenant and the role come \
                         from the configured claims, and `/v1/me` shows the caller as \
                         `key_id` `jwt:<sub>`. Never in the query string.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Answers every `/v1` operation can give, added to each so the document lists every status
/// the server really sends (the schema-driven API test, `scripts/api-fuzz`, checks it):
/// 400 (malformed query or header, `key_in_query`), 401 (authentication), and for operations
/// with a body 413 (too large), 415 (not JSON) and 400 `invalid_json`.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ] {
                let Some(op) = op.as_mut() else { continue };
                let body = op.request_body.is_some();
                let r = &mut op.responses.responses;
                let mut add = |status: &str, description: &str| {
                    r.entry(status.to_string())
                        .or_insert_with(|| error(description));
                };
                add(
                    "400",
                    "Malformed request (`invalid_query`, `invalid_json`, `key_in_query`, ...)",
                );
                add(
                    "401",
                    "No, malformed, unknown, revoked or expired key or token (`unauthorized`)",
                );
                if body {
                    add("413", "Request body too large (`payload_too_large`)");
                    add("415", "Not `Content-Type: application/json`");
                }
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/evaluations", post(submit).get(list))
        .route("/evaluations/batch", post(submit_batch))
        .route("/evaluations/{id}", get(get_one))
        .route("/evaluations/{id}/cancel", post(cancel))
        .route("/evaluations/{id}/events", get(events))
        .route("/evaluations/{id}/requeue", post(requeue))
        .route("/queue", get(queue))
        .route("/dead-letters", get(dead_letters))
        .route("/keys", post(keys::create_key).get(keys::list_keys))
        .route("/keys/{id}", delete(keys::revoke_key))
        .route("/me", get(keys::me))
        .route("/audit", get(audit::list))
        // Inside authentication: hands the caller out to the audit recorder.
        .layer(middleware::from_fn(audit::expose_caller))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        // Outside authentication: records state-changing calls and failed authentications.
        .layer(middleware::from_fn_with_state(state.clone(), audit::record));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// Wait up to this many seconds (at most 60) for the result; 200 with the finished
    /// evaluation if it ends in time, else 202 as without it.
    wait: Option<u64>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-200 visible ASCII characters",
            )
        })?;
    Ok(Some(s.to_string()))
}

pub(crate) fn params<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// Submit an evaluation (admin and member keys), in the key's tenant.
#[utoipa::path(post, path = "/v1/evaluations", request_body = SubmitRequest, params(SubmitParams,
    ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the same evaluation")),
    responses(
        (status = 202, description = "Accepted and queued", body = EvaluationView),
        (status = 200, description = "Finished within `wait`", body = EvaluationView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No or bad API key", body = ErrorBody),
        (status = 403, description = "A viewer key (`forbidden`)", body = ErrorBody),
        (status = 422, description = "Invalid submission (syntax error, limits above the operator's or the tenant's maxima: `limit_exceeded`, ...)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this key's submission rate (token bucket) is used up, `details` `{rate_per_minute, burst, requested, retry_after_ms}`; or `quota_exceeded`: the tenant's queued cap is reached, `details` `{limit, queued, requested}`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`queue_full`: the global queue cap is reached", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn submit(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<SubmitParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    let p = params(q)?;
    if p.wait.is_some_and(|w| w > MAX_WAIT_SECS) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("wait is at most {MAX_WAIT_SECS} seconds"),
        ));
    }
    let quota = st.settings.quotas.for_tenant(&caller.tenant);
    st.quota.check_rate(quota, &caller.key_id, 1)?;
    let submission = req.validate(&quota.limit_policy(&st.limits))?;
    let idempotency_key = idempotency_key(&headers)?;
    let permit = st
        .quota
        .admit(st.store.as_ref(), &st.settings.quotas, &caller.tenant, 1)
        .await?;
    let outcome = st
        .store
        .submit(
            NewEvaluation {
                tenant: caller.tenant.clone(),
                submission,
                idempotency_key,
                max_attempts: st.retry.max_attempts,
            },
            now_millis(),
        )
        .await?;
    drop(permit);
    if matches!(outcome, SubmitOutcome::Created(_)) {
        tracing::debug!(key = %caller.key_id, evaluation = %outcome.evaluation().id, "submitted");
        st.bus.notify_queue();
    }
    let mut ev = outcome.evaluation().clone();
    if let Some(wait) = p.wait.filter(|w| *w > 0)
        && !ev.status.is_terminal()
    {
        ev = wait_terminal(&st, &ev.id, Duration::from_secs(wait)).await?;
    }
    let status = if ev.status.is_terminal() && p.wait.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = format!("/v1/evaluations/{}", ev.id);
    let mut resp = (status, Json(EvaluationView::from(&ev))).into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

/// Waits until the evaluation is terminal or `max` passed; returns its latest state.
async fn wait_terminal(st: &AppState, id: &str, max: Duration) -> Result<Evaluation, ApiError> {
    let deadline = tokio::time::Instant::now() + max;
    let mut rx = st.bus.subscribe_events();
    loop {
        let ev = st
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("evaluation"))?;
        if ev.status.is_terminal() || tokio::time::Instant::now() >= deadline {
            return Ok(ev);
        }
        // Woken by this process's workers at once; polling covers workers elsewhere.
        let poll = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(poll);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(x) if x == id => break,
                    Ok(_) => continue,
                    Err(_) => break,
                },
                _ = &mut poll => break,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
}

/// Submit up to 1000 evaluations at once (admin and member keys); validation is all or nothing.
#[utoipa::path(post, path = "/v1/evaluations/batch", request_body = BatchRequest,
    responses(
        (status = 202, description = "All accepted", body = BatchResponse),
        (status = 403, description = "A viewer key (`forbidden`)", body = ErrorBody),
        (status = 422, description = "At least one item is invalid; nothing was queued. `details.errors` lists them (`invalid_batch`; also when the batch is larger than the key's burst)", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the batch takes one token per item, all or nothing) or `quota_exceeded` (the batch does not fit under the tenant's queued cap); nothing was queued", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`queue_full`: the batch does not fit under the global queue cap; nothing was queued", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn submit_batch(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    caller.require_write()?;
    if req.items.is_empty() || req.items.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!(
                "a batch holds 1 to {MAX_BATCH} items, not {}",
                req.items.len()
            ),
        ));
    }
    let quota = st.settings.quotas.for_tenant(&caller.tenant);
    let n = req.items.len();
    st.quota
        .check_rate(quota, &caller.key_id, u32::try_from(n).unwrap_or(u32::MAX))?;
    let limits = quota.limit_policy(&st.limits);
    let mut items = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for (index, item) in req.items.iter().enumerate() {
        match item.validate(&limits) {
            Ok(submission) => items.push(NewEvaluation {
                tenant: caller.tenant.clone(),
                submission,
                idempotency_key: None,
                max_attempts: st.retry.max_attempts,
            }),
            Err(e) => {
                let api = ApiError::from(e);
                errors.push(serde_json::json!({"index": index, "code": api.code, "message": api.message, "details": api.details}));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!(
                "{} of {} items are invalid; nothing was queued",
                errors.len(),
                req.items.len()
            ),
        )
        .with_details(serde_json::json!({"errors": errors})));
    }
    let permit = st
        .quota
        .admit(
            st.store.as_ref(),
            &st.settings.quotas,
            &caller.tenant,
            n as u64,
        )
        .await?;
    let outcomes = st.store.submit_batch(items, now_millis()).await?;
    drop(permit);
    st.bus.notify_queue();
    let items = outcomes
        .iter()
        .map(|o| EvaluationView::from(o.evaluation()))
        .collect();
    Ok((StatusCode::ACCEPTED, Json(BatchResponse { items })).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this status.
    status: Option<String>,
    /// `key=value`: only evaluations with this label.
    label: Option<String>,
    /// RFC 3339: created at or after.
    created_after: Option<String>,
    /// RFC 3339: created before.
    created_before: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
}

fn list_filter(p: ListParams, caller: &Caller) -> Result<ListFilter, ApiError> {
    let status = p
        .status
        .map(|s| {
            EvaluationStatus::parse(&s).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("unknown status {s:?}"))
            })
        })
        .transpose()?;
    let label = p
        .label
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::bad_request("invalid_query", "label must be key=value"))
        })
        .transpose()?;
    let time = |s: Option<String>, name: &str| {
        s.map(|s| {
            parse_time(&s).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("{name} must be an RFC 3339 time"))
            })
        })
        .transpose()
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 1000",
        ));
    }
    Ok(ListFilter {
        tenant: caller.tenant_scope(),
        status,
        label,
        created_after: time(p.created_after, "created_after")?,
        created_before: time(p.created_before, "created_before")?,
        cursor: p.cursor,
        limit,
    })
}

/// List evaluations, newest first: the key's tenant's (an admin key: every tenant's).
#[utoipa::path(get, path = "/v1/evaluations", params(ListParams),
    responses((status = 200, body = EvaluationPage), (status = 400, body = ErrorBody)))]
async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EvaluationPage>, ApiError> {
    let filter = list_filter(params(q)?, &caller)?;
    let page = st.store.list(&filter).await?;
    Ok(Json(EvaluationPage {
        items: page.items.iter().map(EvaluationView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Loads an evaluation the caller may see; another tenant's is a 404.
pub(crate) async fn visible(
    st: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Evaluation, ApiError> {
    match st.store.get(id).await? {
        Some(ev) if caller.can_see(&ev.tenant) => Ok(ev),
        _ => Err(ApiError::not_found("evaluation")),
    }
}

/// Get one evaluation. Another tenant's is a 404 (admin keys see every tenant).
#[utoipa::path(get, path = "/v1/evaluations/{id}", params(("id" = String, Path, description = "Evaluation id")),
    responses((status = 200, body = EvaluationView), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, ApiError> {
    Ok(Json(EvaluationView::from(
        &visible(&st, &caller, &id).await?,
    )))
}

/// Cancel (admin and member keys): a queued evaluation is cancelled at once; a running one is
/// killed by its worker within a second. A finished one is a 409; another tenant's a 404.
#[utoipa::path(post, path = "/v1/evaluations/{id}/cancel", params(("id" = String, Path, description = "Evaluation id")),
    responses((status = 200, body = EvaluationView), (status = 403, description = "A viewer key (`forbidden`)", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, ApiError> {
    let ev = visible(&st, &caller, &id).await?;
    caller.require_write()?;
    if ev.status.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!(
                "evaluation is {}; only queued or running evaluations can be cancelled",
                ev.status
            ),
        ));
    }
    let ev = st.store.cancel(&id, now_millis()).await?;
    st.bus.publish_events(&id);
    Ok(Json(EvaluationView::from(&ev)))
}

/// Live events (Server-Sent Events): `status` (`{"status", "attempt"}`), `stdout` and `stderr`
/// (the chunk as a JSON string), then `result` (the final evaluation, as GET shows it), after
/// which the stream ends. Each event's `id` is its sequence number; send `Last-Event-ID` to resume.
/// A finished evaluation replays its history.
#[utoipa::path(get, path = "/v1/evaluations/{id}/events",
    params(("id" = String, Path, description = "Evaluation id"),
           ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this sequence number")),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
              (status = 404, body = ErrorBody)))]
async fn events(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    visible(&st, &caller, &id).await?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be a sequence number",
                )
            })?,
    };
    Ok(crate::sse::stream(st, id, after).into_response())
}

/// Requeue a dead-lettered evaluation (attempts reset; admin keys only). Another tenant's
/// evaluation is a 404.
#[utoipa::path(post, path = "/v1/evaluations/{id}/requeue", params(("id" = String, Path, description = "Evaluation id")),
    responses((status = 200, body = EvaluationView), (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn requeue(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, ApiError> {
    visible(&st, &caller, &id).await?;
    caller.require_admin()?;
    let ev = st.store.requeue(&id, now_millis()).await?;
    st.bus.notify_queue();
    st.bus.publish_events(&id);
    Ok(Json(EvaluationView::from(&ev)))
}

/// Queue status: counts by status and the oldest queued age (of the caller's tenant; an admin
/// key: of all tenants), and the workers (shared by every tenant) and their load.
#[utoipa::path(get, path = "/v1/queue", responses((status = 200, body = QueueView)))]
async fn queue(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<QueueView>, ApiError> {
    let now = now_millis();
    let scope = caller.tenant_scope();
    let mut stats = st.store.queue_stats(scope.as_deref(), now).await?;
    // Workers heartbeat every few seconds; one silent for longer than this is gone (killed, or
    // its machine is) and is not shown as capacity.
    stats
        .workers
        .retain(|w| now - w.last_seen <= WORKER_STALE_MS);
    Ok(Json(QueueView::from(&stats)))
}

const WORKER_STALE_MS: i64 = 30_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    cursor: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// Dead-lettered evaluations (platform failures that exhausted their attempts), with reasons
/// (admin keys only).
#[utoipa::path(get, path = "/v1/dead-letters", params(PageParams), responses((status = 200, body = EvaluationPage),
    (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody)))]
async fn dead_letters(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EvaluationPage>, ApiError> {
    caller.require_admin()?;
    let p = params(q)?;
    let filter = list_filter(
        ListParams {
            status: Some("dead".into()),
            label: None,
            created_after: None,
            created_before: None,
            cursor: p.cursor,
            limit: p.limit,
        },
        &caller,
    )?;
    let page = st.store.list(&filter).await?;
    Ok(Json(EvaluationPage {
        items: page.items.iter().map(EvaluationView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", security(()), responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    st.store
        .count_keys()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()))?;
    Ok(Json(Health { status: "ready" }))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi_json(),
    )
        .into_response()
}
