//! The sandbox's PID 1: tini's static build, bound into every rootfs.
//!
//! Left as PID 1, a program ignores signals it has no handler for and nobody reaps its
//! orphans; under tini it behaves as on a normal machine.

use std::path::PathBuf;

/// Where tini's static build is looked for.
pub const INIT_CANDIDATES: &[&str] = &["/usr/bin/tini-static", "/usr/local/bin/tini-static"];

/// The first place of `INIT_CANDIDATES` where tini-static exists.
pub fn find_init() -> Option<PathBuf> {
    INIT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}
