//! `assay-server`: the HTTP API (axum). The only crate that knows HTTP.
//!
//! Handlers turn a request into a command or a query of the service (`assay-service`) and
//! render the outcome; every route is in one table ([`routes`]). Around them: request ids and
//! spans ([`request`]), authentication ([`auth`]: API keys through the service, JWTs of one
//! configured issuer through [`jwt`]), security headers and CORS ([`http`]), Server-Sent Events
//! ([`sse`]), whole output streams with byte ranges ([`output`]), the OpenAPI document ([`openapi`]).
#![forbid(unsafe_code)]

mod auth;
pub mod error;
mod evaluations;
mod extract;
mod health;
pub mod http;
pub mod jwt;
mod keys;
pub mod openapi;
mod output;
pub mod request;
pub mod routes;
pub mod settings;
mod sse;
mod state;

pub use state::AppState;

/// The whole API as an axum router: the routes, then security headers and CORS, then (outermost)
/// request ids, so that every answer, CORS preflights included, carries its `X-Request-Id`.
pub fn router(state: AppState) -> axum::Router {
    let http = state.settings.http.clone();
    http::harden(routes::router(state), &http).layer(axum::middleware::from_fn(request::request_id))
}

/// The OpenAPI document, as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    openapi::document()
}
