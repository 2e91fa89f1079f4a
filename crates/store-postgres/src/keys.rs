//! API keys: stored by the SHA-256 hash of their secret, looked up on every request.

use crate::connection::{PgStore, db_now};
use crate::error::db;
use crate::rows::{get, key_cols, key_from_row};
use assay_store::{ApiKey, Millis, Result, StoreError};

/// `use_key` records a use at most this often per key (keeps authentication a read).
const USE_GRANULARITY_MS: Millis = 60_000;

pub(crate) async fn create(store: &PgStore, key: &ApiKey) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        key_cols!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.tenant)
    .bind(key.role.as_str())
    .bind(&key.hash)
    .bind(key.created_at)
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .bind(key.last_used_at)
    .execute(&store.pool)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn use_key(store: &PgStore, hash: &str, now: Millis) -> Result<Option<ApiKey>> {
    let Some(row) = sqlx::query(concat!(
        "SELECT ",
        key_cols!(),
        ", COALESCE($2::bigint, ",
        db_now!(),
        ") AS now FROM api_keys WHERE hash = $1"
    ))
    .bind(hash)
    .bind(store.now_arg(now))
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?
    else {
        return Ok(None);
    };
    let mut key = key_from_row(&row)?;
    let now: Millis = get(&row, "now")?;
    // Record the use, at most once per granule: authentication stays a read.
    let stale = key
        .last_used_at
        .is_none_or(|t| now - t >= USE_GRANULARITY_MS);
    if stale {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE hash = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(now)
        .bind(hash)
        .execute(&store.pool)
        .await
        .map_err(db)?;
        key.last_used_at = Some(key.last_used_at.map_or(now, |t| t.max(now)));
    }
    Ok(Some(key))
}

pub(crate) async fn get_key(store: &PgStore, id: &str) -> Result<Option<ApiKey>> {
    sqlx::query(concat!(
        "SELECT ",
        key_cols!(),
        " FROM api_keys WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?
    .as_ref()
    .map(key_from_row)
    .transpose()
}

pub(crate) async fn list(store: &PgStore, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
    sqlx::query(concat!(
        "SELECT ",
        key_cols!(),
        " FROM api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, id"
    ))
    .bind(tenant)
    .fetch_all(&store.pool)
    .await
    .map_err(db)?
    .iter()
    .map(key_from_row)
    .collect()
}

pub(crate) async fn revoke(store: &PgStore, id: &str, now: Millis) -> Result<ApiKey> {
    // One statement: the first revocation wins, later ones change nothing.
    let row = sqlx::query(concat!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2::bigint, ",
        db_now!(),
        ") WHERE id = $1 RETURNING ",
        key_cols!()
    ))
    .bind(id)
    .bind(store.now_arg(now))
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    match row {
        Some(row) => key_from_row(&row),
        None => Err(StoreError::NotFound(id.to_string())),
    }
}

pub(crate) async fn count(store: &PgStore) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&store.pool)
        .await
        .map_err(db)?;
    u64::try_from(n).map_err(|_| StoreError::Backend(format!("negative count {n}")))
}
