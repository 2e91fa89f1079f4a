//! The per-run cgroup that Assay owns.
//!
//! Every run gets a cgroup `<parent>/<engine>/<run>` created by Assay, carrying the run's limits
//! (memory without swap, pids, CPU bandwidth). The OCI runtime puts the container in a child
//! `<run>/c` that it creates and removes itself. Keeping the limits and the accounting one level
//! above the runtime's cgroup means the figures (CPU time, peak memory, OOM events) survive the
//! runtime's clean-up and can be read after the program ended, and that every process of the run
//! can be found and killed without asking the runtime.
//!
//! Layouts: cgroup v1 and hybrid (v1 controllers plus an empty cgroup2 mount) are handled by the
//! v1 code; plain cgroup v2 (unified) by the v2 code.

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// v1 hierarchies in which Assay creates its per-run cgroup (the runtime creates the others).
const V1_OWNED: &[&str] = &["memory", "cpu", "cpuacct", "pids", "freezer"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount at `/sys/fs/cgroup/unified` (systemd's "hybrid").
    Hybrid,
    /// Pure cgroup v2 at `/sys/fs/cgroup`.
    V2,
}

impl Layout {
    pub fn detect() -> io::Result<Layout> {
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            Ok(Layout::V2)
        } else if root.join("memory").join("memory.limit_in_bytes").exists() {
            if root.join("unified").join("cgroup.controllers").exists() {
                Ok(Layout::Hybrid)
            } else {
                Ok(Layout::V1)
            }
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no usable cgroup hierarchy under /sys/fs/cgroup (need the v1 memory controller or cgroup v2)",
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::V1 => "v1",
            Layout::Hybrid => "hybrid (v1 controllers + cgroup2)",
            Layout::V2 => "v2 (unified)",
        }
    }
}

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
    layout: Layout,
    rel: PathBuf,
    /// v1: eventfd registered for OOM notifications on our memory cgroup.
    oom_eventfd: Option<EventFd>,
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a `key value` line from a flat-keyed cgroup file.
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl RunCgroup {
    /// Creates the run's cgroup with its limits. On failure, whatever was created is removed.
    pub fn create(layout: Layout, rel: PathBuf, limits: CgroupLimits) -> io::Result<RunCgroup> {
        let mut cg = RunCgroup {
            layout,
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
        Path::new(CGROUP_ROOT).join(controller).join(&self.rel)
    }

    fn v2(&self) -> PathBuf {
        Path::new(CGROUP_ROOT).join(&self.rel)
    }

    /// The path to give the runtime as `linux.cgroupsPath`.
    pub fn container_path(&self) -> String {
        format!("/{}/c", self.rel.display())
    }

    fn setup(&mut self, limits: CgroupLimits) -> io::Result<()> {
        let period: u64 = 100_000;
        let quota = u64::from(limits.cpu_millicores) * period / 1000;
        match self.layout {
            Layout::V1 | Layout::Hybrid => {
                for c in V1_OWNED {
                    if Path::new(CGROUP_ROOT).join(c).exists() {
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
                write_file(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
                write_file(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            Layout::V2 => {
                // Enable the controllers down the path, then set the limits on the run's group.
                let mut dir = PathBuf::from(CGROUP_ROOT);
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
                write_file(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a runtime process joins when Assay places it in the run's
    /// cgroup itself. v1: the run's own cgroup in each hierarchy Assay owns. v2: a leaf `<run>/c`
    /// (v2 forbids processes in a cgroup whose controllers are delegated to children).
    pub fn join_procs_files(&self) -> io::Result<Vec<PathBuf>> {
        match self.layout {
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
        match self.layout {
            Layout::V1 | Layout::Hybrid => {
                let oom_events = self
                    .oom_eventfd
                    .as_ref()
                    .and_then(|e| e.read().ok())
                    .unwrap_or(0)
                    + read_key(&self.v1("memory").join("memory.oom_control"), "oom_kill")
                        .unwrap_or(0);
                CgroupStats {
                    cpu_ns: read_u64(&self.v1("cpuacct").join("cpuacct.usage")).unwrap_or(0),
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
                    cpu_ns: read_key(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
                    peak_memory_bytes: read_u64(&dir.join("memory.peak")).unwrap_or(0),
                    oom_events: read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
                }
            }
        }
    }

    /// CPU time used so far, cheaply (polled while the run goes on).
    pub fn cpu_ns(&self) -> u64 {
        match self.layout {
            Layout::V1 | Layout::Hybrid => {
                read_u64(&self.v1("cpuacct").join("cpuacct.usage")).unwrap_or(0)
            }
            Layout::V2 => read_key(&self.v2().join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
        }
    }

    /// Kills every process of the run with SIGKILL. Returns how many were signalled.
    pub fn kill_all(&self) -> usize {
        kill_tree(self.layout, &self.rel, None)
    }

    /// Kills every process of the run but `spare` (the runtime process, when it sits in the
    /// run's cgroup): a runtime left alive reaps the container's init and exits cleanly, where a
    /// killed one would leave that init behind as a zombie for the host's PID 1.
    pub fn kill_all_except(&self, spare: Option<u32>) -> usize {
        kill_tree(self.layout, &self.rel, spare.map(|p| p as i32))
    }

    /// Removes the run's cgroup (and anything the runtime left below it) in every hierarchy.
    /// Processes still inside are killed first.
    pub fn remove(&mut self) {
        self.oom_eventfd = None;
        remove_tree(self.layout, &self.rel);
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // Normally removed explicitly; this is the backstop for early returns and panics.
        if hierarchy_dirs(self.layout, &self.rel)
            .iter()
            .any(|p| p.exists())
        {
            self.remove();
        }
    }
}

/// Every directory where `rel` may exist: one per v1 hierarchy, or the v2 one.
fn hierarchy_dirs(layout: Layout, rel: &Path) -> Vec<PathBuf> {
    match layout {
        Layout::V2 => vec![Path::new(CGROUP_ROOT).join(rel)],
        Layout::V1 | Layout::Hybrid => {
            let mut out = Vec::new();
            if let Ok(entries) = fs::read_dir(CGROUP_ROOT) {
                for e in entries.flatten() {
                    let name = e.file_name();
                    if name == "unified" {
                        continue;
                    }
                    // Co-mounted hierarchies appear as symlinks (cpu -> cpu,cpuacct): skip them.
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        let p = e.path().join(rel);
                        if p.exists() {
                            out.push(p);
                        }
                    }
                }
            }
            if layout == Layout::Hybrid {
                let p = Path::new(CGROUP_ROOT).join("unified").join(rel);
                if p.exists() {
                    out.push(p);
                }
            }
            out
        }
    }
}

/// All processes in a cgroup subtree.
fn procs_in(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                procs_in(&e.path(), out);
            }
        }
    }
}

/// SIGKILLs every process below `rel`. In v1 the freezer stops a fork bomb from racing the
/// kill; in v2 `cgroup.kill` does it atomically.
pub fn kill_tree(layout: Layout, rel: &Path, spare: Option<i32>) -> usize {
    match layout {
        Layout::V2 => {
            let dir = Path::new(CGROUP_ROOT).join(rel);
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
                procs_in(&Path::new(CGROUP_ROOT).join("pids").join(rel), &mut pids);
                if pids.is_empty() {
                    procs_in(&Path::new(CGROUP_ROOT).join("memory").join(rel), &mut pids);
                }
                pids.retain(|p| Some(*p) != spare);
                pids
            };
            // Nothing to kill (the common case after a run ended): no freezer round trip.
            if collect().is_empty() {
                return 0;
            }
            let freezer = Path::new(CGROUP_ROOT).join("freezer").join(rel);
            let frozen =
                freezer.exists() && write_file(&freezer.join("freezer.state"), "FROZEN").is_ok();
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

/// Kills what is left below `rel` and removes the directories, deepest first, in every
/// hierarchy. A cgroup whose last process is still exiting refuses rmdir with EBUSY for a
/// moment; that is retried briefly.
pub fn remove_tree(layout: Layout, rel: &Path) {
    let dirs = hierarchy_dirs(layout, rel);
    if dirs.is_empty() {
        return;
    }
    kill_tree(layout, rel, None);
    for dir in dirs {
        rmdir_deep(&dir);
    }
}

fn rmdir_deep(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_deep(&e.path());
            }
        }
    }
    for attempt in 0..200 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 199 => {
                // The kernel has not finished tearing down the last task; it takes microseconds.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove cgroup");
                return;
            }
        }
    }
}

/// Lists the run cgroups left below `<parent>/<engine>` (names of the `<run>` directories).
pub fn list_children(layout: Layout, rel: &Path) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for dir in hierarchy_dirs(layout, rel) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    names.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    names.into_iter().collect()
}
