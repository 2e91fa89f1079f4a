//! HTTP hygiene around the whole router: security headers on every response (successes,
//! errors, the 404 fallback, `/healthz`, SSE, CORS preflights) and CORS, closed unless
//! `[http] cors_allowed_origins` lists origins.

use crate::settings::HttpSettings;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// The Content-Security-Policy of API answers: nothing may be loaded, nothing may frame them.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Why `[http]` settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("http.cors_allowed_origins: {0}")]
pub struct InvalidHttpSettings(String);

/// Checks the settings (at start): each CORS origin is `http(s)://host[:port]`, exactly as a
/// browser sends it (no path, no trailing slash, no wildcard).
pub fn check(http: &HttpSettings) -> Result<(), InvalidHttpSettings> {
    for o in &http.cors_allowed_origins {
        let ok = (o.starts_with("https://") || o.starts_with("http://"))
            && !o.contains('*')
            && reqwest::Url::parse(o).is_ok_and(|u| {
                u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.origin().ascii_serialization() == *o
            })
            && HeaderValue::from_str(o).is_ok();
        if !ok {
            return Err(InvalidHttpSettings(format!(
                "{o:?} is not an origin like https://dash.example.com (no path, no wildcard)"
            )));
        }
    }
    Ok(())
}

/// `router` with the security headers and, if configured, CORS.
pub fn harden(router: Router, http: &HttpSettings) -> Router {
    let origins: Vec<HeaderValue> = http
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let mut router = router;
    if !origins.is_empty() {
        // Bearer tokens only, no cookies: credentials are not allowed cross-origin.
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    header::LOCATION,
                    header::RETRY_AFTER,
                    HeaderName::from_static("x-request-id"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    if http.behind_tls {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Overriding: axum's SSE answers say `no-cache` (which still allows storing them).
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> HttpSettings {
        HttpSettings {
            cors_allowed_origins: list.iter().map(|s| s.to_string()).collect(),
            ..HttpSettings::default()
        }
    }

    #[test]
    fn origins_are_checked() {
        assert!(check(&origins(&[])).is_ok());
        assert!(
            check(&origins(&[
                "https://dash.example.com",
                "http://localhost:5173"
            ]))
            .is_ok()
        );
        for bad in [
            "*",
            "https://*.example.com",
            "https://dash.example.com/",
            "https://dash.example.com/app",
            "dash.example.com",
            "ftp://x.example.com",
            "https://u:p@x.example.com",
            "null",
        ] {
            assert!(check(&origins(&[bad])).is_err(), "{bad}");
        }
    }
}
