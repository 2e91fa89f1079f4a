//! SQLite backend of `assay-store`: the embedded default. It persists; the queue's rules, the
//! fair-claim policy, the event and record formats and the cursors are `assay-store`'s.
//!
//! One database file in WAL mode. All writes go through a pool of exactly one connection and
//! run in `BEGIN IMMEDIATE` transactions (SQLite has one writer at a time; taking the write lock
//! up front means a transaction never fails half-way on a lock upgrade, and other processes on
//! the same file wait on `busy_timeout`). Reads use a separate pool of several connections,
//! which WAL lets run next to the writer.
//!
//! The queue lives in the evaluations table itself (status, `not_before`, lease token and
//! expiry), so enqueueing is the insert and cannot disagree with it. A transition loads the
//! row's lifecycle in the write transaction and writes back what `assay_store::lifecycle`
//! returns; heartbeats and output chunks are fenced with `WHERE id = ? AND lease_token = ?`.
//! Event seqs come from the row's `next_seq`, bumped in the same write transaction as the
//! event insert: gapless and strictly increasing per evaluation.
//!
//! Modules, each depending only on those listed before it: `error` (sqlx errors, retryable or
//! not), `migrate`, `connection` (`SqliteStore`, opening), `bulk` (multi-row inserts), `rows`
//! (columns and row mapping), `event_log`, then one per concern (`evaluations`, `queue`,
//! `keys`, `workers`, `audit`, `transfer`: retention and copying) and `store`, the `Store` implementation over them.
#![forbid(unsafe_code)]

mod audit;
mod bulk;
mod connection;
mod error;
mod evaluations;
mod event_log;
mod keys;
mod migrate;
mod queue;
mod rows;
#[cfg(feature = "bench")]
mod seed;
mod store;
mod transfer;
mod workers;

pub use connection::SqliteStore;
