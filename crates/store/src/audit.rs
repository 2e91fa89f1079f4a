//! The audit log's data and its hash chain, shared by every backend.
//!
//! Entries are append-only and numbered `1, 2, 3, …` without gaps. Each entry carries the hash
//! of the one before it (`prev_hash`; [`GENESIS_HASH`] for the first) and its own `hash`, the
//! SHA-256 of [`canonical_bytes`] (every field, length-prefixed, and `prev_hash`). A backend
//! assigns `seq`, `prev_hash` and `hash` inside its write transaction, so the chain never forks,
//! and keeps the chain's head (last `seq` and `hash`) apart from the entries so that deleting
//! the newest entries is detected too.
//!
//! What the chain proves: an entry edited, removed or inserted without recomputing every later
//! hash (and the head) breaks verification. What it cannot prove: someone with write access to
//! the database can recompute the whole chain. Keep an exported copy (or at least the head hash
//! that `verify` prints) somewhere else to detect that.

use crate::Millis;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a recorded call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It succeeded.
    Ok,
    /// Refused: failed authentication, missing permission, rate limit.
    Denied,
    /// It failed (invalid request, conflict, not found, server error).
    Error,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<AuditOutcome> {
        [AuditOutcome::Ok, AuditOutcome::Denied, AuditOutcome::Error]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// What to record. Never put secrets here (key material, request bodies): record key ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at: Millis,
    /// Who: the key id (or the external identity's subject); `None` when authentication failed.
    pub actor: Option<String>,
    /// The actor's tenant.
    pub tenant: Option<String>,
    /// What, e.g. `evaluation.submit`, `key.revoke`, `auth.failed`.
    pub action: String,
    /// On what: an evaluation id, a key id.
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    /// The HTTP status of the answer (0 when not an HTTP call).
    pub status: u16,
    /// The peer's address.
    pub source: Option<String>,
    pub request_id: String,
    /// More about it (why authentication failed, the ids of a batch, ...).
    pub detail: Option<String>,
}

/// A recorded entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, … in order of recording, without gaps.
    pub seq: i64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// `hash` of entry `seq - 1` ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of [`canonical_bytes`].
    pub hash: String,
}

/// Whether `entries` (to be imported as they are) continue a chain whose head is `head`
/// (last seq and hash): consecutive seqs from the next one, each linked to the one before, each
/// hash right. `Backend` naming the first that does not.
pub fn check_continues(head: (i64, String), entries: &[AuditEntry]) -> Result<(), StoreError> {
    let (mut seq, mut hash) = head;
    for e in entries {
        if e.seq != seq + 1 || e.prev_hash != hash || e.computed_hash() != e.hash {
            return Err(StoreError::Backend(format!(
                "audit entry {} does not continue the chain at seq {seq}",
                e.seq
            )));
        }
        seq = e.seq;
        hash.clone_from(&e.hash);
    }
    Ok(())
}

impl AuditEntry {
    /// Chains `entry` after `prev_hash` as number `seq`.
    pub fn chain(seq: i64, entry: NewAuditEntry, prev_hash: &str) -> AuditEntry {
        let hash = entry_hash(seq, &entry, prev_hash);
        AuditEntry {
            seq,
            entry,
            prev_hash: prev_hash.to_string(),
            hash,
        }
    }

    /// The hash this entry's content gives (equal to `hash` unless it was altered).
    pub fn computed_hash(&self) -> String {
        entry_hash(self.seq, &self.entry, &self.prev_hash)
    }
}

/// The bytes hashed for one entry: a version tag, then every field in a fixed order, each as
/// `<length>:<bytes>` (or `-` for an absent one), so that no two different entries encode the
/// same.
pub fn canonical_bytes(seq: i64, e: &NewAuditEntry, prev_hash: &str) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            Some(s) => {
                out.extend_from_slice(s.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(s.as_bytes());
            }
            None => out.push(b'-'),
        }
        out.push(b'\n');
    }
    let mut out = Vec::with_capacity(256);
    field(&mut out, Some("assay-audit-v1"));
    field(&mut out, Some(&seq.to_string()));
    field(&mut out, Some(&e.at.to_string()));
    field(&mut out, e.actor.as_deref());
    field(&mut out, e.tenant.as_deref());
    field(&mut out, Some(&e.action));
    field(&mut out, e.target.as_deref());
    field(&mut out, Some(e.outcome.as_str()));
    field(&mut out, Some(&e.status.to_string()));
    field(&mut out, e.source.as_deref());
    field(&mut out, Some(&e.request_id));
    field(&mut out, e.detail.as_deref());
    field(&mut out, Some(prev_hash));
    out
}

pub fn entry_hash(seq: i64, e: &NewAuditEntry, prev_hash: &str) -> String {
    hex::encode(Sha256::digest(canonical_bytes(seq, e, prev_hash)))
}

/// Which entries to list. Every filter is an exact match; `after` is inclusive and `before`
/// exclusive (`[after, before)`, on `at`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub tenant: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<AuditOutcome>,
    pub after: Option<Millis>,
    pub before: Option<Millis>,
    /// Oldest first (chain order) instead of newest first.
    pub oldest_first: bool,
    /// Opaque cursor from a previous page (of the same order).
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (callers validate).
    pub limit: u32,
}

/// Why the chain is broken at an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AuditBreak {
    /// The entry's content does not give its hash (it was edited).
    HashMismatch { seq: i64 },
    /// The entry does not point at the hash of the one before it (one was replaced or
    /// re-hashed).
    BadLink { seq: i64 },
    /// Entry `seq` is missing (deleted), or numbers are out of order.
    Gap { seq: i64 },
    /// The newest entries are missing: the head says `head_seq`, the log ends before.
    Truncated { seq: i64, head_seq: i64 },
    /// The head does not match the last entry, or it is missing while entries exist.
    BadHead { seq: i64 },
}

impl AuditBreak {
    /// The first entry (seq) that is wrong or missing.
    pub fn seq(&self) -> i64 {
        match self {
            AuditBreak::HashMismatch { seq }
            | AuditBreak::BadLink { seq }
            | AuditBreak::Gap { seq }
            | AuditBreak::Truncated { seq, .. }
            | AuditBreak::BadHead { seq } => *seq,
        }
    }
}

impl std::fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditBreak::HashMismatch { seq } => {
                write!(f, "entry {seq} was altered (its hash does not match)")
            }
            AuditBreak::BadLink { seq } => write!(
                f,
                "entry {seq} does not link to the entry before it (replaced or re-hashed)"
            ),
            AuditBreak::Gap { seq } => write!(f, "entry {seq} is missing (deleted)"),
            AuditBreak::Truncated { seq, head_seq } => write!(
                f,
                "entries {seq} to {head_seq} are missing (the newest entries were deleted)"
            ),
            AuditBreak::BadHead { seq } => write!(
                f,
                "the chain head does not match entry {seq} (the newest entries were altered)"
            ),
        }
    }
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's seq and hash (what to keep elsewhere to detect a rewritten chain).
    pub head_seq: i64,
    pub head_hash: String,
    /// The first break, if any.
    pub broken: Option<AuditBreak>,
}

/// Checks a chain read in order, piece by piece (a backend feeds it its rows by ascending
/// `seq`, then the stored head).
#[derive(Debug)]
pub struct ChainVerifier {
    entries: u64,
    last_seq: i64,
    last_hash: String,
    broken: Option<AuditBreak>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            entries: 0,
            last_seq: 0,
            last_hash: GENESIS_HASH.to_string(),
            broken: None,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry (rows must come by ascending `seq`). Returns false once broken
    /// (the caller can stop reading).
    pub fn push(&mut self, e: &AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let expected = self.last_seq + 1;
        let broken = if e.seq != expected {
            Some(AuditBreak::Gap { seq: expected })
        } else if e.prev_hash != self.last_hash {
            Some(AuditBreak::BadLink { seq: e.seq })
        } else if e.computed_hash() != e.hash {
            Some(AuditBreak::HashMismatch { seq: e.seq })
        } else {
            None
        };
        if broken.is_some() {
            self.broken = broken;
            return false;
        }
        self.entries += 1;
        self.last_seq = e.seq;
        self.last_hash = e.hash.clone();
        true
    }

    /// Ends with the stored head (`None`: no head recorded, i.e. an empty log).
    pub fn finish(mut self, head: Option<(i64, String)>) -> AuditVerification {
        if self.broken.is_none() {
            self.broken = match head {
                None if self.last_seq == 0 => None,
                None => Some(AuditBreak::BadHead { seq: self.last_seq }),
                Some((head_seq, _)) if head_seq > self.last_seq => Some(AuditBreak::Truncated {
                    seq: self.last_seq + 1,
                    head_seq,
                }),
                Some((head_seq, hash)) if head_seq != self.last_seq || hash != self.last_hash => {
                    Some(AuditBreak::BadHead {
                        seq: self.last_seq.max(1),
                    })
                }
                Some(_) => None,
            };
        }
        AuditVerification {
            entries: self.entries,
            head_seq: self.last_seq,
            head_hash: self.last_hash,
            broken: self.broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> NewAuditEntry {
        NewAuditEntry {
            at: 1,
            actor: Some("key_1".into()),
            tenant: None,
            action: action.into(),
            target: None,
            outcome: AuditOutcome::Ok,
            status: 200,
            source: None,
            request_id: "r".into(),
            detail: None,
        }
    }

    #[test]
    fn encoding_is_unambiguous() {
        let mut a = entry("x");
        let mut b = entry("x");
        a.actor = Some("ab".into());
        a.tenant = Some("c".into());
        b.actor = Some("a".into());
        b.tenant = Some("bc".into());
        assert_ne!(
            entry_hash(1, &a, GENESIS_HASH),
            entry_hash(1, &b, GENESIS_HASH)
        );
        a.tenant = None;
        b.actor = Some("ab".into());
        b.tenant = Some(String::new());
        assert_ne!(
            entry_hash(1, &a, GENESIS_HASH),
            entry_hash(1, &b, GENESIS_HASH)
        );
        assert_ne!(
            entry_hash(1, &a, GENESIS_HASH),
            entry_hash(2, &a, GENESIS_HASH)
        );
    }

    #[test]
    fn verifier_finds_each_kind_of_break() {
        let e1 = AuditEntry::chain(1, entry("a"), GENESIS_HASH);
        let e2 = AuditEntry::chain(2, entry("b"), &e1.hash);
        let e3 = AuditEntry::chain(3, entry("c"), &e2.hash);
        let head = Some((3, e3.hash.clone()));
        let run = |rows: &[&AuditEntry], head: Option<(i64, String)>| {
            let mut v = ChainVerifier::default();
            for r in rows {
                v.push(r);
            }
            v.finish(head)
        };
        let ok = run(&[&e1, &e2, &e3], head.clone());
        assert_eq!((ok.entries, ok.head_seq, ok.broken), (3, 3, None));
        assert_eq!(run(&[], None).broken, None);
        let mut edited = e2.clone();
        edited.entry.action = "z".into();
        assert_eq!(
            run(&[&e1, &edited, &e3], head.clone()).broken,
            Some(AuditBreak::HashMismatch { seq: 2 })
        );
        assert_eq!(
            run(&[&e1, &e3], head.clone()).broken,
            Some(AuditBreak::Gap { seq: 2 })
        );
        let forged = AuditEntry::chain(2, entry("z"), GENESIS_HASH);
        assert_eq!(
            run(&[&e1, &forged, &e3], head.clone()).broken,
            Some(AuditBreak::BadLink { seq: 2 })
        );
        assert_eq!(
            run(&[&e1, &e2], head.clone()).broken,
            Some(AuditBreak::Truncated {
                seq: 3,
                head_seq: 3
            })
        );
        assert_eq!(
            run(&[&e1, &e2, &e3], None).broken,
            Some(AuditBreak::BadHead { seq: 3 })
        );
        assert_eq!(
            run(&[&e1, &e2, &e3], Some((3, e2.hash.clone()))).broken,
            Some(AuditBreak::BadHead { seq: 3 })
        );
    }
}
