//! The queue's state machine, as pure functions.
//!
//! [`Lifecycle`] is the part of an evaluation that moves through the queue. A backend loads it
//! inside a write transaction, asks one of the transitions below what happens, and persists the
//! returned [`Change`]: the new lifecycle, written whole, and the events to append in order.
//! Backends decide nothing: who may write (the lease fence), retries with backoff, dead
//! letters, cancellation during a failure, all are here, and unit-tested without a database.
//!
//! Statuses: `queued → running → terminal`, and `running → queued` when the platform failed
//! and a retry is due, or on a graceful hand-back. Terminal statuses never change, except
//! `dead`, which an operator may requeue.

use crate::event::EventPayload;
use crate::record::RunRecord;
use crate::{Millis, Result, StoreError};
use assay_domain::{AfterAttempt, EvaluationStatus, RetryPolicy, RunResult, RunStatus};

/// The queue state of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub status: EvaluationStatus,
    /// Attempts started (a hand-back gives one back).
    pub attempts: u32,
    pub max_attempts: u32,
    /// Claimable from this time on (backoff after a platform failure).
    pub not_before: Millis,
    /// The current attempt's fencing token: every write of that attempt must present it.
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<Millis>,
    pub worker_id: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub result: Option<RunRecord>,
    /// Dead-letter reason, or the last platform error.
    pub error: Option<String>,
    /// Cancellation was asked for while it ran; the worker kills the sandbox.
    pub cancel_requested: bool,
}

/// What a transition decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The lifecycle to write back, whole.
    pub next: Lifecycle,
    /// Events to append, in this order, with the next seqs.
    pub events: Vec<EventPayload>,
}

impl Change {
    fn quiet(next: Lifecycle) -> Change {
        Change {
            next,
            events: Vec::new(),
        }
    }
}

/// Why a lease ended without the worker finishing: it stopped heartbeating.
pub fn lease_expired_reason(worker_id: Option<&str>) -> String {
    format!(
        "lease expired (worker {} lost)",
        worker_id.unwrap_or("unknown")
    )
}

/// The reason of an `errored` run that gave none.
const PLATFORM_FAILED: &str = "the platform failed to run the program";

impl Lifecycle {
    /// A new evaluation: queued, claimable at once. Its first event is `queued`, attempt 0.
    pub fn new_queued(max_attempts: u32) -> (Lifecycle, EventPayload) {
        (
            Lifecycle {
                status: EvaluationStatus::Queued,
                attempts: 0,
                max_attempts,
                not_before: 0,
                lease_token: None,
                lease_expires_at: None,
                worker_id: None,
                started_at: None,
                finished_at: None,
                result: None,
                error: None,
                cancel_requested: false,
            },
            EventPayload::status(EvaluationStatus::Queued, 0),
        )
    }

    /// Whether `token` is the lease of the running attempt.
    pub fn holds(&self, token: &str) -> bool {
        self.status == EvaluationStatus::Running && self.lease_token.as_deref() == Some(token)
    }

    /// `LeaseLost` unless `token` is the running attempt's lease.
    pub fn fence(&self, id: &str, token: &str) -> Result<()> {
        if self.holds(token) {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(id.to_string()))
        }
    }

    /// Whether a claim at `now` may take it.
    pub fn claimable(&self, now: Millis) -> bool {
        self.status == EvaluationStatus::Queued && self.not_before <= now
    }

    /// A worker takes it: running, one more attempt, leased until `lease_expires_at`.
    /// `Conflict` unless it is claimable at `now` (queued, out of backoff).
    pub fn claim(
        &self,
        id: &str,
        worker_id: &str,
        token: &str,
        lease_expires_at: Millis,
        now: Millis,
    ) -> Result<Change> {
        if !self.claimable(now) {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                status: self.status,
                action: "claim",
            });
        }
        let attempts = self.attempts.saturating_add(1);
        Ok(Change {
            next: Lifecycle {
                status: EvaluationStatus::Running,
                attempts,
                lease_token: Some(token.to_string()),
                lease_expires_at: Some(lease_expires_at),
                worker_id: Some(worker_id.to_string()),
                started_at: Some(now),
                ..self.clone()
            },
            events: vec![EventPayload::status(EvaluationStatus::Running, attempts)],
        })
    }

    /// The attempt ended with `result` (fenced). A user-code outcome is final; a platform
    /// failure (`errored`) is retried with backoff or dead-lettered per `policy` (the
    /// evaluation's own `max_attempts` bounds the attempts).
    pub fn finish(
        &self,
        id: &str,
        token: &str,
        result: &RunResult,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<Change> {
        self.finish_record(id, token, RunRecord::of(result), policy, now)
    }

    /// [`Lifecycle::finish`] with the record as it will be stored (e.g. with the references of
    /// outputs published to the blob store).
    pub fn finish_record(
        &self,
        id: &str,
        token: &str,
        record: RunRecord,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<Change> {
        self.fence(id, token)?;
        Ok(if record.status == RunStatus::Errored {
            let reason = record.error.clone();
            let reason = reason.as_deref().unwrap_or(PLATFORM_FAILED);
            self.platform_failure(Some(record), reason, policy, now)
        } else {
            let error = record.error.clone();
            self.terminal(
                EvaluationStatus::from(record.status),
                Some(record),
                error,
                now,
            )
        })
    }

    /// Graceful hand-back (fenced): queued again at once, the attempt not counted. Cancelled
    /// instead if cancellation was asked for.
    pub fn release(&self, id: &str, token: &str, now: Millis) -> Result<Change> {
        self.fence(id, token)?;
        Ok(if self.cancel_requested {
            self.terminal(EvaluationStatus::Cancelled, None, None, now)
        } else {
            self.queued(self.attempts.saturating_sub(1), 0, None)
        })
    }

    /// Whether the lease ran out at `now` (the worker stopped heartbeating).
    pub fn lease_expired(&self, now: Millis) -> bool {
        self.status == EvaluationStatus::Running && self.lease_expires_at.is_some_and(|t| t <= now)
    }

    /// The lease ran out: a platform failure of the attempt.
    pub fn expire(&self, policy: &RetryPolicy, now: Millis) -> Change {
        let reason = lease_expired_reason(self.worker_id.as_deref());
        self.platform_failure(None, &reason, policy, now)
    }

    /// Cancellation: a queued evaluation ends at once; a running one is marked (its worker sees
    /// it at the next heartbeat and kills the sandbox). `None` when nothing changes (terminal,
    /// or already marked).
    pub fn cancel(&self, now: Millis) -> Option<Change> {
        match self.status {
            EvaluationStatus::Queued => {
                Some(self.terminal(EvaluationStatus::Cancelled, None, None, now))
            }
            EvaluationStatus::Running if !self.cancel_requested => Some(Change::quiet(Lifecycle {
                cancel_requested: true,
                ..self.clone()
            })),
            _ => None,
        }
    }

    /// An operator sends a dead letter back to the queue: attempts reset, the last run and
    /// error forgotten. `Conflict` unless dead.
    pub fn requeue(&self, id: &str) -> Result<Change> {
        if self.status != EvaluationStatus::Dead {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                status: self.status,
                action: "requeue",
            });
        }
        Ok(Change {
            next: Lifecycle {
                status: EvaluationStatus::Queued,
                attempts: 0,
                not_before: 0,
                lease_token: None,
                lease_expires_at: None,
                worker_id: None,
                finished_at: None,
                result: None,
                error: None,
                cancel_requested: false,
                ..self.clone()
            },
            events: vec![EventPayload::status(EvaluationStatus::Queued, 0)],
        })
    }

    /// A platform failure of the current attempt (an errored run, a lost lease): retried with
    /// backoff, dead-lettered after `max_attempts`, or cancelled if cancellation was asked for.
    fn platform_failure(
        &self,
        result: Option<RunRecord>,
        reason: &str,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Change {
        if self.cancel_requested {
            return self.terminal(
                EvaluationStatus::Cancelled,
                result,
                Some(reason.to_string()),
                now,
            );
        }
        let policy = RetryPolicy {
            max_attempts: self.max_attempts,
            ..*policy
        };
        match policy.after_platform_failure(self.attempts, reason) {
            AfterAttempt::Retry { after } => {
                let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
                self.queued(
                    self.attempts,
                    now.saturating_add(after),
                    Some(reason.to_string()),
                )
            }
            AfterAttempt::Dead { reason } => {
                self.terminal(EvaluationStatus::Dead, None, Some(reason), now)
            }
            AfterAttempt::Final(status) => {
                self.terminal(status, result, Some(reason.to_string()), now)
            }
        }
    }

    /// Back to the queue, claimable from `not_before`; `error`, when given, replaces the last.
    fn queued(&self, attempts: u32, not_before: Millis, error: Option<String>) -> Change {
        Change {
            next: Lifecycle {
                status: EvaluationStatus::Queued,
                attempts,
                not_before,
                lease_token: None,
                lease_expires_at: None,
                error: error.clone().or_else(|| self.error.clone()),
                ..self.clone()
            },
            events: vec![EventPayload::Status {
                status: EvaluationStatus::Queued,
                attempt: attempts,
                error,
            }],
        }
    }

    /// The end: `status` and `result` events follow.
    fn terminal(
        &self,
        status: EvaluationStatus,
        result: Option<RunRecord>,
        error: Option<String>,
        now: Millis,
    ) -> Change {
        Change {
            next: Lifecycle {
                status,
                result,
                error: error.clone(),
                finished_at: Some(now),
                lease_token: None,
                lease_expires_at: None,
                ..self.clone()
            },
            events: vec![
                EventPayload::Status {
                    status,
                    attempt: self.attempts,
                    error,
                },
                EventPayload::Result { status },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::RunStatus;

    const NOW: Millis = 1_700_000_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 100,
            max_backoff_ms: 1000,
        }
    }

    fn run(status: RunStatus) -> RunResult {
        let mut r = RunResult::platform_error("runc", "runtime crashed");
        r.status = status;
        if status != RunStatus::Errored {
            r.error = None;
            r.exit_code = Some(0);
        }
        r
    }

    fn running(attempts: u32) -> Lifecycle {
        let (mut l, _) = Lifecycle::new_queued(3);
        l.attempts = attempts - 1;
        l.claim("e", "w-1", "tok", NOW + 30_000, NOW).unwrap().next
    }

    fn statuses(c: &Change) -> Vec<(EvaluationStatus, Option<u32>)> {
        c.events
            .iter()
            .map(|e| match e {
                EventPayload::Status {
                    status, attempt, ..
                } => (*status, Some(*attempt)),
                EventPayload::Result { status } => (*status, None),
                EventPayload::Output { .. } => panic!("no output from transitions"),
            })
            .collect()
    }

    #[test]
    fn a_new_evaluation_is_queued_and_claiming_starts_an_attempt() {
        let (l, first) = Lifecycle::new_queued(3);
        assert_eq!(first, EventPayload::status(EvaluationStatus::Queued, 0));
        assert!(l.claimable(NOW));
        let c = l.claim("e", "w-1", "tok", NOW + 30_000, NOW).unwrap();
        assert_eq!(c.next.status, EvaluationStatus::Running);
        assert_eq!(c.next.attempts, 1);
        assert_eq!(c.next.lease_token.as_deref(), Some("tok"));
        assert_eq!(c.next.started_at, Some(NOW));
        assert_eq!(statuses(&c), [(EvaluationStatus::Running, Some(1))]);
        assert!(!c.next.claimable(NOW) && c.next.holds("tok") && !c.next.holds("other"));
        assert!(matches!(
            c.next.claim("e", "w-2", "t2", NOW + 30_000, NOW),
            Err(StoreError::Conflict {
                action: "claim",
                ..
            })
        ));
        let mut backoff = l.clone();
        backoff.not_before = NOW + 1;
        assert!(
            backoff.claim("e", "w", "t", NOW, NOW).is_err(),
            "not before its backoff"
        );
    }

    #[test]
    fn user_outcomes_are_final_with_status_then_result_events() {
        for (rs, es) in [
            (RunStatus::Succeeded, EvaluationStatus::Succeeded),
            (RunStatus::Failed, EvaluationStatus::Failed),
            (RunStatus::TimedOut, EvaluationStatus::TimedOut),
            (RunStatus::MemoryExceeded, EvaluationStatus::MemoryExceeded),
            (RunStatus::OutputExceeded, EvaluationStatus::OutputExceeded),
            (RunStatus::Cancelled, EvaluationStatus::Cancelled),
        ] {
            let c = running(1)
                .finish("e", "tok", &run(rs), &policy(), NOW + 5)
                .unwrap();
            assert_eq!(c.next.status, es);
            assert_eq!(c.next.finished_at, Some(NOW + 5));
            assert_eq!(c.next.result.as_ref().map(|r| r.status), Some(rs));
            assert_eq!(c.next.lease_token, None);
            assert_eq!(statuses(&c), [(es, Some(1)), (es, None)]);
        }
    }

    #[test]
    fn writes_of_a_lost_lease_are_refused() {
        let l = running(1);
        assert!(matches!(
            l.finish("e", "stale", &run(RunStatus::Succeeded), &policy(), NOW),
            Err(StoreError::LeaseLost(id)) if id == "e"
        ));
        assert!(l.release("e", "stale", NOW).is_err());
        let done = l
            .finish("e", "tok", &run(RunStatus::Succeeded), &policy(), NOW)
            .unwrap()
            .next;
        assert!(
            done.fence("e", "tok").is_err(),
            "a finished attempt's token is dead"
        );
    }

    #[test]
    fn platform_failures_retry_with_backoff_then_dead_letter() {
        let c = running(1)
            .finish("e", "tok", &run(RunStatus::Errored), &policy(), NOW)
            .unwrap();
        assert_eq!(c.next.status, EvaluationStatus::Queued);
        assert_eq!(c.next.attempts, 1, "the attempt counts");
        assert_eq!(c.next.not_before, NOW + 100);
        assert_eq!(c.next.error.as_deref(), Some("runtime crashed"));
        assert_eq!(c.next.lease_token, None);
        assert!(!c.next.claimable(NOW + 99) && c.next.claimable(NOW + 100));
        assert_eq!(
            c.events,
            [EventPayload::Status {
                status: EvaluationStatus::Queued,
                attempt: 1,
                error: Some("runtime crashed".into())
            }]
        );
        let c2 = running(2)
            .finish("e", "tok", &run(RunStatus::Errored), &policy(), NOW)
            .unwrap();
        assert_eq!(c2.next.not_before, NOW + 200, "backoff doubles");
        let dead = running(3)
            .finish("e", "tok", &run(RunStatus::Errored), &policy(), NOW)
            .unwrap();
        assert_eq!(dead.next.status, EvaluationStatus::Dead);
        assert_eq!(dead.next.result, None);
        let reason = dead.next.error.clone().unwrap();
        assert!(
            reason.contains("runtime crashed") && reason.contains("3 of 3"),
            "{reason}"
        );
        assert_eq!(
            statuses(&dead),
            [
                (EvaluationStatus::Dead, Some(3)),
                (EvaluationStatus::Dead, None)
            ]
        );
        // The evaluation's own max_attempts bounds retries, not the policy's.
        let mut one = running(1);
        one.max_attempts = 1;
        let c = one
            .finish("e", "tok", &run(RunStatus::Errored), &policy(), NOW)
            .unwrap();
        assert_eq!(c.next.status, EvaluationStatus::Dead);
        // An errored run without a reason gets one.
        let mut silent = run(RunStatus::Errored);
        silent.error = None;
        let c = running(1)
            .finish("e", "tok", &silent, &policy(), NOW)
            .unwrap();
        assert_eq!(c.next.error.as_deref(), Some(PLATFORM_FAILED));
    }

    #[test]
    fn an_expired_lease_is_a_platform_failure() {
        let l = running(1);
        assert!(!l.lease_expired(NOW + 29_999) && l.lease_expired(NOW + 30_000));
        let c = l.expire(&policy(), NOW + 30_000);
        assert_eq!(c.next.status, EvaluationStatus::Queued);
        assert_eq!(c.next.attempts, 1);
        assert_eq!(c.next.not_before, NOW + 30_100);
        assert_eq!(
            c.next.error.as_deref(),
            Some("lease expired (worker w-1 lost)")
        );
        let dead = running(3).expire(&policy(), NOW);
        assert_eq!(dead.next.status, EvaluationStatus::Dead);
    }

    #[test]
    fn cancellation_during_a_failure_ends_cancelled() {
        let mut l = running(1);
        let marked = l.cancel(NOW).unwrap();
        assert!(marked.events.is_empty() && marked.next.cancel_requested);
        assert_eq!(marked.next.status, EvaluationStatus::Running);
        assert_eq!(marked.next.cancel(NOW), None, "marked once");
        l = marked.next;
        let failed = l
            .finish("e", "tok", &run(RunStatus::Errored), &policy(), NOW)
            .unwrap();
        assert_eq!(failed.next.status, EvaluationStatus::Cancelled);
        assert_eq!(
            failed.next.result.as_ref().map(|r| r.status),
            Some(RunStatus::Errored),
            "the run is kept"
        );
        assert_eq!(failed.next.error.as_deref(), Some("runtime crashed"));
        assert_eq!(
            l.expire(&policy(), NOW).next.status,
            EvaluationStatus::Cancelled
        );
        assert_eq!(
            l.release("e", "tok", NOW).unwrap().next.status,
            EvaluationStatus::Cancelled
        );
    }

    #[test]
    fn cancel_queued_is_at_once_and_terminal_is_untouched() {
        let (q, _) = Lifecycle::new_queued(3);
        let c = q.cancel(NOW).unwrap();
        assert_eq!(c.next.status, EvaluationStatus::Cancelled);
        assert_eq!(c.next.result, None);
        assert_eq!(
            statuses(&c),
            [
                (EvaluationStatus::Cancelled, Some(0)),
                (EvaluationStatus::Cancelled, None)
            ]
        );
        assert_eq!(c.next.cancel(NOW), None);
    }

    #[test]
    fn release_gives_the_attempt_back() {
        let c = running(2).release("e", "tok", NOW).unwrap();
        assert_eq!(c.next.status, EvaluationStatus::Queued);
        assert_eq!(c.next.attempts, 1);
        assert!(c.next.claimable(NOW));
        assert_eq!(statuses(&c), [(EvaluationStatus::Queued, Some(1))]);
    }

    #[test]
    fn only_dead_letters_are_requeued_and_start_over() {
        let dead = running(3).expire(&policy(), NOW).next;
        let c = dead.requeue("e").unwrap();
        assert_eq!(c.next.status, EvaluationStatus::Queued);
        assert_eq!(
            (
                c.next.attempts,
                c.next.not_before,
                c.next.error.clone(),
                c.next.finished_at
            ),
            (0, 0, None, None)
        );
        assert_eq!(
            (c.next.result.clone(), c.next.worker_id.clone()),
            (None, None)
        );
        assert_eq!(statuses(&c), [(EvaluationStatus::Queued, Some(0))]);
        for not_dead in [Lifecycle::new_queued(3).0, running(1)] {
            assert!(matches!(
                not_dead.requeue("e"),
                Err(StoreError::Conflict {
                    action: "requeue",
                    ..
                })
            ));
        }
    }

    #[test]
    fn terminal_statuses_never_change_through_a_transition() {
        let done = running(1)
            .finish("e", "tok", &run(RunStatus::Succeeded), &policy(), NOW)
            .unwrap()
            .next;
        assert_eq!(done.cancel(NOW), None);
        assert!(done.requeue("e").is_err());
        assert!(
            done.finish("e", "tok", &run(RunStatus::Failed), &policy(), NOW)
                .is_err()
        );
        assert!(!done.claimable(NOW) && !done.lease_expired(i64::MAX));
    }
}
