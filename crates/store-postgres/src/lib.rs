//! PostgreSQL backend of `assay-store`: several servers (API and workers) on one database. It
//! persists; the queue's rules, the fair-claim policy, the event and record formats and the
//! cursors are `assay-store`'s, used exactly as the SQLite backend uses them.
//!
//! What PostgreSQL changes compared with SQLite's single writer:
//!
//! - **Claims are exact** (`claim`): the ready queue is a small hot table (`queue`, the queued
//!   evaluations only, so history never slows a claim); claims take turns on one advisory lock
//!   (nothing else takes it: submissions, heartbeats, output and finishes never wait for a
//!   claim), plan on a snapshot taken under it, and write with a `FOR NO KEY UPDATE SKIP
//!   LOCKED` CTE feeding the `UPDATE … RETURNING`, committing without an fsync: caps and fair
//!   share hold exactly however many servers claim.
//! - **Transitions are optimistic** (`transition`): load, decide, and write back only if the
//!   row's `revision` is still the one loaded; no lock is held while the store decides, and a
//!   transition is two round trips.
//! - **Time is the database's** (`connection::Clock`): with several nodes, leases are compared
//!   with the database's clock, never a node's.
//! - **Wake-ups cross servers** (`listen`): transitions `pg_notify`, and a listener forwards to
//!   each process's in-process bus.
//! - **The audit log** is serialised by its head row's lock, and the database refuses UPDATE,
//!   DELETE and TRUNCATE of its entries (triggers).
//! - **Migrations** carry the SQLite backend's versions and names, run under an advisory lock.
//!
//! Modules, each depending only on those listed before it: `error` (sqlx errors, retryable or
//! not), `migrate`, `connection` (`PgStore`, options, the clock), `rows` (columns and row
//! mapping), `bulk` (inserting whole evaluations), `transition` (loading and persisting a
//! lifecycle change), then one per concern (`evaluations`, `claim`, `queue`, `keys`,
//! `workers`, `audit`, `transfer`, `listen`, `seed` for benchmarks) and `store`, the `Store`
//! implementation over them.
#![forbid(unsafe_code)]

mod audit;
mod bulk;
mod claim;
mod connection;
mod error;
mod evaluations;
mod keys;
mod listen;
mod migrate;
mod queue;
mod rows;
#[cfg(feature = "bench")]
mod seed;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod transfer;
mod transition;
mod workers;

pub use connection::{Clock, PgOptions, PgStore, url_with_database};
pub use listen::{EVENTS_CHANNEL, QUEUE_CHANNEL};
pub use migrate::migration_versions;
