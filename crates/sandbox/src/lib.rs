//! `assay-sandbox`: runs untrusted programs in single-use OCI sandboxes.
//!
//! The seam is the [`Sandbox`] trait: given a [`RunRequest`] (environment, program files,
//! arguments, stdin, limits) it runs the program, streams stdout/stderr as [`RunEvent`]s,
//! enforces the limits, and returns a [`assay_domain::RunResult`].
//!
//! The [`Engine`] implements it for real: it writes an OCI bundle, runs it under the configured
//! runtime (runc, crun or gVisor's runsc, one code path), and leaves nothing behind: no
//! process, mount, cgroup or bundle; on start an engine removes what dead engines under the
//! same state directory left.
//!
//! Features, for tests only: `fake` adds `ScriptedSandbox` (a `Sandbox` that interprets a tiny
//! script instead of running Python, no root needed); `conformance` adds the suite every
//! `Sandbox` passes (`conformance_tests!`).
//!
//! This crate is the only one in Assay that spawns processes. It knows no database and no HTTP.
#![deny(unsafe_code)]

mod bundle;
mod capture;
pub mod cgroup;
mod child;
mod cleanup;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod doctor;
mod engine;
pub mod environment;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod init;
pub mod runtime;
mod sandbox;
pub mod seccomp;
pub mod spec;
mod status;

pub use cleanup::Cleanup;
pub use engine::{Engine, EngineConfig, resolve_runtime};
pub use environment::Environment;
pub use error::SandboxError;
#[cfg(feature = "fake")]
pub use fake::ScriptedSandbox;
pub use init::find_init;
pub use runtime::{RuntimeChoice, RuntimeKind};
pub use sandbox::{OutputBudget, RunEvent, RunRequest, Sandbox};
pub use tokio_util::sync::CancellationToken;
