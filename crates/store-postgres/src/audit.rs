//! The audit log in PostgreSQL: `audit_log` (one row per entry) and `audit_head` (the chain's
//! last seq and hash, one row from the first migration on).
//!
//! Appends are serialised by the head: each append locks the head row (`FOR UPDATE`), chains
//! its entry after it, inserts it and moves the head, in one transaction. Concurrent appends of
//! every server therefore queue on that one row and the chain never forks. Triggers refuse
//! UPDATE, DELETE and TRUNCATE of `audit_log` in the database itself, whoever connects; the
//! chain catches whoever drops them.

use crate::connection::PgStore;
use crate::error::db;
use assay_store::audit::{
    AuditEntry, AuditFilter, AuditOutcome, AuditVerification, ChainVerifier, GENESIS_HASH,
    NewAuditEntry, check_continues,
};
use assay_store::cursor::{decode_seq, encode_seq};
use assay_store::{Page, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

/// Rows read per query while verifying.
const VERIFY_CHUNK: i64 = 1000;

macro_rules! audit_cols {
    () => {
        "seq, at, actor, tenant, action, target, outcome, status, source, request_id, detail, \
         prev_hash, hash"
    };
}

fn entry_from_row(row: &PgRow) -> Result<AuditEntry> {
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
fn exact_entry_from_row(row: &PgRow) -> Result<AuditEntry> {
    let mut e = entry_from_row(row)?;
    let outcome: String = row.try_get("outcome").map_err(db)?;
    let status: i64 = row.try_get("status").map_err(db)?;
    if AuditOutcome::parse(&outcome).is_none() || u16::try_from(status).is_err() {
        e.hash.clear();
    }
    Ok(e)
}

/// The chain's head, locked until the transaction ends (0 and the genesis hash when empty).
async fn lock_head(conn: &mut PgConnection) -> Result<(i64, String)> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    match head {
        Some(h) => Ok(h),
        None => {
            // Only someone deleting the row behind the store's back gets here: put the genesis
            // head back (an empty log goes on; otherwise the next seq collides and the append
            // fails, and verification reports the missing head).
            sqlx::query(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT DO NOTHING",
            )
            .bind(GENESIS_HASH)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *conn)
                .await
                .map_err(db)
        }
    }
}

/// Inserts `entries` (in order) and makes the last one the head: one statement.
async fn write(conn: &mut PgConnection, entries: &[AuditEntry]) -> Result<()> {
    let Some(last) = entries.last() else {
        return Ok(());
    };
    let text = |f: fn(&AuditEntry) -> Option<String>| entries.iter().map(f).collect::<Vec<_>>();
    sqlx::query(concat!(
        "WITH ins AS (INSERT INTO audit_log (",
        audit_cols!(),
        ") SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
           $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[], \
           $12::text[], $13::text[])) \
         UPDATE audit_head SET seq = $14, hash = $15 WHERE id = 1"
    ))
    .bind(entries.iter().map(|e| e.seq).collect::<Vec<i64>>())
    .bind(entries.iter().map(|e| e.entry.at).collect::<Vec<i64>>())
    .bind(text(|e| e.entry.actor.clone()))
    .bind(text(|e| e.entry.tenant.clone()))
    .bind(text(|e| Some(e.entry.action.clone())))
    .bind(text(|e| e.entry.target.clone()))
    .bind(text(|e| Some(e.entry.outcome.as_str().to_string())))
    .bind(
        entries
            .iter()
            .map(|e| i64::from(e.entry.status))
            .collect::<Vec<i64>>(),
    )
    .bind(text(|e| e.entry.source.clone()))
    .bind(text(|e| Some(e.entry.request_id.clone())))
    .bind(text(|e| e.entry.detail.clone()))
    .bind(text(|e| Some(e.prev_hash.clone())))
    .bind(text(|e| Some(e.hash.clone())))
    .bind(last.seq)
    .bind(&last.hash)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn append(store: &PgStore, entry: NewAuditEntry) -> Result<AuditEntry> {
    let mut tx = store.begin().await?;
    let (last_seq, last_hash) = lock_head(&mut tx).await?;
    let e = AuditEntry::chain(last_seq + 1, entry, &last_hash);
    write(&mut tx, std::slice::from_ref(&e)).await?;
    tx.commit().await.map_err(db)?;
    Ok(e)
}

/// Appends `entries` as they are, if they continue the chain (`audit::check_continues`).
pub(crate) async fn import(store: &PgStore, entries: Vec<AuditEntry>) -> Result<()> {
    let mut tx = store.begin().await?;
    let head = lock_head(&mut tx).await?;
    check_continues(head, &entries)?;
    write(&mut tx, &entries).await?;
    tx.commit().await.map_err(db)
}

pub(crate) async fn list(store: &PgStore, f: &AuditFilter) -> Result<Page<AuditEntry>> {
    let cursor = f.cursor.as_deref().map(decode_seq).transpose()?;
    let limit = f.limit.max(1);
    // Only fixed fragments go into the SQL; every value is bound.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(concat!(
        "SELECT ",
        audit_cols!(),
        " FROM audit_log WHERE TRUE"
    ));
    for (value, clause) in [
        (&f.actor, " AND actor = "),
        (&f.tenant, " AND tenant = "),
        (&f.action, " AND action = "),
        (&f.target, " AND target = "),
    ] {
        if let Some(v) = value {
            q.push(clause).push_bind(v.clone());
        }
    }
    if let Some(o) = f.outcome {
        q.push(" AND outcome = ").push_bind(o.as_str());
    }
    if let Some(a) = f.after {
        q.push(" AND at >= ").push_bind(a);
    }
    if let Some(b) = f.before {
        q.push(" AND at < ").push_bind(b);
    }
    if let Some(c) = cursor {
        q.push(if f.oldest_first {
            " AND seq > "
        } else {
            " AND seq < "
        })
        .push_bind(c);
    }
    q.push(if f.oldest_first {
        " ORDER BY seq LIMIT "
    } else {
        " ORDER BY seq DESC LIMIT "
    })
    .push_bind(i64::from(limit) + 1);
    let rows = q.build().fetch_all(&store.pool).await.map_err(db)?;
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

pub(crate) async fn verify(store: &PgStore) -> Result<AuditVerification> {
    // One snapshot while the servers go on appending.
    let mut tx = store
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db)?;
    let mut v = ChainVerifier::default();
    let mut after = 0i64;
    'read: loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
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
            let e = exact_entry_from_row(row)?;
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
    // An empty log's head is the genesis row the schema starts with: (0, genesis) agrees.
    Ok(v.finish(head))
}
