//! The audit log in SQLite: `audit_log` (one row per entry, `seq` as the rowid) and
//! `audit_head` (the chain's last seq and hash). Appends run in one `BEGIN IMMEDIATE`
//! transaction that reads the head, inserts the chained row and moves the head: the chain never
//! forks, even with several processes on one file. Triggers refuse UPDATE and DELETE on
//! `audit_log`; the chain catches whoever drops them.

use crate::connection::SqliteStore;
use crate::error::db;
use assay_store::audit::{
    AuditEntry, AuditFilter, AuditOutcome, AuditVerification, ChainVerifier, GENESIS_HASH,
    NewAuditEntry,
};
use assay_store::cursor::{decode_seq, encode_seq};
use assay_store::{Page, Result};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

/// Rows read per query while verifying.
const VERIFY_CHUNK: i64 = 1000;

macro_rules! audit_cols {
    () => {
        "seq, at, actor, tenant, action, target, outcome, status, source, request_id, detail, \
         prev_hash, hash"
    };
}

fn entry_from_row(row: &SqliteRow) -> Result<AuditEntry> {
    let outcome: String = row.try_get("outcome").map_err(db)?;
    let status: i64 = row.try_get("status").map_err(db)?;
    Ok(AuditEntry {
        seq: row.try_get("seq").map_err(db)?,
        entry: NewAuditEntry {
            at: row.try_get("at").map_err(db)?,
            actor: row.try_get("actor").map_err(db)?,
            tenant: row.try_get("tenant").map_err(db)?,
            action: row.try_get("action").map_err(db)?,
            target: row.try_get("target").map_err(db)?,
            // An unknown outcome or status can only come from an edited row: keep it
            // recognisably wrong so that verification reports the row instead of failing.
            outcome: AuditOutcome::parse(&outcome).unwrap_or(AuditOutcome::Error),
            status: u16::try_from(status).unwrap_or(u16::MAX),
            source: row.try_get("source").map_err(db)?,
            request_id: row.try_get("request_id").map_err(db)?,
            detail: row.try_get("detail").map_err(db)?,
        },
        prev_hash: row.try_get("prev_hash").map_err(db)?,
        hash: row.try_get("hash").map_err(db)?,
    })
}

/// Like `entry_from_row`, but a row whose outcome or status was edited into something
/// unparseable fails verification as altered.
fn exact_entry_from_row(row: &SqliteRow) -> Result<(AuditEntry, bool)> {
    let e = entry_from_row(row)?;
    let outcome: String = row.try_get("outcome").map_err(db)?;
    let status: i64 = row.try_get("status").map_err(db)?;
    let exact = AuditOutcome::parse(&outcome).is_some() && u16::try_from(status).is_ok();
    Ok((e, exact))
}

pub(crate) async fn append(store: &SqliteStore, entry: NewAuditEntry) -> Result<AuditEntry> {
    let mut tx = store.write_tx().await?;
    let (last_seq, last_hash) = head(&mut tx).await?;
    let e = AuditEntry::chain(last_seq + 1, entry, &last_hash);
    write(&mut tx, &e).await?;
    tx.commit().await.map_err(db)?;
    Ok(e)
}

/// Appends `entries` as they are, if they continue the chain (`audit::check_continues`).
pub(crate) async fn import(store: &SqliteStore, entries: Vec<AuditEntry>) -> Result<()> {
    let mut tx = store.write_tx().await?;
    let head = head(&mut tx).await?;
    assay_store::audit::check_continues(head, &entries)?;
    for e in &entries {
        write(&mut tx, e).await?;
    }
    tx.commit().await.map_err(db)
}

/// The chain's last seq and hash (0 and the genesis hash when empty).
async fn head(conn: &mut SqliteConnection) -> Result<(i64, String)> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    Ok(head.unwrap_or((0, GENESIS_HASH.to_string())))
}

/// Inserts `e` and makes it the head.
async fn write(conn: &mut SqliteConnection, e: &AuditEntry) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO audit_log (",
        audit_cols!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(e.seq)
    .bind(e.entry.at)
    .bind(&e.entry.actor)
    .bind(&e.entry.tenant)
    .bind(&e.entry.action)
    .bind(&e.entry.target)
    .bind(e.entry.outcome.as_str())
    .bind(i64::from(e.entry.status))
    .bind(&e.entry.source)
    .bind(&e.entry.request_id)
    .bind(&e.entry.detail)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .bind(e.seq)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn list(store: &SqliteStore, f: &AuditFilter) -> Result<Page<AuditEntry>> {
    let cursor = f.cursor.as_deref().map(decode_seq).transpose()?;
    let limit = f.limit.max(1);
    // Only fixed fragments go into the SQL; every value is bound.
    let mut sql = String::from(concat!("SELECT ", audit_cols!(), " FROM audit_log WHERE 1"));
    for (present, clause) in [
        (f.actor.is_some(), " AND actor = ?"),
        (f.tenant.is_some(), " AND tenant = ?"),
        (f.action.is_some(), " AND action = ?"),
        (f.target.is_some(), " AND target = ?"),
        (f.outcome.is_some(), " AND outcome = ?"),
        (f.after.is_some(), " AND at >= ?"),
        (f.before.is_some(), " AND at < ?"),
    ] {
        if present {
            sql.push_str(clause);
        }
    }
    if cursor.is_some() {
        sql.push_str(if f.oldest_first {
            " AND seq > ?"
        } else {
            " AND seq < ?"
        });
    }
    sql.push_str(if f.oldest_first {
        " ORDER BY seq LIMIT ?"
    } else {
        " ORDER BY seq DESC LIMIT ?"
    });
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in [&f.actor, &f.tenant, &f.action, &f.target]
        .into_iter()
        .flatten()
    {
        q = q.bind(v.clone());
    }
    if let Some(o) = f.outcome {
        q = q.bind(o.as_str());
    }
    if let Some(a) = f.after {
        q = q.bind(a);
    }
    if let Some(b) = f.before {
        q = q.bind(b);
    }
    if let Some(c) = cursor {
        q = q.bind(c);
    }
    q = q.bind(i64::from(limit) + 1);
    let rows = q.fetch_all(&store.reader).await.map_err(db)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let items = rows
        .iter()
        .take(limit)
        .map(entry_from_row)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => Some(encode_seq(last.seq)),
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

pub(crate) async fn verify(store: &SqliteStore) -> Result<AuditVerification> {
    // One read transaction: a consistent snapshot while the server goes on appending.
    let mut tx = store.reader.begin().await.map_err(db)?;
    let mut v = ChainVerifier::default();
    let mut after = 0i64;
    'read: loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(after)
        .bind(VERIFY_CHUNK)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let (mut e, exact) = exact_entry_from_row(row)?;
            if !exact {
                // Make sure the altered row fails its hash check.
                e.hash.clear();
            }
            after = e.seq;
            if !v.push(&e) {
                break 'read;
            }
        }
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    tx.rollback().await.map_err(db)?;
    Ok(v.finish(head))
}
