//! `assay-worker`: N concurrent slots, each looping claim → sandbox → stream events → finish.
//!
//! * Every write for an attempt is fenced by its lease token; a worker that lost its lease (it
//!   stalled, the reaper gave the job to another) stops at its next write and kills its sandbox.
//! * Heartbeats extend the lease and carry cancellation requests to the running sandbox.
//! * Shutdown (`shutdown` token, e.g. on SIGTERM): stop claiming, let running work finish for a
//!   grace period, then kill it and hand it back to the queue (`release`), uncounted.
//! * A reaper loop returns expired leases of crashed workers to the queue.
//! * Store writes that fail in a way a retry may mend (a busy database) are retried briefly.
//!
//! The worker depends on the [`Sandbox`](assay_sandbox::Sandbox) trait, not on the engine:
//! start-up clean-up of what a crashed process left is the engine's job (`Engine::new`), and
//! the worker's own logic is tested with a scripted fake. This crate knows no HTTP.
#![forbid(unsafe_code)]

mod attempt;
mod config;
mod output;
mod parts;
mod retry;
mod worker;

pub use config::WorkerConfig;
pub use worker::Worker;
