//! API keys: made, hashed and checked here, and nowhere else (the API's key commands, the
//! first-start bootstrap and the offline recovery all call [`new_key`]).
//!
//! A key is `ak_` and 40 hex digits (160 random bits), shown once; the store keeps only its
//! SHA-256 hash. Its id (`key_` and 12 hex digits) names it in lists and logs.

use crate::{Caller, RequestMeta, Service, store_error};
use assay_api::{ApiError, ErrorCode};
use assay_domain::Role;
use assay_store::{ApiKey, Millis, Store, now_millis};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest key name, in characters.
pub const MAX_KEY_NAME: usize = 100;
/// Longest tenant name, in characters.
pub const MAX_TENANT: usize = 63;

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key (`ak_` + 40 hex characters, 160 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("ak_{}", hex::encode(bytes))
}

/// A new key id: `key_` and 12 hex digits (not secret).
pub fn new_key_id() -> String {
    format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A tenant name: `[a-z0-9][a-z0-9-_.]{0,62}`.
pub fn validate_tenant(tenant: &str) -> Result<(), ApiError> {
    let mut chars = tenant.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok && tenant.len() <= MAX_TENANT {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidTenant,
        format!(
            "tenant {tenant:?}: 1 to {MAX_TENANT} characters of a-z, 0-9, '-', '_' and '.', \
             starting with a letter or digit"
        ),
    ))
}

/// A key's name: 1 to 100 characters, not only spaces, no control characters.
pub fn validate_key_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_KEY_NAME || name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!(
                "name: 1 to {MAX_KEY_NAME} characters, not only spaces, without control characters"
            ),
        ));
    }
    Ok(())
}

pub fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRole,
            format!("role {role:?}: one of admin, member, viewer"),
        )
    })
}

/// A new key, validated: the secret (to show once) and what to store (its hash, never the
/// secret). `expires_at`, when given, must be after `now`.
pub fn new_key(
    tenant: &str,
    role: Role,
    name: &str,
    expires_at: Option<Millis>,
    now: Millis,
) -> Result<(String, ApiKey), ApiError> {
    validate_tenant(tenant)?;
    validate_key_name(name)?;
    if expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::new(
            ErrorCode::InvalidExpiry,
            "expires_at must be in the future",
        ));
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

/// On first start (no key in the store), creates an admin key of tenant `default`, stores its
/// hash and writes the key to `<data_dir>/admin.key` with mode 0600. Returns the file's path
/// when it created one.
pub async fn bootstrap_admin_key(
    store: &dyn Store,
    data_dir: &Path,
) -> Result<Option<PathBuf>, String> {
    if store.count_keys().await.map_err(|e| e.to_string())? > 0 {
        return Ok(None);
    }
    let (key, stored) = new_key(
        "default",
        Role::Admin,
        "bootstrap admin",
        None,
        now_millis(),
    )
    .map_err(|e| e.message)?;
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
    let stored = ApiKey {
        id: new_key_id(),
        name: "operator admin (config)".into(),
        tenant: "default".into(),
        role: Role::Admin,
        hash,
        created_at: now_millis(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    store.create_key(&stored).await.map_err(|e| e.to_string())?;
    Ok(Some(stored.id))
}

impl Service {
    /// Authenticates an API key. A refusal (unknown, revoked or expired key) is recorded as a
    /// failed authentication.
    pub async fn authenticate_key(
        &self,
        meta: &RequestMeta,
        key: &str,
    ) -> Result<Caller, ApiError> {
        let result = self.check_key(key).await;
        if let Err(e) = &result {
            self.auth_failed(meta, e, Some(key)).await;
        }
        result
    }

    async fn check_key(&self, key: &str) -> Result<Caller, ApiError> {
        let now = now_millis();
        let found = self
            .store()
            .use_key(&hash_key(key), now)
            .await
            .map_err(store_error)?;
        let k = found.ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        if k.revoked_at.is_some() {
            return Err(ApiError::unauthorized("API key revoked"));
        }
        if k.expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthorized("API key expired"));
        }
        Ok(Caller {
            key_id: k.id,
            name: k.name,
            tenant: k.tenant,
            role: k.role,
            expires_at: k.expires_at,
        })
    }
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
                ErrorCode::InvalidTenant,
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
                ErrorCode::InvalidName,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roles_and_expiry() {
        assert_eq!(parse_role("viewer"), Ok(Role::Viewer));
        assert_eq!(parse_role("root").unwrap_err().code, ErrorCode::InvalidRole);
        assert_eq!(
            parse_role("Admin").unwrap_err().code,
            ErrorCode::InvalidRole
        );
        let now = 1_700_000_000_000;
        let err = new_key("t", Role::Member, "n", Some(now), now).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidExpiry);
        let (secret, key) = new_key("t", Role::Member, "n", Some(now + 1), now).unwrap();
        assert_eq!(key.hash, hash_key(&secret));
        assert_ne!(key.hash, secret);
        assert!(key.id.starts_with("key_") && key.id.len() == 16);
        assert_eq!(
            (key.created_at, key.expires_at, key.revoked_at),
            (now, Some(now + 1), None)
        );
    }

    #[test]
    fn operator_keys() {
        assert!(valid_operator_key(&format!("ak_{}", "a".repeat(32))));
        assert!(!valid_operator_key(&format!("ak_{}", "a".repeat(31))));
        assert!(!valid_operator_key(&format!("xk_{}", "a".repeat(40))));
        assert!(!valid_operator_key(&format!("ak_{}!", "a".repeat(40))));
    }
}
