//! Handlers of the evaluation routes: each turns the request into a command or a query of the
//! service and renders the outcome.

use crate::error::HttpError;
use crate::extract::{ApiJson, body, idempotency_key, last_event_id, query};
use crate::state::AppState;
use assay_api::evaluation::{
    BatchRequest, BatchResponse, EvaluationPage, EvaluationView, ListParams, PageParams,
    SubmitParams, SubmitRequest,
};
use assay_api::queue::QueueView;
use assay_api::{ApiError, ErrorBody, MAX_WAIT_SECS};
use assay_service::commands::{Cancel, Requeue, Submit, SubmitBatch};
use assay_service::{Command, Context};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::time::Duration;

/// A request for command `C`, parsed; a request that could not be is recorded as a failed `C`.
pub(crate) async fn parsed<C: Command>(
    st: &AppState,
    ctx: &Context,
    target: Option<&str>,
    parse: Result<C, ApiError>,
) -> Result<C, HttpError> {
    match parse {
        Ok(cmd) => Ok(cmd),
        Err(e) => Err(HttpError(st.service.rejected::<C>(ctx, target, e).await)),
    }
}

fn submit_request(
    q: Result<Query<SubmitParams>, QueryRejection>,
    headers: &HeaderMap,
    b: Result<ApiJson<SubmitRequest>, HttpError>,
) -> Result<(Submit, Option<u64>), ApiError> {
    let wait = query(q)?.wait;
    if wait.is_some_and(|w| w > MAX_WAIT_SECS) {
        return Err(ApiError::invalid_query(format!(
            "wait is at most {MAX_WAIT_SECS} seconds"
        )));
    }
    let idempotency_key = idempotency_key(headers)?;
    let request = body(b)?;
    Ok((
        Submit {
            request,
            idempotency_key,
        },
        wait,
    ))
}

/// Submit an evaluation (admin and member keys), in the key's tenant.
#[utoipa::path(post, path = "/v1/evaluations", operation_id = "submit_evaluation", tag = "evaluations",
    request_body = SubmitRequest,
    params(SubmitParams,
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key (1-200 visible ASCII characters) returns the same evaluation instead of a new one")),
    responses(
        (status = 202, description = "Accepted and queued (or, with an `Idempotency-Key` seen before, the evaluation it created)", body = EvaluationView,
            headers(("Location" = String, description = "The evaluation's URL"))),
        (status = 200, description = "Finished within `wait`", body = EvaluationView,
            headers(("Location" = String, description = "The evaluation's URL"))),
        (status = 403, description = "A viewer key (`forbidden`)", body = ErrorBody),
        (status = 422, description = "Invalid submission (syntax error, limits above the operator's or the tenant's maxima: `limit_exceeded`, ...)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this key's submission rate (token bucket) is used up, `details` `{rate_per_minute, burst, requested, retry_after_ms}`; or `quota_exceeded`: the tenant's queued cap is reached, `details` `{limit, queued, requested}`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`queue_full`: the global queue cap is reached; `unavailable`: the store is briefly busy", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
pub(crate) async fn submit(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    q: Result<Query<SubmitParams>, QueryRejection>,
    headers: HeaderMap,
    b: Result<ApiJson<SubmitRequest>, HttpError>,
) -> Result<Response, HttpError> {
    let (cmd, wait) = match submit_request(q, &headers, b) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Err(HttpError(
                st.service.rejected::<Submit>(&ctx, None, e).await,
            ));
        }
    };
    let mut view = st.service.execute(&ctx, cmd).await?.evaluation;
    if let Some(secs) = wait.filter(|w| *w > 0)
        && !view.status.is_terminal()
    {
        view = st
            .service
            .wait_finished(&ctx, &view.id, Duration::from_secs(secs))
            .await?;
    }
    let status = if view.status.is_terminal() && wait.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = format!("/v1/evaluations/{}", view.id);
    let mut resp = (status, Json(view)).into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

/// Submit up to 1000 evaluations at once (admin and member keys); validation is all or nothing.
#[utoipa::path(post, path = "/v1/evaluations/batch", operation_id = "submit_batch", tag = "evaluations",
    request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry of the same batch with the same key returns the evaluations the first one created, and creates none")),
    responses(
        (status = 202, description = "All accepted (or, with an `Idempotency-Key` seen before, the evaluations that batch created)", body = BatchResponse),
        (status = 403, description = "A viewer key (`forbidden`)", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`: the `Idempotency-Key` was used for a different batch; nothing was queued", body = ErrorBody),
        (status = 422, description = "At least one item is invalid; nothing was queued. `details.errors` lists them (`invalid_batch`; also when the batch is larger than the key's burst)", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the batch takes one token per item, all or nothing) or `quota_exceeded` (the batch does not fit under the tenant's queued cap); nothing was queued", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`queue_full`: the batch does not fit under the global queue cap; `unavailable`: the store is briefly busy; nothing was queued", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
pub(crate) async fn submit_batch(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    headers: HeaderMap,
    b: Result<ApiJson<BatchRequest>, HttpError>,
) -> Result<(StatusCode, Json<BatchResponse>), HttpError> {
    let parse = idempotency_key(&headers).and_then(|idempotency_key| {
        Ok(SubmitBatch {
            items: body(b)?.items,
            idempotency_key,
        })
    });
    let cmd = parsed(&st, &ctx, None, parse).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(st.service.execute(&ctx, cmd).await?),
    ))
}

/// List evaluations, newest first, as summaries (no output: that is on `GET /v1/evaluations/{id}`): the key's tenant's (an admin key: every tenant's).
#[utoipa::path(get, path = "/v1/evaluations", operation_id = "list_evaluations", tag = "evaluations",
    params(ListParams),
    responses((status = 200, description = "One page of summaries, newest first", body = EvaluationPage)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<EvaluationPage>, HttpError> {
    Ok(Json(st.service.evaluations(&ctx, query(q)).await?))
}

/// Get one evaluation, with its whole output once it ended. Another tenant's is a 404 (admin keys see every tenant).
#[utoipa::path(get, path = "/v1/evaluations/{id}", operation_id = "get_evaluation", tag = "evaluations",
    params(("id" = String, Path, description = "Evaluation id")),
    responses((status = 200, description = "The evaluation", body = EvaluationView), (status = 404, description = "No such evaluation (or another tenant's)", body = ErrorBody)))]
pub(crate) async fn get_one(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, HttpError> {
    Ok(Json(st.service.evaluation(&ctx, &id).await?))
}

/// Cancel (admin and member keys): a queued evaluation is cancelled at once; a running one is killed by its worker within a second. A finished one is a 409; another tenant's a 404.
#[utoipa::path(post, path = "/v1/evaluations/{id}/cancel", operation_id = "cancel_evaluation", tag = "evaluations",
    params(("id" = String, Path, description = "Evaluation id")),
    responses((status = 200, description = "Cancelled, or marked for cancellation while it runs", body = EvaluationView), (status = 403, description = "A viewer key (`forbidden`)", body = ErrorBody),
              (status = 404, description = "No such evaluation (or another tenant's)", body = ErrorBody), (status = 409, description = "`already_finished`", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, HttpError> {
    Ok(Json(st.service.execute(&ctx, Cancel { id }).await?))
}

/// Live events of one evaluation (Server-Sent Events): `status`, `stdout`, `stderr`, then `result`, after which the stream ends. Each event's `id` is its sequence number; send `Last-Event-ID` to resume. A finished evaluation replays its history.
#[utoipa::path(get, path = "/v1/evaluations/{id}/events", operation_id = "evaluation_events", tag = "evaluations",
    params(("id" = String, Path, description = "Evaluation id"),
           ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this sequence number")),
    responses((status = 200, description = "The event stream (see the operation's description)", content_type = "text/event-stream", body = String),
              (status = 404, description = "No such evaluation (or another tenant's)", body = ErrorBody)))]
pub(crate) async fn events(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let watch = st.service.watch(&ctx, &id, last_event_id(&headers)).await?;
    Ok(crate::sse::stream(watch).into_response())
}

/// Requeue a dead-lettered evaluation (attempts reset; admin keys only). Another tenant's evaluation is a 404.
#[utoipa::path(post, path = "/v1/evaluations/{id}/requeue", operation_id = "requeue_evaluation", tag = "evaluations",
    params(("id" = String, Path, description = "Evaluation id")),
    responses((status = 200, description = "Queued again", body = EvaluationView), (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
              (status = 404, description = "No such evaluation (or another tenant's)", body = ErrorBody), (status = 409, description = "`conflict`: not a dead letter", body = ErrorBody)))]
pub(crate) async fn requeue(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, HttpError> {
    Ok(Json(st.service.execute(&ctx, Requeue { id }).await?))
}

/// Queue status: counts by status and the oldest queued age (of the caller's tenant; an admin key: of all tenants), and the workers (shared by every tenant) and their load.
#[utoipa::path(get, path = "/v1/queue", operation_id = "get_queue", tag = "queue", responses((status = 200, description = "Counts and workers", body = QueueView)))]
pub(crate) async fn queue(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
) -> Result<Json<QueueView>, HttpError> {
    Ok(Json(st.service.queue(&ctx).await?))
}

/// Dead-lettered evaluations (platform failures that exhausted their attempts), with reasons (admin keys only).
#[utoipa::path(get, path = "/v1/dead-letters", operation_id = "list_dead_letters", tag = "queue", params(PageParams),
    responses((status = 200, description = "One page of dead letters, newest first", body = EvaluationPage),
    (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody)))]
pub(crate) async fn dead_letters(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    q: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<EvaluationPage>, HttpError> {
    Ok(Json(st.service.dead_letters(&ctx, query(q)).await?))
}
