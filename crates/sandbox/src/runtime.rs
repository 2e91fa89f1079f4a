//! The OCI runtimes Assay drives (runc, crun, runsc) and how each is invoked.
//!
//! All three go through one code path: a bundle directory with `config.json`, then
//! `<runtime> --root <state> run --bundle <dir> --pid-file <file> <id>` in the foreground with the
//! program's stdio as the runtime's stdio. The differences are confined to this module: extra
//! global flags for runsc, the mount options it accepts, and crun's need for a private mount
//! namespace on hybrid-cgroup hosts.

use crate::cgroup::Layout;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use tokio::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Runc,
    Crun,
    Runsc,
}

impl RuntimeKind {
    /// Strongest isolation first: gVisor's user-space kernel, then the two namespace runtimes
    /// (crun before runc only because it is faster; they isolate alike).
    pub const BY_STRENGTH: [RuntimeKind; 3] =
        [RuntimeKind::Runsc, RuntimeKind::Crun, RuntimeKind::Runc];

    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runsc => "runsc",
        }
    }

    fn search_paths(self) -> &'static [&'static str] {
        match self {
            RuntimeKind::Runc => &[
                "/usr/sbin/runc",
                "/usr/bin/runc",
                "/usr/local/sbin/runc",
                "/usr/local/bin/runc",
            ],
            RuntimeKind::Crun => &["/usr/bin/crun", "/usr/local/bin/crun"],
            RuntimeKind::Runsc => &["/usr/bin/runsc", "/usr/local/bin/runsc"],
        }
    }

    /// Finds the runtime's executable in the usual places.
    pub fn find(self) -> Option<PathBuf> {
        self.search_paths()
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    /// Mount option for a recursive read-only bind. runsc (2022-12) rejects `rro`.
    pub fn readonly_bind_option(self) -> &'static str {
        match self {
            RuntimeKind::Runsc => "ro",
            RuntimeKind::Runc | RuntimeKind::Crun => "rro",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "runc" => Ok(RuntimeKind::Runc),
            "crun" => Ok(RuntimeKind::Crun),
            "runsc" | "gvisor" => Ok(RuntimeKind::Runsc),
            other => Err(format!(
                "unknown runtime {other:?} (expected runc, crun, runsc or auto)"
            )),
        }
    }
}

/// What the operator asked for: a specific runtime, or the strongest that works here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuntimeChoice {
    #[default]
    Auto,
    Exactly(RuntimeKind),
}

impl FromStr for RuntimeChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            Ok(RuntimeChoice::Auto)
        } else {
            s.parse().map(RuntimeChoice::Exactly)
        }
    }
}

impl fmt::Display for RuntimeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeChoice::Auto => f.write_str("auto"),
            RuntimeChoice::Exactly(k) => k.fmt(f),
        }
    }
}

/// A located runtime with its state directory.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub kind: RuntimeKind,
    pub path: PathBuf,
    /// The runtime's `--root`: where it keeps container state. One per engine instance.
    pub root: PathBuf,
    /// crun on a hybrid host must run in a mount namespace without the cgroup2 mount.
    pub private_cgroup_ns: bool,
}

impl Runtime {
    pub fn new(kind: RuntimeKind, path: PathBuf, root: PathBuf, layout: Layout) -> Runtime {
        Runtime {
            kind,
            path,
            root,
            private_cgroup_ns: kind == RuntimeKind::Crun && layout == Layout::Hybrid,
        }
    }

    fn base(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        // Nothing of the caller's environment reaches the runtime (and so the sandbox).
        cmd.env_clear();
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd.arg("--root").arg(&self.root);
        if self.kind == RuntimeKind::Runsc {
            // No network stack but loopback; apply the bundle's seccomp profile inside the
            // sandbox too (defence in depth under the user-space kernel).
            cmd.args(["--network=none", "--oci-seccomp"]);
        }
        if self.kind == RuntimeKind::Crun {
            // Assay puts crun into the run's cgroup itself (see `child.rs` and ADR 0002).
            cmd.arg("--cgroup-manager=disabled");
        }
        if self.private_cgroup_ns {
            crate::child::hide_cgroup2(&mut cmd);
        }
        cmd
    }

    /// True when the runtime creates the container's cgroup itself (from `cgroupsPath`);
    /// false when Assay must place the runtime process in the run's cgroup before it starts.
    pub fn manages_cgroups(&self) -> bool {
        self.kind != RuntimeKind::Crun
    }

    /// The foreground `run` command. stdio is set by the caller. `join` lists `cgroup.procs`
    /// files the runtime process enters before exec (for runtimes that do not manage cgroups).
    pub fn run_command(
        &self,
        bundle: &Path,
        pid_file: &Path,
        id: &str,
        join: &[PathBuf],
    ) -> Command {
        let mut cmd = self.base();
        let join = join
            .iter()
            .filter_map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok())
            .collect();
        crate::child::join_cgroups(&mut cmd, join);
        cmd.arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id);
        cmd.kill_on_drop(true);
        cmd
    }

    /// `delete --force`: removes a container in any state, killing it if needed. Errors (such
    /// as "container does not exist") are ignored: this is clean-up.
    pub async fn delete_force(&self, id: &str) {
        let mut cmd = self.base();
        cmd.args(["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status().await;
    }

    /// True while the runtime still has state for this container.
    pub fn has_state(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// Containers the runtime knows under this root (the names of its state directories).
    pub fn known_containers(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}
