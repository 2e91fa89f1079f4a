//! API keys as a resource: `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}` (admin
//! keys only) and `GET /v1/me` (any valid key).
//!
//! A key's secret is generated here, returned once by `POST /v1/keys` and never stored: the
//! store keeps its SHA-256 hash. No answer ever carries a hash or (after creation) a secret.

use crate::AppState;
use crate::auth::{Caller, generate_key, hash_key};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::view::{CreateKeyRequest, KeyList, KeyView, MeView, NewKeyView, parse_time};
use assay_store::{ApiKey, Millis, Role, StoreError, now_millis};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

/// Longest key name, in characters.
pub const MAX_KEY_NAME: usize = 100;
/// Longest tenant name, in characters.
pub const MAX_TENANT: usize = 63;

/// Why the fields of a new key are not acceptable: a stable code (`invalid_tenant`,
/// `invalid_role`, `invalid_name`, `invalid_expiry`) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidKey {
    pub code: &'static str,
    pub message: String,
}

impl From<InvalidKey> for ApiError {
    fn from(e: InvalidKey) -> ApiError {
        ApiError::unprocessable(e.code, e.message)
    }
}

/// A tenant name: `[a-z0-9][a-z0-9-_.]{0,62}`.
pub fn validate_tenant(tenant: &str) -> Result<(), InvalidKey> {
    let mut chars = tenant.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok && tenant.len() <= MAX_TENANT {
        return Ok(());
    }
    Err(InvalidKey {
        code: "invalid_tenant",
        message: format!(
            "tenant {tenant:?}: 1 to {MAX_TENANT} characters of a-z, 0-9, '-', '_' and '.', \
             starting with a letter or digit"
        ),
    })
}

/// A key's name: 1 to 100 characters, not only spaces, no control characters.
pub fn validate_key_name(name: &str) -> Result<(), InvalidKey> {
    let n = name.chars().count();
    if n == 0 || n > MAX_KEY_NAME || name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(InvalidKey {
            code: "invalid_name",
            message: format!(
                "name: 1 to {MAX_KEY_NAME} characters, not only spaces, without control characters"
            ),
        });
    }
    Ok(())
}

pub fn parse_role(role: &str) -> Result<Role, InvalidKey> {
    Role::parse(role).ok_or_else(|| InvalidKey {
        code: "invalid_role",
        message: format!("role {role:?}: one of admin, member, viewer"),
    })
}

/// A new key id: `key_` and 12 hex digits (not secret: it names the key in lists and logs).
pub fn new_key_id() -> String {
    format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A new key, validated: the secret (to show once) and what to store (its hash, never the
/// secret). `expires_at`, when given, must be after `now`.
pub fn new_key(
    tenant: &str,
    role: Role,
    name: &str,
    expires_at: Option<Millis>,
    now: Millis,
) -> Result<(String, ApiKey), InvalidKey> {
    validate_tenant(tenant)?;
    validate_key_name(name)?;
    if let Some(e) = expires_at
        && e <= now
    {
        return Err(InvalidKey {
            code: "invalid_expiry",
            message: "expires_at must be in the future".into(),
        });
    }
    let secret = generate_key();
    let key = ApiKey {
        id: new_key_id(),
        name: name.to_string(),
        tenant: tenant.to_string(),
        role,
        hash: hash_key(&secret),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    Ok((secret, key))
}

/// Create an API key (admin keys only). The answer is the only time the key itself is shown:
/// only its SHA-256 hash is stored.
#[utoipa::path(post, path = "/v1/keys", request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown only in this answer", body = NewKeyView),
        (status = 401, description = "No or bad API key", body = ErrorBody),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
        (status = 422, description = "`invalid_tenant`, `invalid_role`, `invalid_name`, `invalid_expiry` or `invalid_request`", body = ErrorBody),
    ))]
pub(crate) async fn create_key(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let role = parse_role(&req.role)?;
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|s| {
            parse_time(s).ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_expiry",
                    "expires_at must be an RFC 3339 time (e.g. 2030-01-31T12:00:00Z)",
                )
            })
        })
        .transpose()?;
    let (secret, key) = new_key(&req.tenant, role, &req.name, expires_at, now_millis())?;
    st.store.create_key(&key).await?;
    tracing::info!(by = %caller.key_id, key = %key.id, tenant = %key.tenant, role = key.role.as_str(), "API key created");
    Ok((StatusCode::CREATED, Json(NewKeyView::new(&key, secret))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeyListParams {
    /// Only this tenant's keys.
    tenant: Option<String>,
}

/// List API keys (admin keys only), oldest first, revoked and expired ones included. Never
/// shows a key or its hash.
#[utoipa::path(get, path = "/v1/keys", params(KeyListParams),
    responses(
        (status = 200, body = KeyList),
        (status = 400, body = ErrorBody),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
    ))]
pub(crate) async fn list_keys(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<KeyListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyList>, ApiError> {
    caller.require_admin()?;
    let p = crate::api::params(q)?;
    let now = now_millis();
    let keys = st.store.list_keys(p.tenant.as_deref()).await?;
    Ok(Json(KeyList {
        items: keys.iter().map(|k| KeyView::new(k, now)).collect(),
    }))
}

/// Revoke an API key (admin keys only): the next request with it is a 401. Revoking a revoked
/// key changes nothing.
#[utoipa::path(delete, path = "/v1/keys/{id}", params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked (now or before)", body = KeyView),
        (status = 403, description = "Not an admin key (`forbidden`)", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub(crate) async fn revoke_key(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    caller.require_admin()?;
    let now = now_millis();
    let key = match st.store.revoke_key(&id, now).await {
        Ok(k) => k,
        Err(StoreError::NotFound(_)) => return Err(ApiError::not_found("key")),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(by = %caller.key_id, key = %key.id, tenant = %key.tenant, "API key revoked");
    Ok(Json(KeyView::new(&key, now)))
}

/// The key making this request: its id, name, tenant and role.
#[utoipa::path(get, path = "/v1/me",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub(crate) async fn me(Extension(caller): Extension<Caller>) -> Json<MeView> {
    Json(MeView::from(&caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for ok in ["a", "0", "acme", "team-1", "a_b.c", &"a".repeat(63)] {
            assert_eq!(validate_tenant(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "Acme",
            "-a",
            "_a",
            ".a",
            "a b",
            "a/b",
            "ü",
            "a\n",
            &"a".repeat(64),
        ] {
            assert_eq!(
                validate_tenant(bad).unwrap_err().code,
                "invalid_tenant",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_names() {
        for ok in ["x", "CI runner (nightly)", "ünïcode ✓", &"é".repeat(100)] {
            assert_eq!(validate_key_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "   ", "a\nb", "tab\t", &"a".repeat(101)] {
            assert_eq!(
                validate_key_name(bad).unwrap_err().code,
                "invalid_name",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roles_and_expiry() {
        assert_eq!(parse_role("viewer"), Ok(Role::Viewer));
        assert_eq!(parse_role("root").unwrap_err().code, "invalid_role");
        assert_eq!(parse_role("Admin").unwrap_err().code, "invalid_role");
        let now = 1_700_000_000_000;
        let err = new_key("t", Role::Member, "n", Some(now), now).unwrap_err();
        assert_eq!(err.code, "invalid_expiry");
        let (secret, key) = new_key("t", Role::Member, "n", Some(now + 1), now).unwrap();
        assert_eq!(key.hash, hash_key(&secret));
        assert_ne!(key.hash, secret);
        assert!(key.id.starts_with("key_") && key.id.len() == 16);
        assert_eq!(
            (key.created_at, key.expires_at, key.revoked_at),
            (now, Some(now + 1), None)
        );
    }
}
