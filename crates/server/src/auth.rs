//! API keys: random, shown once, stored as SHA-256; `Authorization: Bearer <key>` on every
//! `/v1` call. With `[jwt]` configured, a bearer token that is not an Assay key (`ak_…`) but a
//! JWT is verified by [`crate::jwt`]. Keys and tokens in query strings are never accepted.

use crate::AppState;
use crate::error::ApiError;
use assay_store::{Millis, Role, Store, now_millis};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The caller, as authenticated.
///
/// What a role may do: `admin` everything, in every tenant; `member` submit, read and cancel
/// its own tenant's evaluations; `viewer` read its own tenant's evaluations. Routes on one
/// evaluation first resolve the id within the caller's tenants ([`Caller::can_see`]: another
/// tenant's evaluation is a 404, exactly like one that does not exist), then check the role
/// (403 `forbidden`).
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: String,
    /// The key's name.
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub expires_at: Option<Millis>,
}

impl Caller {
    /// The tenant filter for reads: admins see every tenant.
    pub fn tenant_scope(&self) -> Option<String> {
        (self.role != Role::Admin).then(|| self.tenant.clone())
    }

    pub fn can_see(&self, tenant: &str) -> bool {
        self.role == Role::Admin || self.tenant == tenant
    }

    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role == Role::Viewer {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "this key is read-only",
            ));
        }
        Ok(())
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role != Role::Admin {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "admin key required",
            ));
        }
        Ok(())
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key (`ak_` + 40 hex characters, 160 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("ak_{}", hex::encode(bytes))
}

/// On first start (no key in the store), creates an admin key, stores its hash and writes the
/// key to `<data_dir>/admin.key` with mode 0600. Returns the file's path when it created one.
pub async fn bootstrap_admin_key(
    store: &dyn Store,
    data_dir: &Path,
) -> Result<Option<PathBuf>, String> {
    if store.count_keys().await.map_err(|e| e.to_string())? > 0 {
        return Ok(None);
    }
    let (key, stored) = crate::keys::new_key(
        "default",
        Role::Admin,
        "bootstrap admin",
        None,
        now_millis(),
    )
    .map_err(|e| e.to_string())?;
    let path = data_dir.join("admin.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        writeln!(f, "{key}").map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    store.create_key(&stored).await.map_err(|e| e.to_string())?;
    Ok(Some(path))
}

/// Whether `key` is acceptable as an operator-provided admin key: `ak_` and at least 32 of
/// `A-Z a-z 0-9 - _` (at most 200).
pub fn valid_operator_key(key: &str) -> bool {
    key.strip_prefix("ak_").is_some_and(|rest| {
        (32..=200).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Installs the operator's admin key (`[admin] key`, e.g. from `ASSAY_ADMIN__KEY_FILE`) as an
/// admin key of tenant `default`, stored as its hash, unless a key with that hash exists.
/// Returns the new key's id, or `None` when it was known (a revoked one stays revoked).
/// Errors never contain the key.
pub async fn install_operator_admin_key(
    store: &dyn Store,
    key: &str,
) -> Result<Option<String>, String> {
    if !valid_operator_key(key) {
        return Err(
            "admin.key: must be ak_ followed by 32 to 200 of A-Z a-z 0-9 - _ (e.g. ak_ and \
             `openssl rand -hex 20`)"
                .into(),
        );
    }
    let hash = hash_key(key);
    let known = store
        .list_keys(Some("default"))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(k) = known.iter().find(|k| k.hash == hash) {
        if k.revoked_at.is_some() {
            tracing::warn!(key = %k.id, "the configured admin key was revoked; it stays revoked");
        }
        return Ok(None);
    }
    let now = now_millis();
    let stored = assay_store::ApiKey {
        id: crate::keys::new_key_id(),
        name: "operator admin (config)".into(),
        tenant: "default".into(),
        role: Role::Admin,
        hash,
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    store.create_key(&stored).await.map_err(|e| e.to_string())?;
    Ok(Some(stored.id))
}

/// Middleware: authenticates `/v1` calls and puts the [`Caller`] in the request extensions.
pub async fn require_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(q) = req.uri().query()
        && q.split('&').any(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            matches!(
                k.to_ascii_lowercase().as_str(),
                "key" | "api_key" | "apikey" | "token" | "access_token" | "jwt" | "id_token"
            )
        })
    {
        return Err(ApiError::bad_request(
            "key_in_query",
            "API keys are not accepted in the query string; use the Authorization header",
        ));
    }
    let header = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing Authorization header (Authorization: Bearer <key>)")
    })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    // The scheme is case-insensitive (RFC 9110 11.1); the key is everything after one space.
    let key = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header (expected: Bearer <key>)")
        })?;
    let caller = if !key.starts_with("ak_") && crate::jwt::looks_like_jwt(key) {
        // External identity (see `jwt.rs`): only when an issuer is configured.
        let verifier = state.jwt.as_ref().ok_or_else(|| {
            ApiError::unauthorized("JWTs are not accepted here (no [jwt] issuer configured)")
        })?;
        verifier.verify(key).await?
    } else {
        let now = now_millis();
        let found = state.store.use_key(&hash_key(key), now).await?;
        let k = found.ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        if k.revoked_at.is_some() {
            return Err(ApiError::unauthorized("API key revoked"));
        }
        if k.expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthorized("API key expired"));
        }
        Caller {
            key_id: k.id,
            name: k.name,
            tenant: k.tenant,
            role: k.role,
            expires_at: k.expires_at,
        }
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_stable() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("ak_") && a.len() == 43);
        assert_eq!(hash_key("x"), hash_key("x"));
        assert_eq!(hash_key("x").len(), 64);
    }
}
