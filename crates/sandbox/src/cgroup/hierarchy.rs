//! Where the cgroup hierarchies are and how they are laid out.

use super::files::is_dir;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the kernel's cgroup hierarchies are mounted on a normal host.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// v1 hierarchies in which Assay creates its per-run cgroup (the runtime creates the others).
pub(super) const V1_OWNED: &[&str] = &["memory", "cpu", "cpuacct", "pids", "freezer"];

/// The cgroup2 mount inside the root on hybrid hosts.
const UNIFIED: &str = "unified";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount at `<root>/unified` (systemd's "hybrid").
    Hybrid,
    /// Pure cgroup v2 at the root.
    V2,
}

impl Layout {
    /// Tells the layout from what is mounted under `root`.
    pub fn detect(root: &Path) -> io::Result<Layout> {
        if root.join("cgroup.controllers").exists() {
            Ok(Layout::V2)
        } else if root.join("memory").join("memory.limit_in_bytes").exists() {
            if root.join(UNIFIED).join("cgroup.controllers").exists() {
                Ok(Layout::Hybrid)
            } else {
                Ok(Layout::V1)
            }
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no usable cgroup hierarchy under {} (need the v1 memory controller or cgroup v2)",
                    root.display()
                ),
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

/// The cgroup hierarchies of a host: where they are mounted and how they are laid out. Every
/// cgroup operation goes through one, so that none assumes `/sys/fs/cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
    layout: Layout,
}

impl Cgroups {
    /// The hierarchies under `root` (normally [`DEFAULT_ROOT`]), with their layout detected.
    pub fn detect(root: impl Into<PathBuf>) -> io::Result<Cgroups> {
        let root = root.into();
        let layout = Layout::detect(&root)?;
        Ok(Cgroups { root, layout })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// `rel` in one v1 hierarchy.
    pub(super) fn v1(&self, controller: &str, rel: &Path) -> PathBuf {
        self.root.join(controller).join(rel)
    }

    /// `rel` in the v2 hierarchy.
    pub(super) fn v2(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// True when this v1 controller is mounted.
    pub(super) fn has_controller(&self, controller: &str) -> bool {
        self.root.join(controller).exists()
    }

    /// Every directory where `rel` exists: one per v1 hierarchy (each co-mounted one once, and
    /// the hybrid cgroup2 mount too), or the v2 one.
    pub fn hierarchy_dirs(&self, rel: &Path) -> Vec<PathBuf> {
        match self.layout {
            Layout::V2 => {
                let p = self.v2(rel);
                if p.exists() { vec![p] } else { Vec::new() }
            }
            Layout::V1 | Layout::Hybrid => {
                let mut out = Vec::new();
                if let Ok(entries) = fs::read_dir(&self.root) {
                    for e in entries.flatten() {
                        if e.file_name() == UNIFIED || !is_dir(&e) {
                            continue;
                        }
                        let p = e.path().join(rel);
                        if p.exists() {
                            out.push(p);
                        }
                    }
                }
                out.sort();
                if self.layout == Layout::Hybrid {
                    let p = self.root.join(UNIFIED).join(rel);
                    if p.exists() {
                        out.push(p);
                    }
                }
                out
            }
        }
    }
}
