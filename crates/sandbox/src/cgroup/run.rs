//! One run's cgroup: creation with the limits, the OOM eventfd, figures, kill and removal.

use super::files::{read_key, read_u64, write_file};
use super::hierarchy::{Cgroups, Layout, V1_OWNED};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The CFS period Assay sets; the quota is the run's share of it.
const CPU_PERIOD_US: u64 = 100_000;

/// The limits that go into the cgroup.
#[derive(Clone, Copy, Debug)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub pids: u32,
    pub cpu_millicores: u32,
}

/// Figures read from the run's cgroup after (or during) the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu_ns: u64,
    pub peak_memory_bytes: u64,
    pub oom_events: u64,
}

/// One run's cgroup, relative to each hierarchy root (e.g. `assay/<engine>/<run>`).
#[derive(Debug)]
pub struct RunCgroup {
    cgroups: Cgroups,
    rel: PathBuf,
    /// v1: eventfd registered for OOM notifications on our memory cgroup.
    oom_eventfd: Option<EventFd>,
}

impl RunCgroup {
    /// Creates the run's cgroup `rel` with its limits. On failure, whatever was created is
    /// removed.
    pub fn create(cgroups: &Cgroups, rel: PathBuf, limits: CgroupLimits) -> io::Result<RunCgroup> {
        let mut cg = RunCgroup {
            cgroups: cgroups.clone(),
            rel,
            oom_eventfd: None,
        };
        if let Err(e) = cg.setup(limits) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn v1(&self, controller: &str) -> PathBuf {
        self.cgroups.v1(controller, &self.rel)
    }

    fn v2(&self) -> PathBuf {
        self.cgroups.v2(&self.rel)
    }

    /// The run's cgroup, relative to each hierarchy root.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// The path to give the runtime as `linux.cgroupsPath`.
    pub fn container_path(&self) -> String {
        format!("/{}/c", self.rel.display())
    }

    fn setup(&mut self, limits: CgroupLimits) -> io::Result<()> {
        let quota = u64::from(limits.cpu_millicores) * CPU_PERIOD_US / 1000;
        match self.cgroups.layout() {
            Layout::V1 | Layout::Hybrid => {
                for c in V1_OWNED {
                    if self.cgroups.has_controller(c) {
                        fs::create_dir_all(self.v1(c))?;
                    }
                }
                let mem = self.v1("memory");
                write_file(
                    &mem.join("memory.limit_in_bytes"),
                    &limits.memory_bytes.to_string(),
                )?;
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &limits.memory_bytes.to_string())?;
                }
                // Ask the kernel to tell us about OOM in this cgroup (or below): an eventfd
                // registered on memory.oom_control. The count survives the runtime removing
                // its own child cgroup.
                let efd = EventFd::from_value_and_flags(
                    0,
                    EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let oc = fs::File::open(mem.join("memory.oom_control"))?;
                write_file(
                    &mem.join("cgroup.event_control"),
                    &format!("{} {}", efd.as_raw_fd(), oc.as_raw_fd()),
                )?;
                self.oom_eventfd = Some(efd);
                write_file(&self.v1("pids").join("pids.max"), &limits.pids.to_string())?;
                let cpu = self.v1("cpu");
                write_file(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write_file(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            Layout::V2 => {
                // Enable the controllers down the path, then set the limits on the run's group.
                // A parent that already delegates them (or refuses, when processes sit in it)
                // is not an error: the limit writes below fail if a controller is missing.
                let mut dir = self.cgroups.root().to_path_buf();
                for part in self.rel.components() {
                    let sub = dir.join(part);
                    fs::create_dir_all(&sub)?;
                    let _ = write_file(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu");
                    dir = sub;
                }
                let _ = write_file(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu");
                write_file(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                write_file(&dir.join("memory.swap.max"), "0")?;
                write_file(&dir.join("pids.max"), &limits.pids.to_string())?;
                write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a runtime process joins when Assay places it in the run's
    /// cgroup itself. v1: the run's own cgroup in each hierarchy Assay owns. v2: a leaf `<run>/c`
    /// (v2 forbids processes in a cgroup whose controllers are delegated to children).
    pub fn join_procs_files(&self) -> io::Result<Vec<PathBuf>> {
        match self.cgroups.layout() {
            Layout::V1 | Layout::Hybrid => Ok(V1_OWNED
                .iter()
                .map(|c| self.v1(c))
                .filter(|d| d.exists())
                .map(|d| d.join("cgroup.procs"))
                .collect()),
            Layout::V2 => {
                let leaf = self.v2().join("c");
                fs::create_dir_all(&leaf)?;
                Ok(vec![leaf.join("cgroup.procs")])
            }
        }
    }

    /// Reads CPU time, peak memory and OOM events.
    pub fn stats(&self) -> CgroupStats {
        match self.cgroups.layout() {
            Layout::V1 | Layout::Hybrid => {
                let oom_events = self
                    .oom_eventfd
                    .as_ref()
                    .and_then(|e| e.read().ok())
                    .unwrap_or(0)
                    + read_key(&self.v1("memory").join("memory.oom_control"), "oom_kill")
                        .unwrap_or(0);
                CgroupStats {
                    cpu_ns: self.cpu_ns(),
                    peak_memory_bytes: read_u64(
                        &self.v1("memory").join("memory.max_usage_in_bytes"),
                    )
                    .unwrap_or(0),
                    oom_events,
                }
            }
            Layout::V2 => {
                let dir = self.v2();
                CgroupStats {
                    cpu_ns: self.cpu_ns(),
                    peak_memory_bytes: read_u64(&dir.join("memory.peak")).unwrap_or(0),
                    oom_events: read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
                }
            }
        }
    }

    /// CPU time used so far, cheaply (polled while the run goes on).
    pub fn cpu_ns(&self) -> u64 {
        match self.cgroups.layout() {
            Layout::V1 | Layout::Hybrid => {
                read_u64(&self.v1("cpuacct").join("cpuacct.usage")).unwrap_or(0)
            }
            Layout::V2 => read_key(&self.v2().join("cpu.stat"), "usage_usec")
                .unwrap_or(0)
                .saturating_mul(1000),
        }
    }

    /// Kills every process of the run with SIGKILL. Returns how many were signalled.
    pub fn kill_all(&self) -> usize {
        self.cgroups.kill_tree(&self.rel, None)
    }

    /// Kills every process of the run but `spare` (the runtime process, when it sits in the
    /// run's cgroup): a runtime left alive reaps the container's init and exits cleanly, where a
    /// killed one would leave that init behind as a zombie for the host's PID 1.
    pub fn kill_all_except(&self, spare: Option<u32>) -> usize {
        // A PID always fits an i32 (pid_max is at most 2^22).
        let spare = spare.and_then(|p| i32::try_from(p).ok());
        self.cgroups.kill_tree(&self.rel, spare)
    }

    /// Removes the run's cgroup (and anything the runtime left below it) in every hierarchy.
    /// Processes still inside are killed first. Returns the directories that could not be
    /// removed (empty on success).
    pub fn remove(&mut self) -> Vec<PathBuf> {
        self.oom_eventfd = None;
        self.cgroups.remove_tree(&self.rel)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // Normally removed explicitly; this is the backstop for early returns and panics.
        if !self.cgroups.hierarchy_dirs(&self.rel).is_empty() {
            self.remove();
        }
    }
}
