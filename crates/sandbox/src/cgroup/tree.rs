//! Whole cgroup subtrees: finding, killing and removing what is below a path.

use super::files::{is_dir, write_file};
use super::hierarchy::{Cgroups, Layout};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often, and how long apart, rmdir of a cgroup is retried while the kernel reports it busy.
const RMDIR_ATTEMPTS: u32 = 200;
const RMDIR_PAUSE: Duration = Duration::from_millis(5);

/// All processes in a cgroup subtree.
fn procs_in(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if is_dir(&e) {
                procs_in(&e.path(), out);
            }
        }
    }
}

/// Appends `dir` and every directory below it, deepest first.
fn dirs_deepest_first(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        let mut subs: Vec<PathBuf> = entries.flatten().filter(is_dir).map(|e| e.path()).collect();
        subs.sort();
        for sub in subs {
            dirs_deepest_first(&sub, out);
        }
    }
    out.push(dir.to_path_buf());
}

/// Removes one (empty) cgroup directory. A cgroup whose last process is still exiting refuses
/// rmdir with EBUSY for a moment (the kernel finishes tearing the task down in microseconds);
/// that is retried briefly. Any other error is final.
fn rmdir(dir: &Path) -> io::Result<()> {
    let mut attempt = 1;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(RMDIR_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

impl Cgroups {
    /// SIGKILLs every process below `rel` but `spare`; returns how many were signalled. In v1
    /// the freezer stops a fork bomb from racing the kill; in v2 `cgroup.kill` does it
    /// atomically (when nothing is spared).
    pub fn kill_tree(&self, rel: &Path, spare: Option<i32>) -> usize {
        match self.layout() {
            Layout::V2 => {
                let dir = self.v2(rel);
                let mut pids = Vec::new();
                procs_in(&dir, &mut pids);
                if spare.is_some() {
                    pids.retain(|p| Some(*p) != spare);
                    for &p in &pids {
                        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                    }
                } else if !pids.is_empty() {
                    let _ = write_file(&dir.join("cgroup.kill"), "1");
                }
                pids.len()
            }
            Layout::V1 | Layout::Hybrid => {
                let collect = || {
                    let mut pids = Vec::new();
                    procs_in(&self.v1("pids", rel), &mut pids);
                    if pids.is_empty() {
                        procs_in(&self.v1("memory", rel), &mut pids);
                    }
                    pids.retain(|p| Some(*p) != spare);
                    pids
                };
                // Nothing to kill (the common case after a run ended): no freezer round trip.
                if collect().is_empty() {
                    return 0;
                }
                let freezer = self.v1("freezer", rel);
                let frozen = freezer.exists()
                    && write_file(&freezer.join("freezer.state"), "FROZEN").is_ok();
                // Collected again while frozen: nothing can fork in between.
                let pids = collect();
                for &p in &pids {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
                if frozen {
                    let _ = write_file(&freezer.join("freezer.state"), "THAWED");
                }
                pids.len()
            }
        }
    }

    /// The directories that make up `rel` in every hierarchy, each subtree deepest first: the
    /// order in which they can be removed.
    pub fn removal_order(&self, rel: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in self.hierarchy_dirs(rel) {
            dirs_deepest_first(&dir, &mut out);
        }
        out
    }

    /// Kills what is left below `rel` and removes its directories in every hierarchy, deepest
    /// first. Returns the directories that could not be removed (empty on success); each is
    /// logged. A directory that fails does not stop the others.
    pub fn remove_tree(&self, rel: &Path) -> Vec<PathBuf> {
        let dirs = self.removal_order(rel);
        if dirs.is_empty() {
            return Vec::new();
        }
        self.kill_tree(rel, None);
        let mut left = Vec::new();
        for dir in dirs {
            if let Err(e) = rmdir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove cgroup");
                left.push(dir);
            }
        }
        left
    }

    /// The names of the cgroups directly below `rel` in any hierarchy (the `<run>` directories
    /// below `<parent>/<engine>`).
    pub fn list_children(&self, rel: &Path) -> Vec<String> {
        let mut names = BTreeSet::new();
        for dir in self.hierarchy_dirs(rel) {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten().filter(is_dir) {
                    names.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        names.into_iter().collect()
    }
}
