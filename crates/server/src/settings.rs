//! Operator settings the API enforces. The binary loads them (config file, `ASSAY_*`
//! environment, `*_FILE` secrets); this crate only reads them.

use assay_domain::QuotaPolicy;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Per-tenant quotas and backpressure.
    pub quotas: QuotaPolicy,
    /// External identity: JWTs from a configured issuer. `None`: API keys only.
    pub jwt: Option<JwtSettings>,
    /// HTTP-level settings (CORS).
    pub http: HttpSettings,
    /// Operator-provided secrets for the admin (`[admin] key`, usually `ASSAY_ADMIN__KEY_FILE`).
    pub admin: AdminSettings,
}

/// Accepting JWTs from an external issuer (see `docs/configuration.md`, "External identity").
///
/// A token is accepted when it is signed with RS256 or ES256 by a key of the issuer's JWKS
/// (found by the header's `kid`), its `iss` equals [`issuer`](Self::issuer), its `aud` is or
/// contains [`audience`](Self::audience), and `exp` (required) and `nbf` (if present) hold
/// within [`leeway_secs`](Self::leeway_secs). The caller's tenant is the claim named
/// [`tenant_claim`](Self::tenant_claim), its role the claim named
/// [`role_claim`](Self::role_claim) (`admin`, `member` or `viewer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// The exact `iss` tokens must carry (required).
    pub issuer: String,
    /// The `aud` tokens must carry (required; a token's `aud` list must contain it).
    pub audience: String,
    /// The issuer's public keys, a JWKS document in a file (re-read when a token names an
    /// unknown `kid`). Exactly one of `jwks_file` and `jwks_url`.
    pub jwks_file: Option<std::path::PathBuf>,
    /// The issuer's public keys, fetched from this URL (`https://`; `http://` only to a
    /// loopback address), cached, and fetched again when a token names an unknown `kid` or
    /// the copy is older than `jwks_max_age_secs`.
    pub jwks_url: Option<String>,
    /// The claim holding the caller's tenant (a tenant name: `[a-z0-9][a-z0-9-_.]{0,62}`).
    pub tenant_claim: String,
    /// The claim holding the caller's role: `admin`, `member` or `viewer`.
    pub role_claim: String,
    /// The role of a token without the role claim. None (the default): such a token is
    /// refused (403 `jwt_role_missing`).
    pub default_role: Option<String>,
    /// Whether a token may carry the `admin` role (every tenant). Off by default: admin work
    /// is done with Assay keys.
    pub allow_admin: bool,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Timeout of one JWKS fetch, in seconds.
    pub jwks_timeout_secs: u64,
    /// A fetched JWKS is fetched again after this many seconds.
    pub jwks_max_age_secs: u64,
    /// At most one refresh (file or URL) per this many seconds, however many unknown `kid`s
    /// arrive: unknown keys cannot make Assay hammer the issuer.
    pub jwks_min_refresh_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: None,
            jwks_url: None,
            tenant_claim: "tenant".into(),
            role_claim: "role".into(),
            default_role: None,
            allow_admin: false,
            leeway_secs: 30,
            jwks_timeout_secs: 5,
            jwks_max_age_secs: 600,
            jwks_min_refresh_secs: 30,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Origins (exactly as a browser sends them, e.g. `https://dash.example.com`) allowed to
    /// call the API from a browser (CORS). Empty (the default): no cross-origin access. `*` is
    /// refused: the API takes credentials.
    pub cors_allowed_origins: Vec<String>,
    /// Served over TLS (directly or by a proxy in front): send `Strict-Transport-Security`.
    pub behind_tls: bool,
}

/// Operator secrets for administration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// An admin key of tenant `default` chosen by the operator (`ak_` and at least 32 of
    /// `A-Z a-z 0-9 - _`), installed (as its hash) at start if not yet known. Give it as a file:
    /// `ASSAY_ADMIN__KEY_FILE=/run/secrets/assay-admin-key`. With it, no `admin.key` is
    /// generated on first start.
    pub key: Option<Secret>,
}

/// A secret string: its `Debug` never shows it (settings may be logged).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself: use it, never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
