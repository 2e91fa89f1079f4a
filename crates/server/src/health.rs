//! Routes outside `/v1`: liveness and readiness.

use crate::error::HttpError;
use crate::state::AppState;
use assay_api::{ErrorBody, Health};
use axum::Json;
use axum::extract::State;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health", security(()), responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers (why not is logged, never shown).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", security(()), responses((status = 200, description = "Ready", body = Health), (status = 503, description = "`not_ready`", body = ErrorBody)))]
pub(crate) async fn readyz(State(st): State<AppState>) -> Result<Json<Health>, HttpError> {
    st.service.ready().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
