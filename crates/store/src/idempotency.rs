//! What a batch insert does about idempotency keys, decided once for every backend.
//!
//! A batch is a retry of an earlier one when every item's key was seen before (for its
//! tenant): nothing is inserted and the earlier evaluations are returned, in order. A batch none
//! of whose keys were seen is new. Anything in between is not a retry of one earlier batch:
//! `IdempotencyConflict`, and nothing is inserted. Items without a key are always new; a key
//! that two items of one batch share counts as seen by the second (so a new batch repeating a
//! key is a conflict). A backend asks the store for each of [`KeyCheck::lookups`] and hands
//! what it found to [`KeyCheck::decide`].

use crate::{Evaluation, NewEvaluation, Result, StoreError};
use std::collections::{HashMap, HashSet};

/// The keys of one batch, in order.
pub struct KeyCheck {
    /// (tenant, key) of each item; `None` for items without a key.
    keys: Vec<Option<(String, String)>>,
}

/// What to do with the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyDecision {
    /// No key was seen before: insert every item.
    InsertAll,
    /// Every key was: these are the evaluations they created, in the batch's order.
    Existing(Vec<Evaluation>),
}

impl KeyCheck {
    pub fn new(items: &[NewEvaluation]) -> KeyCheck {
        KeyCheck {
            keys: items
                .iter()
                .map(|i| {
                    i.idempotency_key
                        .as_ref()
                        .map(|k| (i.tenant.clone(), k.clone()))
                })
                .collect(),
        }
    }

    /// The distinct (tenant, key) pairs to look up, in first-seen order.
    pub fn lookups(&self) -> Vec<(&str, &str)> {
        let mut seen = HashSet::new();
        self.keys
            .iter()
            .flatten()
            .filter(|k| seen.insert((k.0.as_str(), k.1.as_str())))
            .map(|(t, k)| (t.as_str(), k.as_str()))
            .collect()
    }

    /// The decision, given the evaluations the lookups found (keyed by (tenant, key)).
    pub fn decide(self, found: &HashMap<(String, String), Evaluation>) -> Result<KeyDecision> {
        let mut existing = Vec::with_capacity(self.keys.len());
        let mut in_batch = HashSet::new();
        let mut first_seen: Option<String> = None;
        let mut any_new = false;
        for key in &self.keys {
            match key {
                None => any_new = true,
                Some(k) => {
                    if let Some(e) = found.get(k) {
                        existing.push(e.clone());
                        first_seen.get_or_insert_with(|| k.1.clone());
                    } else if in_batch.contains(k) {
                        // Seen, but by a new item of this very batch.
                        first_seen.get_or_insert_with(|| k.1.clone());
                    } else {
                        any_new = true;
                    }
                    in_batch.insert(k.clone());
                }
            }
            if let (true, Some(k)) = (any_new, &first_seen) {
                return Err(StoreError::IdempotencyConflict(k.clone()));
            }
        }
        Ok(if any_new {
            KeyDecision::InsertAll
        } else {
            KeyDecision::Existing(existing)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::{EvaluationStatus, Language, LimitPolicy, Program, RetryPolicy, Submission};

    fn item(tenant: &str, key: Option<&str>) -> NewEvaluation {
        NewEvaluation {
            tenant: tenant.into(),
            submission: Submission {
                language: Language::Python,
                program: Program::single("print(1)"),
                stdin: String::new(),
                limits: LimitPolicy::default().defaults,
                priority: 0,
                labels: Default::default(),
            },
            idempotency_key: key.map(str::to_string),
            max_attempts: RetryPolicy::default().max_attempts,
        }
    }

    fn evaluation(id: &str) -> Evaluation {
        Evaluation {
            id: id.into(),
            tenant: "t".into(),
            status: EvaluationStatus::Queued,
            language: Language::Python,
            entrypoint: "main.py".into(),
            limits: LimitPolicy::default().defaults,
            priority: 0,
            labels: Default::default(),
            attempts: 0,
            max_attempts: 3,
            created_at: 0,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            worker_id: None,
            cancel_requested: false,
            idempotency_key: None,
        }
    }

    fn found(pairs: &[(&str, &str, &str)]) -> HashMap<(String, String), Evaluation> {
        pairs
            .iter()
            .map(|(t, k, id)| ((t.to_string(), k.to_string()), evaluation(id)))
            .collect()
    }

    #[test]
    fn lookups_are_the_distinct_keys_in_order() {
        let c = KeyCheck::new(&[
            item("t", Some("b")),
            item("t", None),
            item("u", Some("b")),
            item("t", Some("b")),
            item("t", Some("a")),
        ]);
        assert_eq!(c.lookups(), [("t", "b"), ("u", "b"), ("t", "a")]);
    }

    #[test]
    fn all_new_all_seen_or_a_conflict() {
        let batch = || vec![item("t", Some("k0")), item("t", Some("k1"))];
        assert_eq!(
            KeyCheck::new(&batch()).decide(&found(&[])).unwrap(),
            KeyDecision::InsertAll
        );
        let seen = found(&[("t", "k0", "e0"), ("t", "k1", "e1")]);
        match KeyCheck::new(&batch()).decide(&seen).unwrap() {
            KeyDecision::Existing(es) => {
                assert_eq!(
                    es.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
                    ["e0", "e1"]
                )
            }
            other => panic!("{other:?}"),
        }
        let half = found(&[("t", "k1", "e1")]);
        assert!(matches!(
            KeyCheck::new(&batch()).decide(&half),
            Err(StoreError::IdempotencyConflict(k)) if k == "k1"
        ));
        // Keys are per tenant.
        let other_tenant = found(&[("u", "k0", "e0"), ("u", "k1", "e1")]);
        assert_eq!(
            KeyCheck::new(&batch()).decide(&other_tenant).unwrap(),
            KeyDecision::InsertAll
        );
        // An item without a key is always new.
        let with_none = vec![item("t", Some("k0")), item("t", None)];
        assert!(
            KeyCheck::new(&with_none)
                .decide(&found(&[("t", "k0", "e0")]))
                .is_err()
        );
        assert_eq!(
            KeyCheck::new(&[item("t", None)])
                .decide(&found(&[]))
                .unwrap(),
            KeyDecision::InsertAll
        );
    }

    #[test]
    fn a_key_repeated_inside_a_batch() {
        let twice = || vec![item("t", Some("k")), item("t", Some("k"))];
        assert!(
            KeyCheck::new(&twice()).decide(&found(&[])).is_err(),
            "a new batch repeating a key is not one request"
        );
        match KeyCheck::new(&twice())
            .decide(&found(&[("t", "k", "e")]))
            .unwrap()
        {
            KeyDecision::Existing(es) => assert_eq!(es.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
