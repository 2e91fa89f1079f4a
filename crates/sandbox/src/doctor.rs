//! `assay doctor`: checks that this host can run sandboxes, and says in plain words what to fix.

use crate::cgroup::{Cgroups, DEFAULT_ROOT};
use crate::engine::{Engine, EngineConfig};
use crate::init::find_init;
use crate::runtime::{RuntimeChoice, RuntimeKind};
use crate::sandbox::RunRequest;
use assay_domain::{LimitPolicy, Program, RunStatus};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but something is missing or weaker than it could be.
    Warn,
    /// Sandboxes cannot run until this is fixed.
    Fail,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub detail: String,
    /// What to do about it (empty when nothing).
    pub fix: String,
}

fn check(name: &str, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        level,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Runs every check. `state_dir` is where trial sandboxes are placed.
pub async fn run_checks(state_dir: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push(if root {
        check("privileges", Level::Ok, "running as root", "")
    } else {
        check(
            "privileges",
            Level::Fail,
            "not running as root: OCI runtimes need root to create namespaces and cgroups",
            "run assay as root (or under a service account with CAP_SYS_ADMIN)",
        )
    });
    match Cgroups::detect(DEFAULT_ROOT) {
        Ok(c) => out.push(check(
            "cgroups",
            Level::Ok,
            format!("layout {}", c.layout().name()),
            "",
        )),
        Err(e) => out.push(check("cgroups", Level::Fail, e.to_string(), "mount cgroup v2 at /sys/fs/cgroup, or the v1 memory, cpu, cpuacct and pids controllers")),
    }
    let missing_ns: Vec<&str> = ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
        .into_iter()
        .filter(|ns| !Path::new("/proc/self/ns").join(ns).exists())
        .collect();
    out.push(if missing_ns.is_empty() {
        check(
            "namespaces",
            Level::Ok,
            "pid, net, ipc, uts, mnt and cgroup namespaces available",
            "",
        )
    } else {
        check(
            "namespaces",
            Level::Fail,
            format!("kernel lacks namespaces: {}", missing_ns.join(", ")),
            "use a kernel with CONFIG_NAMESPACES and these namespaces enabled",
        )
    });
    out.push(match find_init() {
        Some(p) => check(
            "init",
            Level::Ok,
            format!("tini found at {}", p.display()),
            "",
        ),
        None => check(
            "init",
            Level::Fail,
            "tini-static not found",
            "apt-get install tini",
        ),
    });
    out.push(if Path::new("/usr/bin/python3").is_file() {
        check(
            "python",
            Level::Ok,
            "/usr/bin/python3 present (the default environment)",
            "",
        )
    } else {
        check(
            "python",
            Level::Fail,
            "/usr/bin/python3 missing: the default python environment cannot run",
            "apt-get install python3",
        )
    });
    let mut working = Vec::new();
    for kind in RuntimeKind::BY_STRENGTH {
        let c = check_runtime(kind, state_dir).await;
        if c.level == Level::Ok {
            working.push(kind);
        }
        out.push(c);
    }
    out.push(match working.first() {
        Some(k) => check("auto", Level::Ok, format!("--runtime auto picks {k}"), ""),
        None => check(
            "auto",
            Level::Fail,
            "no runtime works",
            "apt-get install runc crun runsc, then run assay doctor again",
        ),
    });
    out
}

async fn check_runtime(kind: RuntimeKind, state_dir: &Path) -> Check {
    let name = kind.name();
    let Some(path) = kind.find() else {
        return check(
            name,
            Level::Warn,
            "not installed",
            format!("apt-get install {name}"),
        );
    };
    let config = EngineConfig {
        runtime: RuntimeChoice::Exactly(kind),
        state_dir: PathBuf::from(state_dir),
        ..EngineConfig::default()
    };
    let engine = match Engine::new(config).await {
        Ok(e) => e,
        Err(e) => {
            return check(
                name,
                Level::Fail,
                format!("{}: {e}", path.display()),
                "see the error above",
            );
        }
    };
    let mut limits = LimitPolicy::default().defaults;
    limits.wall_time_ms = 20_000;
    let req = RunRequest {
        program: Program::single("print('ok')"),
        environment: "python".into(),
        args: vec![],
        stdin: vec![],
        limits,
        retain_output: None,
        output_budget: None,
    };
    let r = engine.run(req, None, Default::default()).await;
    if r.status == RunStatus::Succeeded && r.stdout == "ok\n" {
        check(
            name,
            Level::Ok,
            format!(
                "{} works ({} ms for a trial run)",
                path.display(),
                r.wall_ms
            ),
            "",
        )
    } else {
        let why = r.error.unwrap_or(r.stderr);
        check(
            name,
            Level::Fail,
            format!(
                "{} is installed but a trial run ended {}: {}",
                path.display(),
                r.status,
                why.trim()
            ),
            "check the runtime's version and the kernel's support (see the message)",
        )
    }
}
