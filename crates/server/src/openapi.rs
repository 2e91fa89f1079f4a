//! The OpenAPI document (committed as `docs/openapi.json`; a test fails when it drifts): the
//! operations are declared on their handlers, every schema comes from `assay-api`.

use crate::{evaluations, health, keys, output};
use assay_api::audit::{AuditEntryView, AuditPage};
use assay_api::evaluation::{
    BatchRequest, BatchResponse, EvaluationPage, EvaluationSummary, EvaluationView, LimitsView,
    RunResultView, RunSummaryView, SubmitRequest,
};
use assay_api::events::{STREAM_DESCRIPTION, StatusEvent};
use assay_api::keys::{CreateKeyRequest, KeyList, KeyState, KeyView, MeView, NewKeyView};
use assay_api::queue::{QueueView, WorkerView};
use assay_api::{ErrorBody, ErrorCode, ErrorInfo, Health, Role};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

#[derive(OpenApi)]
#[openapi(
    info(title = "Assay API", description = "Run untrusted code in single-use sandboxes.", version = "1"),
    paths(evaluations::submit, evaluations::submit_batch, evaluations::list, evaluations::get_one,
        evaluations::cancel, evaluations::events, output::get_output, evaluations::requeue, evaluations::queue,
        evaluations::dead_letters, keys::create_key, keys::list_keys, keys::revoke_key, keys::me,
        keys::audit, health::healthz, health::readyz),
    components(schemas(ErrorBody, ErrorInfo, ErrorCode, SubmitRequest, BatchRequest,
        EvaluationView, EvaluationSummary, EvaluationPage, BatchResponse, LimitsView,
        RunResultView, RunSummaryView, StatusEvent, QueueView, WorkerView, Health,
        CreateKeyRequest, NewKeyView, KeyView, KeyList, KeyState, MeView, Role,
        AuditEntryView, AuditPage)),
    modifiers(&BearerAuth, &CommonErrors, &EventStream),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json` and committed.
pub fn document() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("OpenAPI serialises");
    s.push('\n');
    s
}

/// `GET /openapi.json`.
pub(crate) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

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

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
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
}

/// Answers every `/v1` operation can give, added to each so the document lists every status
/// the server really sends (the schema-driven API test, `scripts/api-fuzz`, checks it):
/// 400 (malformed query or header, `key_in_query`), 401 (authentication), 503 (the store is
/// briefly unavailable), and for operations with a body 413 (too large), 415 (not JSON).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
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
                        .or_insert_with(|| error_response(description));
                };
                add(
                    "400",
                    "Malformed request (`invalid_query`, `invalid_json`, `key_in_query`, ...)",
                );
                add(
                    "401",
                    "No, malformed, unknown, revoked or expired key or token (`unauthorized`)",
                );
                add(
                    "503",
                    "`unavailable`: the store is briefly busy or unreachable; retry after `Retry-After`",
                );
                if body {
                    add("413", "Request body too large (`payload_too_large`)");
                    add("415", "Not `Content-Type: application/json`");
                }
            }
        }
    }
}

/// The live stream's events, described on its operation.
struct EventStream;

impl utoipa::Modify for EventStream {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(op) = openapi
            .paths
            .paths
            .get_mut("/v1/evaluations/{id}/events")
            .and_then(|item| item.get.as_mut())
        else {
            return;
        };
        if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
            ok.description = STREAM_DESCRIPTION.to_string();
        }
    }
}
