//! Handlers of the key routes (`/v1/keys`, `/v1/me`) and the audit log (`/v1/audit`).

use crate::error::HttpError;
use crate::evaluations::parsed;
use crate::extract::{ApiJson, body, query};
use crate::state::AppState;
use assay_api::ErrorBody;
use assay_api::audit::{AuditPage, AuditParams};
use assay_api::keys::{CreateKeyRequest, KeyList, KeyListParams, KeyView, MeView, NewKeyView};
use assay_service::Context;
use assay_service::commands::{CreateKey, RevokeKey};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

/// Create an API key (admin keys only). The answer is the only time the key itself is shown: only its SHA-256 hash is stored.
#[utoipa::path(post, path = "/v1/keys", operation_id = "create_key", tag = "keys", request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown only in this answer", body = NewKeyView),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
        (status = 422, description = "`invalid_tenant`, `invalid_role`, `invalid_name`, `invalid_expiry` or `invalid_request`", body = ErrorBody),
    ))]
pub(crate) async fn create_key(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    b: Result<ApiJson<CreateKeyRequest>, HttpError>,
) -> Result<(StatusCode, Json<NewKeyView>), HttpError> {
    let cmd = parsed(
        &st,
        &ctx,
        None,
        body(b).map(|request| CreateKey { request }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(st.service.execute(&ctx, cmd).await?),
    ))
}

/// List API keys (admin keys only), oldest first, revoked and expired ones included. Never shows a key or its hash.
#[utoipa::path(get, path = "/v1/keys", operation_id = "list_keys", tag = "keys", params(KeyListParams),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
    ))]
pub(crate) async fn list_keys(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    q: Result<Query<KeyListParams>, QueryRejection>,
) -> Result<Json<KeyList>, HttpError> {
    Ok(Json(st.service.keys(&ctx, query(q)).await?))
}

/// Revoke an API key (admin keys only): the next request with it is a 401. Revoking a revoked key changes nothing.
#[utoipa::path(delete, path = "/v1/keys/{id}", operation_id = "revoke_key", tag = "keys", params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked (now or before)", body = KeyView),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
pub(crate) async fn revoke_key(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, HttpError> {
    Ok(Json(st.service.execute(&ctx, RevokeKey { id }).await?))
}

/// The key making this request: its id, name, tenant and role.
#[utoipa::path(get, path = "/v1/me", operation_id = "get_me", tag = "keys",
    responses((status = 200, description = "The caller", body = MeView)))]
pub(crate) async fn me(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
) -> Json<MeView> {
    Json(st.service.me(&ctx))
}

/// The audit log (admin keys only): every state-changing call and every failed authentication, newest first (`order=oldest`: in chain order). Entries are hash-chained; `assay audit verify` checks the chain.
#[utoipa::path(get, path = "/v1/audit", operation_id = "list_audit", tag = "audit", params(AuditParams),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
    ))]
pub(crate) async fn audit(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, HttpError> {
    Ok(Json(st.service.audit_log(&ctx, query(q)).await?))
}
