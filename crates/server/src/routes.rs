//! Every route, in one table: its method, its path and what it runs — a named command of the
//! service (state-changing routes must be), or a read. The router is built from the table, and
//! tests check the table against the rules and against the OpenAPI document.

use crate::auth::authenticate;
use crate::error::HttpError;
use crate::state::AppState;
use crate::{evaluations, health, keys, openapi, output};
use assay_api::{ApiError, MAX_BODY_BYTES};
use assay_service::Action;
use assay_service::Command;
use assay_service::commands::{Cancel, CreateKey, Requeue, RevokeKey, Submit, SubmitBatch};
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Router, middleware};

/// What a route runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// A state-changing command of the service.
    Command(Action),
    /// A read of the service (recorded in the audit log only when refused).
    Read(Action),
}

/// One `/v1` route.
pub struct Route {
    pub method: Method,
    /// Below `/v1`.
    pub path: &'static str,
    pub runs: Runs,
    handler: MethodRouter<AppState>,
}

fn command<C: Command>(method: Method, path: &'static str, h: MethodRouter<AppState>) -> Route {
    Route {
        method,
        path,
        runs: Runs::Command(C::ACTION),
        handler: h,
    }
}

fn read(action: Action, path: &'static str, h: MethodRouter<AppState>) -> Route {
    Route {
        method: Method::GET,
        path,
        runs: Runs::Read(action),
        handler: h,
    }
}

/// The `/v1` routes.
pub fn v1() -> Vec<Route> {
    use Method as M;
    vec![
        command::<Submit>(M::POST, "/evaluations", post(evaluations::submit)),
        command::<SubmitBatch>(
            M::POST,
            "/evaluations/batch",
            post(evaluations::submit_batch),
        ),
        command::<Cancel>(
            M::POST,
            "/evaluations/{id}/cancel",
            post(evaluations::cancel),
        ),
        command::<Requeue>(
            M::POST,
            "/evaluations/{id}/requeue",
            post(evaluations::requeue),
        ),
        command::<CreateKey>(M::POST, "/keys", post(keys::create_key)),
        command::<RevokeKey>(M::DELETE, "/keys/{id}", delete(keys::revoke_key)),
        read(
            Action::EvaluationList,
            "/evaluations",
            get(evaluations::list),
        ),
        read(
            Action::EvaluationGet,
            "/evaluations/{id}",
            get(evaluations::get_one),
        ),
        read(
            Action::EvaluationEvents,
            "/evaluations/{id}/events",
            get(evaluations::events),
        ),
        read(
            Action::EvaluationOutput,
            "/evaluations/{id}/output/{stream}",
            get(output::get_output),
        ),
        read(Action::QueueGet, "/queue", get(evaluations::queue)),
        read(
            Action::DeadLetterList,
            "/dead-letters",
            get(evaluations::dead_letters),
        ),
        read(Action::KeyList, "/keys", get(keys::list_keys)),
        read(Action::MeGet, "/me", get(keys::me)),
        read(Action::AuditList, "/audit", get(keys::audit)),
    ]
}

/// The whole API, without the outer layers (request ids, security headers).
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for r in v1() {
        api = api.route(r.path, r.handler);
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .nest("/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { HttpError(ApiError::not_found("route")) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_state_changing_route_runs_a_named_command() {
        for r in v1() {
            let safe = matches!(r.method, Method::GET | Method::HEAD | Method::OPTIONS);
            match r.runs {
                Runs::Command(a) => {
                    assert!(!safe, "{} {} is a read but runs {a}", r.method, r.path);
                    assert!(
                        a.is_command(),
                        "{} {}: {a} is not a command",
                        r.method,
                        r.path
                    );
                }
                Runs::Read(a) => {
                    assert!(
                        safe,
                        "{} {} changes state but runs no command",
                        r.method, r.path
                    );
                    assert!(!a.is_command(), "{} {}: {a} is a command", r.method, r.path);
                }
            }
        }
    }

    #[test]
    fn each_command_has_exactly_one_route() {
        let commands: Vec<Action> = v1()
            .into_iter()
            .filter_map(|r| match r.runs {
                Runs::Command(a) => Some(a),
                Runs::Read(_) => None,
            })
            .collect();
        let unique: BTreeSet<Action> = commands.iter().copied().collect();
        assert_eq!(unique.len(), commands.len(), "a command routed twice");
        let all: BTreeSet<Action> = Action::ALL.into_iter().filter(|a| a.is_command()).collect();
        assert_eq!(unique, all, "every command has a route");
    }

    #[test]
    fn the_table_and_the_openapi_document_name_the_same_operations() {
        use utoipa::OpenApi;
        let doc = openapi::ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
            ] {
                if op.is_some() && path.starts_with("/v1/") {
                    documented.insert(format!("{method} {path}"));
                }
            }
        }
        let routed: BTreeSet<String> = v1()
            .iter()
            .map(|r| format!("{} /v1{}", r.method, r.path))
            .collect();
        assert_eq!(routed, documented);
    }
}
