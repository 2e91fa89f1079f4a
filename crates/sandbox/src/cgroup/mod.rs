//! The per-run cgroup that Assay owns.
//!
//! Every run gets a cgroup `<parent>/<engine>/<run>` created by Assay, carrying the run's limits
//! (memory without swap, pids, CPU bandwidth). The OCI runtime puts the container in a child
//! `<run>/c` that it creates and removes itself. Keeping the limits and the accounting one level
//! above the runtime's cgroup means the figures (CPU time, peak memory, OOM events) survive the
//! runtime's clean-up and can be read after the program ended, and that every process of the run
//! can be found and killed without asking the runtime.
//!
//! Layouts: cgroup v1 and hybrid (v1 controllers plus a cgroup2 mount) are handled by the v1
//! code; plain cgroup v2 (unified) by the v2 code.
//!
//! Nothing here hard-codes where the hierarchies are mounted: every operation goes through a
//! [`Cgroups`] handle carrying the root (normally [`DEFAULT_ROOT`]) and its [`Layout`], so the
//! unit tests run the same code over temporary directory trees shaped like each layout.

mod files;
mod hierarchy;
mod run;
mod tree;

#[cfg(test)]
mod tests;

pub use hierarchy::{Cgroups, DEFAULT_ROOT, Layout};
pub use run::{CgroupLimits, CgroupStats, RunCgroup};
