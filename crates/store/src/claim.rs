//! Which queued evaluation a worker gets next: fair share between tenants first, then
//! priority, then age, skipping tenants at their running cap (ADR 0006).
//!
//! The policy is pure: a backend tells [`FairPick`] how many evaluations each tenant runs and
//! which tenants have queued work, then looks up the best queued job of each tenant the planner
//! names (one index seek each), until the planner knows that no later tenant can win.

use crate::Millis;
use assay_domain::QuotaPolicy;
use std::collections::{BTreeMap, HashMap};

/// Running caps per tenant, applied when claiming (from the operator's quotas).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// The cap of every tenant without an entry in `tenants` (`None`: no cap).
    pub max_running: Option<u32>,
    /// Per-tenant caps, replacing `max_running` (`None`: no cap for this tenant).
    pub tenants: BTreeMap<String, Option<u32>>,
}

impl ClaimPolicy {
    /// How many evaluations of `tenant` may run at once (`None`: any number).
    pub fn max_running(&self, tenant: &str) -> Option<u32> {
        match self.tenants.get(tenant) {
            Some(cap) => *cap,
            None => self.max_running,
        }
    }
}

impl From<&QuotaPolicy> for ClaimPolicy {
    fn from(q: &QuotaPolicy) -> ClaimPolicy {
        ClaimPolicy {
            max_running: q.default.running_cap(),
            tenants: q
                .tenants
                .iter()
                .map(|(t, tq)| (t.clone(), tq.running_cap()))
                .collect(),
        }
    }
}

/// A tenant's best claimable job: highest priority, then oldest, then first inserted (`key`,
/// the backend's insertion-ordered row key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueHead {
    pub key: i64,
    pub priority: i32,
    pub created_at: Millis,
}

/// The order of claims: fewer running first, then higher priority, older, first inserted.
type Rank = (u32, i64, Millis, i64);

fn rank(running: u32, h: &QueueHead) -> Rank {
    (running, -i64::from(h.priority), h.created_at, h.key)
}

/// The planner of one claim.
#[derive(Debug)]
pub struct FairPick {
    /// Tenants below their cap with queued work, fewest running first (then by name).
    candidates: Vec<(u32, String)>,
    next: usize,
    best: Option<Rank>,
}

impl FairPick {
    /// `running`: evaluations running per tenant; `queued_tenants`: tenants with queued work
    /// (in any order, each once).
    pub fn new(
        running: &HashMap<String, u32>,
        queued_tenants: impl IntoIterator<Item = String>,
        policy: &ClaimPolicy,
    ) -> FairPick {
        let mut candidates: Vec<(u32, String)> = queued_tenants
            .into_iter()
            .filter_map(|t| {
                let n = running.get(&t).copied().unwrap_or(0);
                let capped = policy.max_running(&t).is_some_and(|cap| n >= cap);
                (!capped).then_some((n, t))
            })
            .collect();
        candidates.sort();
        FairPick {
            candidates,
            next: 0,
            best: None,
        }
    }

    /// The next tenant whose best claimable job the backend must look up, or `None` when the
    /// answer is known: every later tenant runs more than the best found so far.
    pub fn next_tenant(&mut self) -> Option<String> {
        let (n, tenant) = self.candidates.get(self.next)?;
        if self.best.is_some_and(|b| b.0 < *n) {
            return None;
        }
        self.next += 1;
        Some(tenant.clone())
    }

    /// The best claimable job of the tenant last returned by `next_tenant` (`None`: it has
    /// none claimable now, e.g. all in backoff).
    pub fn offer(&mut self, head: Option<QueueHead>) {
        let Some(head) = head else { return };
        let Some((n, _)) = self
            .next
            .checked_sub(1)
            .and_then(|i| self.candidates.get(i))
        else {
            return;
        };
        let r = rank(*n, &head);
        if self.best.is_none_or(|b| r < b) {
            self.best = Some(r);
        }
    }

    /// The key of the job to claim.
    pub fn winner(&self) -> Option<i64> {
        self.best.map(|b| b.3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::TenantQuota;

    fn head(key: i64, priority: i32, created_at: Millis) -> QueueHead {
        QueueHead {
            key,
            priority,
            created_at,
        }
    }

    /// Runs the planner against a table of tenants' best jobs; returns the winner and the
    /// tenants it looked at.
    fn pick(
        running: &[(&str, u32)],
        heads: &[(&str, Option<QueueHead>)],
        policy: &ClaimPolicy,
    ) -> (Option<i64>, Vec<String>) {
        let running: HashMap<String, u32> =
            running.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        let mut p = FairPick::new(&running, heads.iter().map(|(t, _)| t.to_string()), policy);
        let mut looked = Vec::new();
        while let Some(t) = p.next_tenant() {
            let h = heads.iter().find(|(x, _)| *x == t).and_then(|(_, h)| *h);
            looked.push(t);
            p.offer(h);
        }
        (p.winner(), looked)
    }

    #[test]
    fn fewest_running_first_then_priority_then_age() {
        let none = ClaimPolicy::default();
        // b runs nothing: it wins although a's job has a higher priority.
        let (w, _) = pick(
            &[("a", 1)],
            &[("a", Some(head(1, 50, 10))), ("b", Some(head(2, 0, 20)))],
            &none,
        );
        assert_eq!(w, Some(2));
        // Equal running: priority, then age, then insertion order.
        let (w, _) = pick(
            &[],
            &[("a", Some(head(1, 0, 10))), ("b", Some(head(2, 5, 20)))],
            &none,
        );
        assert_eq!(w, Some(2));
        let (w, _) = pick(
            &[],
            &[("a", Some(head(3, 0, 10))), ("b", Some(head(2, 0, 10)))],
            &none,
        );
        assert_eq!(w, Some(2));
        let (w, _) = pick(
            &[],
            &[("a", Some(head(1, 0, 11))), ("b", Some(head(2, 0, 10)))],
            &none,
        );
        assert_eq!(w, Some(2));
    }

    #[test]
    fn capped_tenants_are_skipped_and_lookups_stop_early() {
        let policy = ClaimPolicy {
            max_running: Some(2),
            tenants: [("big".to_string(), Some(8)), ("free".to_string(), None)].into(),
        };
        let (w, looked) = pick(
            &[("a", 2), ("big", 2), ("free", 50)],
            &[
                ("a", Some(head(1, 100, 0))),
                ("big", Some(head(2, 0, 5))),
                ("free", Some(head(3, 0, 1))),
            ],
            &policy,
        );
        assert_eq!(w, Some(2), "a is at its cap; big runs fewer than free");
        assert_eq!(
            looked,
            ["big"],
            "free runs more than big's job: never looked at"
        );
        // A tenant with nothing claimable (backoff) lets the next one win.
        let (w, looked) = pick(
            &[],
            &[("a", None), ("b", Some(head(9, 0, 0)))],
            &ClaimPolicy::default(),
        );
        assert_eq!((w, looked.len()), (Some(9), 2));
        let (w, _) = pick(&[("a", 2)], &[("a", Some(head(1, 0, 0)))], &policy);
        assert_eq!(w, None, "every tenant with work is capped");
    }

    #[test]
    fn claim_policy_from_quotas() {
        let mut q = QuotaPolicy::default();
        assert_eq!(
            ClaimPolicy::from(&q),
            ClaimPolicy::default(),
            "no caps by default"
        );
        q.default.max_running = 2;
        q.tenants.insert(
            "big".into(),
            TenantQuota {
                max_running: 8,
                ..Default::default()
            },
        );
        q.tenants.insert("free".into(), TenantQuota::default());
        let p = ClaimPolicy::from(&q);
        assert_eq!(p.max_running("anyone"), Some(2));
        assert_eq!(p.max_running("big"), Some(8));
        assert_eq!(
            p.max_running("free"),
            None,
            "an entry without max_running has no cap (built-in default)"
        );
    }
}
