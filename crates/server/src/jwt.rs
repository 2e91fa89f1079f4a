//! External identity: JWTs signed by one configured issuer ([`JwtSettings`]).
//!
//! A bearer token that is not an Assay key (`ak_…`) and has the shape of a JWT is verified here
//! when `[jwt]` is configured:
//!
//! - the header's `alg` must be `RS256` or `ES256`: `none`, `HS*` and everything else are
//!   refused before any key is looked at, and the key found by `kid` must be of that very
//!   algorithm (an RSA key never verifies an HMAC or an EC signature: no algorithm confusion);
//!   keys embedded in the token (`jwk`, `jku`, `x5u`) are ignored;
//! - keys come only from the configured JWKS (a file or an URL), cached; an unknown `kid` makes
//!   one refresh, at most one per `jwks_min_refresh_secs`;
//! - `iss` must equal the issuer, `aud` must contain the audience, `exp` is required, `exp`
//!   and `nbf` hold within `leeway_secs`; `sub` is required;
//! - the tenant and the role are the configured claims; a missing or invalid tenant, a missing
//!   role (without `default_role`), an unknown role or `admin` (without `allow_admin`) is a 403
//!   with its own code.
//!
//! The [`Caller`] of a JWT has `key_id` `jwt:<sub>`, `name` `<sub>`, and `expires_at` the
//! token's `exp`. Tokens are never logged or echoed in errors.

use crate::settings::JwtSettings;
use assay_api::{ApiError, ErrorCode};
use assay_domain::Role;
use assay_service::Caller;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest JWKS document read (file or URL).
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Longest `sub` accepted (it becomes the caller's id in logs and the audit trail).
const MAX_SUB: usize = 200;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// Why the JWT settings cannot be used (at start).
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("jwt.{0} is required")]
    Missing(&'static str),
    #[error("jwt: exactly one of jwks_file and jwks_url is required")]
    Source,
    #[error("jwt.jwks_url: {0}")]
    Url(String),
    #[error("jwt.default_role {0:?}: one of admin, member, viewer")]
    Role(String),
    #[error("jwt.jwks_file: {0}")]
    Jwks(String),
}

/// Whether a bearer token has the shape of a JWS compact serialisation: three base64url
/// segments, the first a JSON object (`eyJ` is `{"`).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

enum Source {
    File(PathBuf),
    Url {
        client: reqwest::Client,
        url: String,
    },
}

/// The usable keys of one JWKS: by `kid`, each with the one algorithm it verifies.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    loaded: Option<Instant>,
}

/// Verifies JWTs against the configured issuer; holds the cached JWKS.
pub struct JwtVerifier {
    settings: JwtSettings,
    default_role: Option<Role>,
    source: Source,
    keys: RwLock<Arc<KeySet>>,
    /// When the last refresh was tried (rate limit), held while one runs.
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Checks the settings; a JWKS file is read now (an unreadable or keyless one is an error),
    /// an URL on first use (or by [`JwtVerifier::prime`]).
    pub fn new(settings: &JwtSettings) -> Result<JwtVerifier, JwtConfigError> {
        if settings.issuer.is_empty() {
            return Err(JwtConfigError::Missing("issuer"));
        }
        if settings.audience.is_empty() {
            return Err(JwtConfigError::Missing("audience"));
        }
        if settings.tenant_claim.is_empty() {
            return Err(JwtConfigError::Missing("tenant_claim"));
        }
        if settings.role_claim.is_empty() {
            return Err(JwtConfigError::Missing("role_claim"));
        }
        let default_role = settings
            .default_role
            .as_deref()
            .map(|r| Role::parse(r).ok_or_else(|| JwtConfigError::Role(r.to_string())))
            .transpose()?;
        let source = match (&settings.jwks_file, &settings.jwks_url) {
            (Some(f), None) => Source::File(f.clone()),
            (None, Some(u)) => {
                check_url(u)?;
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(settings.jwks_timeout_secs.max(1)))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| JwtConfigError::Url(e.to_string()))?;
                Source::Url {
                    client,
                    url: u.clone(),
                }
            }
            _ => return Err(JwtConfigError::Source),
        };
        let v = JwtVerifier {
            settings: settings.clone(),
            default_role,
            source,
            keys: RwLock::new(Arc::new(KeySet::default())),
            refresh: tokio::sync::Mutex::new(None),
        };
        if let Source::File(path) = &v.source {
            let text = std::fs::read(path)
                .map_err(|e| JwtConfigError::Jwks(format!("reading {}: {e}", path.display())))?;
            let set = parse_jwks(&text).map_err(JwtConfigError::Jwks)?;
            if set.by_kid.is_empty() {
                return Err(JwtConfigError::Jwks(format!(
                    "{}: no usable key (RS256 or ES256 with a kid)",
                    path.display()
                )));
            }
            *v.keys.write().expect("not poisoned") = Arc::new(set);
        }
        Ok(v)
    }

    /// Fetches the JWKS now (at start), so that the first request does not wait for it. A
    /// failure is only logged: the next token retries.
    pub async fn prime(&self) {
        if let Err(e) = self.refresh(true).await {
            tracing::warn!(error = %e, "JWKS not loaded; retried when a token arrives");
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.keys.read().expect("not poisoned").clone()
    }

    /// Loads the JWKS again unless one was tried less than `jwks_min_refresh_secs` ago
    /// (`force` ignores that: start-up).
    async fn refresh(&self, force: bool) -> Result<(), String> {
        let mut last = self.refresh.lock().await;
        let min = Duration::from_secs(self.settings.jwks_min_refresh_secs);
        if !force && last.is_some_and(|t| t.elapsed() < min) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let bytes = match &self.source {
            Source::File(path) => {
                std::fs::read(path).map_err(|e| format!("reading JWKS {}: {e}", path.display()))?
            }
            Source::Url { client, url } => fetch(client, url).await?,
        };
        let set = parse_jwks(&bytes)?;
        tracing::info!(keys = set.by_kid.len(), "JWKS loaded");
        *self.keys.write().expect("not poisoned") = Arc::new(set);
        Ok(())
    }

    /// The key named `kid`, refreshing the JWKS once (rate-limited) if it is unknown or, for an
    /// URL, older than `jwks_max_age_secs`.
    async fn key(&self, kid: &str) -> Result<Option<(Algorithm, DecodingKey)>, ApiError> {
        let max_age = Duration::from_secs(self.settings.jwks_max_age_secs);
        let set = self.snapshot();
        let stale = matches!(self.source, Source::Url { .. })
            && set.loaded.is_none_or(|t| t.elapsed() > max_age);
        if !stale && let Some(k) = set.by_kid.get(kid) {
            return Ok(Some(k.clone()));
        }
        if let Err(e) = self.refresh(false).await {
            tracing::warn!(error = %e, "JWKS refresh failed");
            if self.snapshot().loaded.is_none() {
                return Err(ApiError::new(
                    ErrorCode::JwksUnavailable,
                    "the identity provider's keys could not be loaded; try again later",
                ));
            }
        }
        Ok(self.snapshot().by_kid.get(kid).cloned())
    }

    /// Verifies `token`; the caller it names, or the error to answer.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let alg = header_alg(token)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("malformed JWT"))?;
        if header.alg != alg {
            return Err(ApiError::unauthorized("malformed JWT"));
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized("JWT without kid"))?;
        let (key_alg, key) = self
            .key(kid)
            .await?
            .ok_or_else(|| ApiError::unauthorized("JWT signed by an unknown key (kid)"))?;
        if key_alg != alg {
            return Err(ApiError::unauthorized(
                "JWT algorithm does not match its key",
            ));
        }
        let mut validation = Validation::new(key_alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                ApiError::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "JWT expired",
                    ErrorKind::ImmatureSignature => "JWT not valid yet (nbf)",
                    ErrorKind::InvalidIssuer => "JWT issuer not accepted",
                    ErrorKind::InvalidAudience => "JWT audience not accepted",
                    ErrorKind::InvalidSignature => "JWT signature invalid",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "JWT lacks a required claim (exp, iss, aud, sub)"
                    }
                    ErrorKind::InvalidAlgorithm => "JWT algorithm does not match its key",
                    _ => "invalid JWT",
                })
            })?;
        self.caller(&data.claims)
    }

    /// Maps verified claims to a caller.
    fn caller(&self, claims: &Map<String, Value>) -> Result<Caller, ApiError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_SUB)
            .filter(|s| !s.chars().any(char::is_control))
            .ok_or_else(|| {
                ApiError::unauthorized("JWT sub must be 1 to 200 characters without controls")
            })?;
        let tenant = match claims.get(&self.settings.tenant_claim) {
            None | Some(Value::Null) => {
                return Err(forbidden(
                    ErrorCode::JwtTenantMissing,
                    format!("the JWT has no {:?} claim (tenant)", self.settings.tenant_claim),
                ));
            }
            Some(v) => v
                .as_str()
                .filter(|t| assay_service::keys::validate_tenant(t).is_ok())
                .ok_or_else(|| {
                    forbidden(
                        ErrorCode::JwtTenantInvalid,
                        format!(
                            "the JWT's {:?} claim is not a tenant name ([a-z0-9][a-z0-9-_.]{{0,62}})",
                            self.settings.tenant_claim
                        ),
                    )
                })?,
        };
        let role = match claims.get(&self.settings.role_claim) {
            None | Some(Value::Null) => self.default_role.ok_or_else(|| {
                forbidden(
                    ErrorCode::JwtRoleMissing,
                    format!(
                        "the JWT has no {:?} claim (role) and no default role is configured",
                        self.settings.role_claim
                    ),
                )
            })?,
            Some(v) => v.as_str().and_then(Role::parse).ok_or_else(|| {
                forbidden(
                    ErrorCode::JwtRoleInvalid,
                    format!(
                        "the JWT's {:?} claim is not a role (admin, member, viewer)",
                        self.settings.role_claim
                    ),
                )
            })?,
        };
        if role == Role::Admin && !self.settings.allow_admin {
            return Err(forbidden(
                ErrorCode::JwtRoleInvalid,
                "the admin role is not accepted from JWTs on this server (jwt.allow_admin)",
            ));
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map(|s| s.saturating_mul(1000));
        Ok(Caller {
            key_id: format!("jwt:{sub}"),
            name: sub.to_string(),
            tenant: tenant.to_string(),
            role,
            expires_at,
        })
    }
}

fn forbidden(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// The header's `alg`, read before anything else: only RS256 and ES256 go on.
fn header_alg(token: &str) -> Result<Algorithm, ApiError> {
    use base64::Engine;
    let head = token.split('.').next().unwrap_or("");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .ok_or_else(|| ApiError::unauthorized("malformed JWT"))?;
    match json.get("alg").and_then(Value::as_str) {
        Some("RS256") => Ok(Algorithm::RS256),
        Some("ES256") => Ok(Algorithm::ES256),
        _ => Err(ApiError::unauthorized(
            "JWT algorithm not accepted (RS256 or ES256 only)",
        )),
    }
}

/// `https://`, or `http://` to a loopback address (tests, a local sidecar).
fn check_url(u: &str) -> Result<(), JwtConfigError> {
    let url = reqwest::Url::parse(u).map_err(|e| JwtConfigError::Url(format!("{u:?}: {e}")))?;
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(JwtConfigError::Url(format!(
            "{u:?}: must be https:// (http:// only to a loopback address)"
        ))),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("fetching JWKS: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("fetching JWKS: HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("fetching JWKS: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
        }
    }
    Ok(body)
}

/// The usable keys of a JWKS document: signing keys with a `kid` that are RSA (at least 2048
/// bits; RS256) or EC P-256 (ES256). Other keys are skipped; a key whose `alg` names another
/// algorithm is skipped too.
fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no \"keys\" array")?;
    let mut by_kid = HashMap::new();
    for k in keys {
        // One odd key (another type, a newer field) must not hide the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        if let Some((kid, alg, key)) = usable(&jwk) {
            by_kid.insert(kid, (alg, key));
        }
    }
    Ok(KeySet {
        by_kid,
        loaded: Some(Instant::now()),
    })
}

fn usable(jwk: &Jwk) -> Option<(String, Algorithm, DecodingKey)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            // base64url without padding: 4 characters per 3 bytes.
            if p.n.trim_end_matches('=').len() * 3 / 4 < MIN_RSA_BYTES {
                return None;
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => {}
        Some(KeyAlgorithm::RS256) if alg == Algorithm::RS256 => {}
        Some(KeyAlgorithm::ES256) if alg == Algorithm::ES256 => {}
        Some(_) => return None,
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, alg, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        assert!(!looks_like_jwt("ak_0123"));
        assert!(!looks_like_jwt("eyJ.a.b.c"));
        assert!(!looks_like_jwt("abc.def.ghi"));
        assert!(!looks_like_jwt("eyJh bG.x.y"));
    }

    #[test]
    fn only_rs256_and_es256_pass_the_header_check() {
        use base64::Engine;
        let enc = |h: &str| {
            format!(
                "{}.e30.sig",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h)
            )
        };
        assert_eq!(
            header_alg(&enc(r#"{"alg":"RS256"}"#)).unwrap(),
            Algorithm::RS256
        );
        assert_eq!(
            header_alg(&enc(r#"{"alg":"ES256"}"#)).unwrap(),
            Algorithm::ES256
        );
        for bad in ["none", "None", "HS256", "HS512", "RS512", "PS256", "EdDSA"] {
            let e = header_alg(&enc(&format!(r#"{{"alg":"{bad}"}}"#))).unwrap_err();
            assert_eq!(e.status(), 401, "{bad}");
        }
        assert!(header_alg("!!.e30.x").is_err());
    }

    #[test]
    fn urls_must_be_https_or_loopback() {
        assert!(check_url("https://idp.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://idp.example.com/jwks").is_err());
        assert!(check_url("file:///etc/jwks.json").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn settings_are_checked() {
        let ok = JwtSettings {
            issuer: "https://idp".into(),
            audience: "assay".into(),
            jwks_url: Some("https://idp/jwks".into()),
            ..JwtSettings::default()
        };
        assert!(JwtVerifier::new(&ok).is_ok());
        let both = JwtSettings {
            jwks_file: Some("/x".into()),
            ..ok.clone()
        };
        assert!(matches!(
            JwtVerifier::new(&both),
            Err(JwtConfigError::Source)
        ));
        let no_aud = JwtSettings {
            audience: String::new(),
            ..ok.clone()
        };
        assert!(matches!(
            JwtVerifier::new(&no_aud),
            Err(JwtConfigError::Missing("audience"))
        ));
        let bad_role = JwtSettings {
            default_role: Some("root".into()),
            ..ok
        };
        assert!(matches!(
            JwtVerifier::new(&bad_role),
            Err(JwtConfigError::Role(_))
        ));
    }

    #[test]
    fn jwks_keeps_only_usable_signing_keys() {
        let n = "A".repeat(342);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "weird", "kid": "w"},
        ]});
        let set = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = set.by_kid.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["rsa"]);
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"nope").is_err());
    }
}
