//! Per-tenant quotas and backpressure, as the operator configures them. Pure data: the server
//! enforces the submission side (queued cap, rate, global queue cap, maximum run limits), the
//! store the claim side (running cap, fair share).
//!
//! Every cap uses `0` for "no cap" (TOML has no null), so an operator can lift one explicitly.
//!
//! ```toml
//! [quotas]
//! max_queued_total = 100000      # queued evaluations of all tenants together (503 above)
//!
//! [quotas.default]               # every tenant without its own entry
//! max_queued = 10000             # queued evaluations per tenant (429 quota_exceeded above)
//! max_running = 0                # running at once per tenant (0: no cap)
//! rate_per_minute = 60000        # submissions per key and minute (token bucket) ...
//! burst = 10000                  # ... of this many tokens (429 rate_limited + Retry-After)
//!
//! [quotas.tenants.team-a]        # a whole quota: unset fields take the built-in defaults
//! max_running = 2
//! max_limits = { wall_time_ms = 30000, memory_bytes = 536870912 }
//! ```

use crate::limits::{LimitError, LimitOverrides, LimitPolicy, MIN_MEMORY_BYTES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Built-in default of [`QuotaPolicy::max_queued_total`].
pub const DEFAULT_MAX_QUEUED_TOTAL: u64 = 100_000;
/// Built-in default of [`TenantQuota::max_queued`].
pub const DEFAULT_MAX_QUEUED: u64 = 10_000;
/// Built-in default of [`TenantQuota::rate_per_minute`].
pub const DEFAULT_RATE_PER_MINUTE: u32 = 60_000;
/// Built-in default of [`TenantQuota::burst`].
pub const DEFAULT_BURST: u32 = 10_000;

/// All quota settings: defaults for every tenant, overrides per tenant, and the global cap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaPolicy {
    /// Applies to every tenant without its own entry in `tenants`.
    pub default: TenantQuota,
    /// Per-tenant overrides (a whole `TenantQuota` each; unset fields take the built-in
    /// defaults, not `default`'s).
    pub tenants: BTreeMap<String, TenantQuota>,
    /// Queued evaluations of all tenants together; a submission beyond it is refused with 503
    /// `queue_full` and `Retry-After` instead of letting the queue grow without bound.
    /// Default 100000; 0: no cap.
    pub max_queued_total: u64,
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            default: TenantQuota::default(),
            tenants: BTreeMap::new(),
            max_queued_total: DEFAULT_MAX_QUEUED_TOTAL,
        }
    }
}

impl QuotaPolicy {
    /// The quota that applies to `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> &TenantQuota {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// The global queue cap, `None` when there is none.
    pub fn queued_total_cap(&self) -> Option<u64> {
        (self.max_queued_total > 0).then_some(self.max_queued_total)
    }

    /// Checks every tenant's quota (see [`TenantQuota::validate`]); the error names the tenant.
    pub fn validate(&self) -> Result<(), QuotaError> {
        self.default
            .validate()
            .map_err(|e| e.in_section("default"))?;
        for (name, q) in &self.tenants {
            q.validate()
                .map_err(|e| e.in_section(&format!("tenants.{name}")))?;
        }
        Ok(())
    }
}

/// One tenant's quota.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuota {
    /// Evaluations of the tenant waiting in the queue; a submission beyond it is refused with
    /// 429 `quota_exceeded`. Default 10000; 0: no cap.
    pub max_queued: u64,
    /// Evaluations of the tenant running at once, on all workers together: the queue skips a
    /// tenant at its cap when it hands out work. Default 0: no cap (fair claiming still shares
    /// the workers between tenants with queued work).
    pub max_running: u32,
    /// Submissions per API key and minute (a token bucket refilled at this rate; a batch takes
    /// one token per item). Default 60000 (1000 a second): a ceiling against runaway clients
    /// that never slows down the CLI's batches; give tenants sharing a server less. 0: no rate
    /// limit.
    pub rate_per_minute: u32,
    /// The bucket's size: how many submissions a key may make at once after a quiet period.
    /// Default 10000 (a whole default `max_queued` at once, e.g. ten 1000-item batches); at
    /// least 1 when `rate_per_minute` is set.
    pub burst: u32,
    /// The largest limits a run of this tenant may ask for, below the operator's maxima (unset:
    /// the operator's maximum). A request above one is refused (422 `limit_exceeded`), never
    /// clamped; a default above one is lowered to it.
    pub max_limits: LimitOverrides,
}

impl Default for TenantQuota {
    fn default() -> Self {
        TenantQuota {
            max_queued: DEFAULT_MAX_QUEUED,
            max_running: 0,
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            burst: DEFAULT_BURST,
            max_limits: LimitOverrides::default(),
        }
    }
}

/// A quota setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quotas.{section}: {reason}")]
pub struct QuotaError {
    /// `default` or `tenants.<name>`.
    pub section: String,
    pub reason: String,
}

impl QuotaError {
    fn new(reason: impl Into<String>) -> QuotaError {
        QuotaError {
            section: String::new(),
            reason: reason.into(),
        }
    }

    fn in_section(mut self, section: &str) -> QuotaError {
        self.section = section.to_string();
        self
    }
}

impl TenantQuota {
    /// The queued cap, `None` when there is none.
    pub fn queued_cap(&self) -> Option<u64> {
        (self.max_queued > 0).then_some(self.max_queued)
    }

    /// The running cap, `None` when there is none.
    pub fn running_cap(&self) -> Option<u32> {
        (self.max_running > 0).then_some(self.max_running)
    }

    /// The submission rate as (tokens per minute, bucket size), `None` without a rate limit.
    pub fn rate(&self) -> Option<(u32, u32)> {
        (self.rate_per_minute > 0).then_some((self.rate_per_minute, self.burst))
    }

    /// A burst of at least 1 with a rate; every maximum limit positive (memory at least
    /// 16 MiB).
    pub fn validate(&self) -> Result<(), QuotaError> {
        if self.rate_per_minute > 0 && self.burst == 0 {
            return Err(QuotaError::new(
                "burst must be at least 1 when rate_per_minute is set",
            ));
        }
        let m = &self.max_limits;
        let fields: [(&str, Option<u64>); 9] = [
            ("wall_time_ms", m.wall_time_ms),
            ("cpu_time_ms", m.cpu_time_ms),
            ("memory_bytes", m.memory_bytes),
            ("pids", m.pids.map(u64::from)),
            ("output_bytes", m.output_bytes),
            ("tmpfs_bytes", m.tmpfs_bytes),
            ("open_files", m.open_files.map(u64::from)),
            ("file_size_bytes", m.file_size_bytes),
            ("cpu_millicores", m.cpu_millicores.map(u64::from)),
        ];
        for (field, v) in fields {
            if v == Some(0) {
                return Err(QuotaError::new(format!(
                    "max_limits.{field} must be greater than zero"
                )));
            }
        }
        if m.memory_bytes.is_some_and(|v| v < MIN_MEMORY_BYTES) {
            return Err(QuotaError::new(format!(
                "max_limits.memory_bytes must be at least {MIN_MEMORY_BYTES} bytes (16MiB)"
            )));
        }
        Ok(())
    }

    /// The limit policy for this tenant's submissions: `base` with every maximum lowered to the
    /// tenant's `max_limits`, and every default lowered to the resulting maximum. A request
    /// above the tenant's maximum then fails validation with `limit_exceeded`, naming it.
    pub fn limit_policy(&self, base: &LimitPolicy) -> LimitPolicy {
        let mut p = *base;
        let m = &self.max_limits;
        macro_rules! lower {
            ($f:ident) => {
                if let Some(v) = m.$f {
                    p.maxima.$f = p.maxima.$f.min(v);
                    p.defaults.$f = p.defaults.$f.min(p.maxima.$f);
                }
            };
        }
        lower!(wall_time_ms);
        lower!(cpu_time_ms);
        lower!(memory_bytes);
        lower!(pids);
        lower!(output_bytes);
        lower!(tmpfs_bytes);
        lower!(open_files);
        lower!(file_size_bytes);
        lower!(cpu_millicores);
        p
    }

    /// [`LimitPolicy::resolve`] under [`Self::limit_policy`].
    pub fn resolve_limits(
        &self,
        base: &LimitPolicy,
        overrides: &LimitOverrides,
    ) -> Result<crate::Limits, LimitError> {
        self.limit_policy(base).resolve(overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults() {
        let p = QuotaPolicy::default();
        assert_eq!(p.max_queued_total, 100_000);
        assert_eq!(p.queued_total_cap(), Some(100_000));
        let q = p.for_tenant("anyone");
        assert_eq!(q.max_queued, 10_000);
        assert_eq!(q.queued_cap(), Some(10_000));
        assert_eq!(q.max_running, 0);
        assert_eq!(q.running_cap(), None, "no running cap by default");
        assert_eq!(q.rate(), Some((60_000, 10_000)));
        assert_eq!(q.max_limits, LimitOverrides::default());
        p.validate().unwrap();
    }

    #[test]
    fn zero_means_no_cap() {
        let q = TenantQuota {
            max_queued: 0,
            max_running: 0,
            rate_per_minute: 0,
            burst: 0,
            ..Default::default()
        };
        assert_eq!(q.queued_cap(), None);
        assert_eq!(q.running_cap(), None);
        assert_eq!(q.rate(), None);
        q.validate().unwrap();
        let p = QuotaPolicy {
            max_queued_total: 0,
            ..Default::default()
        };
        assert_eq!(p.queued_total_cap(), None);
    }

    #[test]
    fn tenant_entries_replace_the_default_whole() {
        let p: QuotaPolicy = serde_json::from_str(
            r#"{"default": {"max_running": 4, "rate_per_minute": 60},
                "tenants": {"big": {"max_queued": 50000}}}"#,
        )
        .unwrap();
        assert_eq!(p.for_tenant("small").max_running, 4);
        assert_eq!(p.for_tenant("small").rate_per_minute, 60);
        assert_eq!(p.for_tenant("small").burst, DEFAULT_BURST);
        let big = p.for_tenant("big");
        assert_eq!(big.max_queued, 50_000);
        // Built-in defaults, not `default`'s.
        assert_eq!(big.max_running, 0);
        assert_eq!(big.rate_per_minute, DEFAULT_RATE_PER_MINUTE);
        assert_eq!(p.max_queued_total, DEFAULT_MAX_QUEUED_TOTAL);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        for bad in [
            r#"{"max_queue": 1}"#,
            r#"{"default": {"max_runing": 1}}"#,
            r#"{"tenants": {"a": {"max_limits": {"memory": 5}}}}"#,
        ] {
            assert!(
                serde_json::from_str::<QuotaPolicy>(bad).is_err(),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn incoherent_quotas_are_rejected_naming_the_tenant() {
        let mut p = QuotaPolicy::default();
        p.tenants.insert(
            "a".into(),
            TenantQuota {
                burst: 0,
                ..Default::default()
            },
        );
        let e = p.validate().unwrap_err();
        assert_eq!(e.section, "tenants.a");
        assert!(e.to_string().contains("quotas.tenants.a: burst"), "{e}");

        let mut p = QuotaPolicy::default();
        p.default.max_limits.pids = Some(0);
        let e = p.validate().unwrap_err();
        assert!(
            e.to_string().contains("quotas.default: max_limits.pids"),
            "{e}"
        );

        let mut p = QuotaPolicy::default();
        p.default.max_limits.memory_bytes = Some(1 << 20);
        assert!(p.validate().is_err());
    }

    #[test]
    fn max_limits_lower_maxima_and_defaults_and_refuse_above() {
        let base = LimitPolicy::default();
        let q = TenantQuota {
            max_limits: LimitOverrides {
                wall_time_ms: Some(2_000),
                memory_bytes: Some(base.maxima.memory_bytes * 2),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = q.limit_policy(&base);
        assert_eq!(p.maxima.wall_time_ms, 2_000);
        assert_eq!(
            p.defaults.wall_time_ms, 2_000,
            "default lowered to the maximum"
        );
        assert_eq!(
            p.maxima.memory_bytes, base.maxima.memory_bytes,
            "a tenant maximum never raises the operator's"
        );
        assert_eq!(p.maxima.pids, base.maxima.pids);
        p.validate().unwrap();

        let ok = q
            .resolve_limits(
                &base,
                &LimitOverrides {
                    wall_time_ms: Some(1_500),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(ok.wall_time_ms, 1_500);
        let err = q
            .resolve_limits(
                &base,
                &LimitOverrides {
                    wall_time_ms: Some(2_001),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            err,
            LimitError::AboveMaximum {
                field: "wall_time_ms",
                requested: 2_001,
                maximum: 2_000
            }
        );
        // Without max_limits the policy is the operator's.
        assert_eq!(TenantQuota::default().limit_policy(&base), base);
    }
}
