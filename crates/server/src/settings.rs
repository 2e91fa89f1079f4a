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
}

/// Accepting JWTs from an external issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {}
