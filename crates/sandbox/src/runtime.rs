//! The OCI runtimes Assay drives (runc, crun, runsc) and how each is invoked.
//!
//! All three go through one code path: a bundle directory with `config.json`, then
//! `<runtime> --root <state> run --bundle <dir> --pid-file <file> <id>` in the foreground with the
//! program's stdio as the runtime's stdio. Every difference between them is decided in this
//! module and nowhere else: global flags (runsc's network and seccomp switches, crun's disabled
//! cgroup manager), the read-only bind option (`rro` vs `ro`), whether the container gets a
//! cgroup namespace, the seccomp profile's flavour and crun's precompiled filter, who creates
//! the container's cgroup, the host pids limit (gVisor's own threads count), how long a killed
//! run's runtime is given to exit, and crun's private mount namespace on hybrid-cgroup hosts.
//! Other modules ask a [`RuntimeKind`] or [`Runtime`]; they never match on the kind.

use crate::cgroup::Layout;
use crate::seccomp::{self, SeccompError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;
use tokio::process::Command;

/// Host processes gVisor itself needs (sentry, gofer, platform stubs) besides the program's.
const RUNSC_PIDS_BASE: u32 = 128;

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

    /// Whether the bundle asks for a cgroup namespace. Not under runsc: there the program's
    /// kernel is gVisor's sentry, whose cgroup view is its own anyway.
    pub fn own_cgroup_namespace(self) -> bool {
        match self {
            RuntimeKind::Runsc => false,
            RuntimeKind::Runc | RuntimeKind::Crun => true,
        }
    }

    /// The seccomp policy as this runtime's `linux.seccomp`. runsc (2022-12) ignores
    /// `errnoRet` and would answer `clone3` with EPERM, which breaks thread creation; under
    /// gVisor `clone3` is handled by the sandbox's own kernel, so there it is allowed.
    pub fn seccomp_profile(self) -> Value {
        seccomp::oci_profile(match self {
            RuntimeKind::Runsc => false,
            RuntimeKind::Runc | RuntimeKind::Crun => true,
        })
    }

    /// The policy precompiled to BPF for the bundle's `run.oci.seccomp_bpf_data` annotation,
    /// for the runtime that reads it: crun, which then skips compiling it on every run (about
    /// 15–20 ms of each run, DESIGN.md section 6). The others get `None`.
    pub fn precompiled_seccomp(self) -> Result<Option<String>, SeccompError> {
        match self {
            RuntimeKind::Crun => seccomp::bpf_annotation().map(Some),
            RuntimeKind::Runc | RuntimeKind::Runsc => Ok(None),
        }
    }

    /// The pids limit of the host cgroup for a run allowed `pids` processes. Under runsc every
    /// guest thread also costs host threads (the ptrace platform's stubs) and the sentry has
    /// its own, so the host limit is a bound on the whole sandbox rather than the program's
    /// exact count: base + 2 per allowed process.
    pub fn host_pids_limit(self, pids: u32) -> u32 {
        match self {
            RuntimeKind::Runsc => RUNSC_PIDS_BASE.saturating_add(pids.saturating_mul(2)),
            RuntimeKind::Runc | RuntimeKind::Crun => pids,
        }
    }

    /// How long a killed run's runtime process is left alive before it is killed too. runc and
    /// crun get a while, so that they reap the container's init (no zombies for the host's PID
    /// 1); runsc is slow to notice its sandbox died, and is stopped at once.
    pub fn kill_grace(self) -> Duration {
        match self {
            RuntimeKind::Runsc => Duration::ZERO,
            RuntimeKind::Runc | RuntimeKind::Crun => Duration::from_secs(2),
        }
    }

    /// True when the runtime creates the container's cgroup itself (from `cgroupsPath`);
    /// false when Assay must place the runtime process in the run's cgroup before it starts.
    /// crun runs with its cgroup manager disabled: joining the cgroup Assay made saves it
    /// creating and removing one in every hierarchy per run (about 6 ms).
    pub fn manages_cgroups(self) -> bool {
        match self {
            RuntimeKind::Crun => false,
            RuntimeKind::Runc | RuntimeKind::Runsc => true,
        }
    }

    /// Whether the runtime must run in a mount namespace without the cgroup2 mount: crun 1.8
    /// refuses hybrid hosts ("cgroups in hybrid mode not supported"), see `child.rs`.
    fn needs_private_cgroup_mounts(self, layout: Layout) -> bool {
        self == RuntimeKind::Crun && layout == Layout::Hybrid
    }

    /// Flags before the command, besides `--root`.
    fn global_flags(self) -> &'static [&'static str] {
        match self {
            // No network stack but loopback; apply the bundle's seccomp profile inside the
            // sandbox too (defence in depth under the user-space kernel).
            RuntimeKind::Runsc => &["--network=none", "--oci-seccomp"],
            // Assay puts crun into the run's cgroup itself (see `manages_cgroups`).
            RuntimeKind::Crun => &["--cgroup-manager=disabled"],
            RuntimeKind::Runc => &[],
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
            private_cgroup_ns: kind.needs_private_cgroup_mounts(layout),
        }
    }

    fn base(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        // Nothing of the caller's environment reaches the runtime (and so the sandbox).
        cmd.env_clear();
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd.arg("--root").arg(&self.root);
        cmd.args(self.kind.global_flags());
        if self.private_cgroup_ns {
            crate::child::hide_cgroup2(&mut cmd);
        }
        cmd
    }

    /// See [`RuntimeKind::manages_cgroups`].
    pub fn manages_cgroups(&self) -> bool {
        self.kind.manages_cgroups()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every per-runtime decision, in one table (the values the engine relied on before they
    /// moved here).
    #[test]
    fn runtime_differences() {
        use RuntimeKind::*;
        for (kind, ro, cgroup_ns, bpf, pids, grace, manages) in [
            (Runc, "rro", true, false, 64, 2, true),
            (Crun, "rro", true, true, 64, 2, false),
            (Runsc, "ro", false, false, 128 + 2 * 64, 0, true),
        ] {
            assert_eq!(kind.readonly_bind_option(), ro, "{kind}");
            assert_eq!(kind.own_cgroup_namespace(), cgroup_ns, "{kind}");
            assert_eq!(kind.precompiled_seccomp().unwrap().is_some(), bpf, "{kind}");
            assert_eq!(kind.host_pids_limit(64), pids, "{kind}");
            assert_eq!(kind.kill_grace(), Duration::from_secs(grace), "{kind}");
            assert_eq!(kind.manages_cgroups(), manages, "{kind}");
        }
        assert_eq!(Runsc.host_pids_limit(u32::MAX), u32::MAX);
        // clone3 answers ENOSYS (errnoRet 38) except under gVisor, where it is allowed.
        let clone3 = |k: RuntimeKind| {
            k.seccomp_profile()["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["names"][0] == "clone3")
                .unwrap()["action"]
                .clone()
        };
        assert_eq!(clone3(Runc), "SCMP_ACT_ERRNO");
        assert_eq!(clone3(Crun), "SCMP_ACT_ERRNO");
        assert_eq!(clone3(Runsc), "SCMP_ACT_ALLOW");
        assert!(Crun.needs_private_cgroup_mounts(Layout::Hybrid));
        assert!(!Crun.needs_private_cgroup_mounts(Layout::V2));
        assert!(!Runc.needs_private_cgroup_mounts(Layout::Hybrid));
        assert_eq!(Runsc.global_flags(), ["--network=none", "--oci-seccomp"]);
        assert_eq!(Crun.global_flags(), ["--cgroup-manager=disabled"]);
        assert!(Runc.global_flags().is_empty());
    }
}
