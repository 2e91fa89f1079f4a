//! The OCI runtime spec (`config.json`) of one run.
//!
//! Written as JSON for readability, then parsed into `oci_spec::runtime::Spec`, so that a field
//! name or value the spec does not know fails here, in a unit test, and not inside a runtime.

use crate::environment::Entry;
use crate::runtime::RuntimeKind;
use assay_domain::Limits;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};
use std::path::Path;

pub const SANDBOX_UID: u32 = 65534;
pub const CODE_DIR: &str = "/code";
pub const INIT_PATH: &str = "/.assay/init";
/// Where the directory holding the init binary is mounted.
pub const INIT_DIR: &str = "/.assay";

/// Paths hidden from the program (Docker's list).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the program may read but never write (Docker's list).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub struct SpecInput<'a> {
    pub runtime: RuntimeKind,
    pub args: Vec<String>,
    pub env: &'a [(String, String)],
    pub entries: &'a [Entry],
    pub code_dir: &'a Path,
    pub etc_dir: Option<&'a Path>,
    /// Host directory holding the init binary as `init`.
    pub init_dir: &'a Path,
    pub limits: &'a Limits,
    /// `None` when the runtime does not manage cgroups (Assay places it in the run's cgroup).
    pub cgroups_path: Option<&'a str>,
    pub seccomp_profile: &'a Value,
    pub seccomp_bpf: Option<&'a str>,
}

fn bind(destination: &str, source: &Path, ro: &str) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", ro, "nosuid", "nodev"],
    })
}

pub fn build(input: &SpecInput<'_>) -> Result<Spec, serde_json::Error> {
    let l = input.limits;
    let ro = input.runtime.readonly_bind_option();
    let tmpfs_opts = |size: u64| {
        json!([
            "nosuid",
            "nodev",
            "mode=1777",
            format!("size={size}"),
            format!("uid={SANDBOX_UID}"),
            format!("gid={SANDBOX_UID}")
        ])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": tmpfs_opts(l.tmpfs_bytes)}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmpfs_opts(l.tmpfs_bytes)}),
    ];
    for e in input.entries {
        if let Entry::Bind { name, source } = e {
            mounts.push(bind(&format!("/{name}"), source, ro));
        }
    }
    if let Some(etc) = input.etc_dir {
        mounts.push(bind("/etc", etc, ro));
    }
    mounts.push(bind(CODE_DIR, input.code_dir, ro));
    mounts.push(bind(INIT_DIR, input.init_dir, ro));

    let mut args = vec![INIT_PATH.to_string(), "--".to_string()];
    args.extend(input.args.iter().cloned());
    let env: Vec<String> = input.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // RLIMIT_CPU is a per-process backstop in whole seconds; the run's total CPU time is
    // enforced from the cgroup with millisecond resolution.
    let cpu_secs = l.cpu_time_ms.div_ceil(1000) + 1;
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if input.runtime.own_cgroup_namespace() {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut annotations = serde_json::Map::new();
    if let Some(bpf) = input.seccomp_bpf {
        annotations.insert("run.oci.seccomp_bpf_data".into(), json!(bpf));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "seccomp": input.seccomp_profile,
    });
    if let Some(path) = input.cgroups_path {
        linux["cgroupsPath"] = json!(path);
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID, "additionalGids": []},
            "args": args,
            "env": env,
            "cwd": CODE_DIR,
            "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": l.open_files, "soft": l.open_files},
                {"type": "RLIMIT_FSIZE", "hard": l.file_size_bytes, "soft": l.file_size_bytes},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
                {"type": "RLIMIT_CPU", "hard": cpu_secs + 1, "soft": cpu_secs},
            ],
            "noNewPrivileges": true,
            "oomScoreAdj": 1000,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations,
    });
    serde_json::from_value(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::LimitPolicy;

    fn input<'a>(rt: RuntimeKind, limits: &'a Limits, profile: &'a Value) -> SpecInput<'a> {
        SpecInput {
            runtime: rt,
            args: vec!["/usr/bin/python3".into(), "/code/main.py".into()],
            env: &[],
            entries: &[],
            code_dir: Path::new("/b/code"),
            etc_dir: Some(Path::new("/e/etc")),
            init_dir: Path::new("/e/init"),
            limits,
            cgroups_path: Some("/assay/e/r/c"),
            seccomp_profile: profile,
            seccomp_bpf: None,
        }
    }

    #[test]
    fn spec_is_hardened() {
        let limits = LimitPolicy::default().defaults;
        let profile = RuntimeKind::Runc.seccomp_profile();
        let spec = build(&input(RuntimeKind::Runc, &limits, &profile)).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["process"]["user"]["uid"], 65534);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["root"]["readonly"], true);
        assert!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let ns: Vec<_> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for want in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
            assert!(ns.contains(&want), "{want} namespace missing");
        }
        let code = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/code")
            .unwrap();
        assert!(code["options"].as_array().unwrap().contains(&json!("rro")));
        assert_eq!(v["process"]["args"][0], INIT_PATH);
    }

    #[test]
    fn runsc_gets_plain_ro_binds() {
        let limits = LimitPolicy::default().defaults;
        let profile = RuntimeKind::Runsc.seccomp_profile();
        let spec = build(&input(RuntimeKind::Runsc, &limits, &profile)).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        // gVisor gets no cgroup namespace (its sentry shows a synthetic cgroupfs).
        assert!(
            !v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "cgroup")
        );
        let code = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/code")
            .unwrap();
        assert!(code["options"].as_array().unwrap().contains(&json!("ro")));
    }
}
