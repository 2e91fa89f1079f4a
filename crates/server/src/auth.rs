//! Authentication of `/v1` calls: `Authorization: Bearer <key>` (an Assay API key, checked by
//! the service), or, with `[jwt]` configured, a JWT of the configured issuer
//! ([`crate::jwt`]). Keys and tokens in query strings are refused. Every refusal is recorded in
//! the audit log as `auth.failed`; on success the request carries its [`Context`].

use crate::error::HttpError;
use crate::request::new_request_id;
use crate::state::AppState;
use assay_api::{ApiError, CREDENTIAL_QUERY_PARAMS, ErrorCode};
use assay_service::{Caller, Context, RequestMeta};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: authenticates the call and puts its [`Context`] in the request's extensions.
pub async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let meta = req
        .extensions()
        .get::<RequestMeta>()
        .cloned()
        .unwrap_or_else(|| RequestMeta {
            request_id: new_request_id(),
            source: None,
        });
    // Only what identification needs, so that the request (not `Sync`) is not held across
    // awaits.
    let query = req.uri().query().map(str::to_string);
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    match identify(&st, &meta, query.as_deref(), authorization.as_ref()).await {
        Ok(caller) => {
            req.extensions_mut().insert(Context { meta, caller });
            next.run(req).await
        }
        Err(e) => HttpError(e).into_response(),
    }
}

/// The caller a request's credentials name, or the refusal (recorded).
async fn identify(
    st: &AppState,
    meta: &RequestMeta,
    query: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> Result<Caller, ApiError> {
    let refuse = |e: ApiError, credential: Option<&str>| {
        let svc = st.service.clone();
        let meta = meta.clone();
        let credential = credential.map(str::to_string);
        async move {
            svc.auth_failed(&meta, &e, credential.as_deref()).await;
            e
        }
    };
    if credential_in_query(query) {
        let e = ApiError::new(
            ErrorCode::KeyInQuery,
            "API keys are not accepted in the query string; use the Authorization header",
        );
        return Err(refuse(e, None).await);
    }
    let Some(value) = authorization else {
        let e =
            ApiError::unauthorized("missing Authorization header (Authorization: Bearer <key>)");
        return Err(refuse(e, None).await);
    };
    let Ok(value) = value.to_str() else {
        return Err(refuse(
            ApiError::unauthorized("malformed Authorization header"),
            None,
        )
        .await);
    };
    // The scheme is case-insensitive (RFC 9110 11.1); the credential is what follows one space.
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim())
        .filter(|k| !k.is_empty());
    let Some(token) = token else {
        let presented = value.split_once(' ').map(|(_, k)| k);
        let e = ApiError::unauthorized("malformed Authorization header (expected: Bearer <key>)");
        return Err(refuse(e, presented).await);
    };
    if !token.starts_with("ak_") && crate::jwt::looks_like_jwt(token) {
        let verified = match st.jwt.as_ref() {
            Some(verifier) => verifier.verify(token).await,
            None => Err(ApiError::unauthorized(
                "JWTs are not accepted here (no [jwt] issuer configured)",
            )),
        };
        return match verified {
            Ok(caller) => Ok(caller),
            Err(e) => Err(refuse(e, Some(token)).await),
        };
    }
    st.service.authenticate_key(meta, token).await
}

/// Whether the query string names a credential parameter (keys go only in the header).
fn credential_in_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let k = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
            CREDENTIAL_QUERY_PARAMS.contains(&k.as_str())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_query_strings_are_noticed() {
        for q in [
            "key=x",
            "a=1&API_KEY=x",
            "token",
            "jwt=a.b.c",
            "x=1&id_token=2",
        ] {
            assert!(credential_in_query(Some(q)), "{q}");
        }
        for q in ["keys=1", "limit=5&cursor=x", "monkey=1"] {
            assert!(!credential_in_query(Some(q)), "{q}");
        }
        assert!(!credential_in_query(None));
    }
}
