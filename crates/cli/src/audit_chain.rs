//! Checking a store's audit hash chain and saying what was found, the same way wherever it is
//! done: `assay audit verify`, and the verification that ends `assay store copy`.

use anyhow::{Context, Result};
use assay_store::{AuditVerification, Store};

/// Checks the whole chain of `store` (every hash, every link, no gap, the head).
pub async fn verify(store: &dyn Store) -> Result<AuditVerification> {
    store.verify_audit().await.context("reading the audit log")
}

/// What a check found: the entry count and head of an intact chain (one line), or the first
/// break (two lines). No final newline.
pub fn describe(v: &AuditVerification) -> String {
    match &v.broken {
        None => format!(
            "audit log OK: {} entries, chain intact (head: entry {}, hash {})",
            v.entries, v.head_seq, v.head_hash
        ),
        Some(b) => format!(
            "audit log BROKEN at entry {}: {b}\n({} entries before it are intact)",
            b.seq(),
            v.entries
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_store::AuditBreak;

    #[test]
    fn an_intact_and_a_broken_chain_are_described() {
        let mut v = AuditVerification {
            entries: 3,
            head_seq: 3,
            head_hash: "ab12".into(),
            broken: None,
        };
        assert_eq!(
            describe(&v),
            "audit log OK: 3 entries, chain intact (head: entry 3, hash ab12)"
        );
        v.entries = 1;
        v.broken = Some(AuditBreak::Gap { seq: 2 });
        let text = describe(&v);
        assert!(
            text.starts_with("audit log BROKEN at entry 2: entry 2 is missing")
                && text.ends_with("\n(1 entries before it are intact)"),
            "{text}"
        );
    }
}
