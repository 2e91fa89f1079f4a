//! `assay-sandbox`: runs untrusted programs in single-use OCI sandboxes.
//!
//! Given a [`RunRequest`] (environment, program files, arguments, stdin, limits) the [`Engine`]
//! writes an OCI bundle, runs it under the configured runtime (runc, crun or gVisor's runsc, one
//! code path), streams stdout/stderr as [`RunEvent`]s, enforces the limits, and returns a
//! [`assay_domain::RunResult`]. Every run leaves nothing behind: no process, mount, cgroup or
//! bundle; on start an engine removes what dead engines under the same state directory left.
//!
//! This crate is the only one in Assay that spawns processes. It knows no database and no HTTP.
#![deny(unsafe_code)]

pub mod cgroup;
mod child;
pub mod doctor;
mod engine;
pub mod environment;
pub mod runtime;
pub mod seccomp;
pub mod spec;

pub use engine::{
    Cleanup, Engine, EngineConfig, RunEvent, RunRequest, SandboxError, find_init, resolve_runtime,
};
pub use environment::Environment;
pub use runtime::{RuntimeChoice, RuntimeKind};
pub use tokio_util::sync::CancellationToken;
