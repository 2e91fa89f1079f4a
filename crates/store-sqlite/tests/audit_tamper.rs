//! The audit chain against tampering with the SQLite file behind the store's back: every edit,
//! deletion (in the middle or at the end) and forged row is reported at the right entry.

use assay_store::audit::{AuditBreak, AuditEntry, AuditOutcome};
use assay_store::conformance::{T0, audit_entry};
use assay_store::{AuditFilter, Store};
use assay_store_sqlite::SqliteStore;
use sqlx::Connection;

struct Fixture {
    store: SqliteStore,
    dir: tempfile::TempDir,
}

/// A store with five audit entries.
async fn with_entries() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("assay.db"))
        .await
        .expect("open");
    for i in 0..5 {
        store
            .append_audit(audit_entry(
                T0 + i,
                Some("key-a"),
                Some("acme"),
                "evaluation.submit",
                AuditOutcome::Ok,
            ))
            .await
            .expect("append");
    }
    let v = store.verify_audit().await.expect("verify");
    assert_eq!((v.entries, v.broken), (5, None));
    Fixture { store, dir }
}

/// Runs SQL on the file through a connection of its own, as an intruder would.
async fn tamper(fx: &Fixture, statements: &[&str]) -> Result<(), sqlx::Error> {
    let url = format!("sqlite://{}", fx.dir.path().join("assay.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    let mut result = Ok(());
    for sql in statements {
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
        {
            result = Err(e);
            break;
        }
    }
    conn.close().await?;
    result
}

const UNLOCK: &str = "DROP TRIGGER audit_log_no_update";
const UNLOCK_DELETE: &str = "DROP TRIGGER audit_log_no_delete";

async fn broken(fx: &Fixture) -> Option<AuditBreak> {
    fx.store.verify_audit().await.expect("verify").broken
}

async fn entries(fx: &Fixture) -> Vec<AuditEntry> {
    fx.store
        .list_audit(&AuditFilter {
            oldest_first: true,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .items
}

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let fx = with_entries().await;
    let err = tamper(&fx, &["UPDATE audit_log SET actor = 'x' WHERE seq = 2"]).await;
    assert!(
        err.unwrap_err().to_string().contains("append-only"),
        "UPDATE is refused"
    );
    let err = tamper(&fx, &["DELETE FROM audit_log WHERE seq = 5"]).await;
    assert!(
        err.unwrap_err().to_string().contains("append-only"),
        "DELETE is refused"
    );
    assert_eq!(broken(&fx).await, None);
}

#[tokio::test]
async fn an_edited_entry_is_detected() {
    let fx = with_entries().await;
    tamper(
        &fx,
        &[UNLOCK, "UPDATE audit_log SET actor = 'key-b' WHERE seq = 3"],
    )
    .await
    .expect("tamper");
    assert_eq!(broken(&fx).await, Some(AuditBreak::HashMismatch { seq: 3 }));
}

#[tokio::test]
async fn an_edited_outcome_is_detected_even_when_unparseable() {
    let fx = with_entries().await;
    tamper(
        &fx,
        &[
            UNLOCK,
            "UPDATE audit_log SET outcome = 'fine' WHERE seq = 4",
        ],
    )
    .await
    .expect("tamper");
    assert_eq!(broken(&fx).await, Some(AuditBreak::HashMismatch { seq: 4 }));
}

#[tokio::test]
async fn a_rehashed_entry_breaks_the_next_link() {
    let fx = with_entries().await;
    // Rewrite entry 2 and give it a correct hash for its new content: entry 3 no longer links.
    let mut forged = entries(&fx).await[1].clone();
    forged.entry.action = "evaluation.cancel".into();
    let forged = AuditEntry::chain(forged.seq, forged.entry, &forged.prev_hash);
    let sql = format!(
        "UPDATE audit_log SET action = 'evaluation.cancel', hash = '{}' WHERE seq = 2",
        forged.hash
    );
    tamper(&fx, &[UNLOCK, &sql]).await.expect("tamper");
    assert_eq!(broken(&fx).await, Some(AuditBreak::BadLink { seq: 3 }));
}

#[tokio::test]
async fn a_deleted_middle_entry_is_detected() {
    let fx = with_entries().await;
    tamper(&fx, &[UNLOCK_DELETE, "DELETE FROM audit_log WHERE seq = 2"])
        .await
        .expect("tamper");
    assert_eq!(broken(&fx).await, Some(AuditBreak::Gap { seq: 2 }));
}

#[tokio::test]
async fn a_deleted_last_entry_is_detected() {
    let fx = with_entries().await;
    tamper(
        &fx,
        &[UNLOCK_DELETE, "DELETE FROM audit_log WHERE seq >= 4"],
    )
    .await
    .expect("tamper");
    assert_eq!(
        broken(&fx).await,
        Some(AuditBreak::Truncated {
            seq: 4,
            head_seq: 5
        })
    );
}

#[tokio::test]
async fn a_deleted_head_is_detected() {
    let fx = with_entries().await;
    tamper(&fx, &["DELETE FROM audit_head"])
        .await
        .expect("tamper");
    assert_eq!(broken(&fx).await, Some(AuditBreak::BadHead { seq: 5 }));
}

#[tokio::test]
async fn appending_after_a_verified_log_continues_the_chain() {
    let fx = with_entries().await;
    let e = fx
        .store
        .append_audit(audit_entry(
            T0 + 9,
            None,
            None,
            "auth.failed",
            AuditOutcome::Denied,
        ))
        .await
        .expect("append");
    assert_eq!(e.seq, 6);
    // The same file opened again (as `assay audit verify --data` does) sees the whole chain.
    fx.store.close().await;
    let again = SqliteStore::open(fx.dir.path().join("assay.db"))
        .await
        .expect("reopen");
    let v = again.verify_audit().await.expect("verify");
    assert_eq!(
        (v.entries, v.head_seq, v.head_hash, v.broken),
        (6, 6, e.hash, None)
    );
}
