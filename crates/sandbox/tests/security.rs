//! Security suite: hostile programs, each with its expected containment, under every runtime.
//!
//! Every program in `tests/hostile/` (with `_prelude.py` prepended) tries one attack and prints
//! one JSON line saying what it observed: errno values (0 would mean the attack worked) or values
//! read. Each case below asserts concrete values: errno sets, exact listings, run statuses and
//! result fields. Never "some marker was printed".
//!
//! Besides its own check, every run is checked for leftovers: once `Engine::run` has returned,
//! the run's cgroup must be gone from every hierarchy and no process of the run may be alive.
//!
//! One test per runtime (`security_runc`, `security_crun`, `security_runsc`) so that failures are
//! attributed. A runtime that is not installed fails its test when `CI` is set, and is reported
//! loudly otherwise. Within a runtime the cases run two at a time on one engine. Where a runtime
//! legitimately differs (gVisor is its own kernel), the case says so and allows exactly that.
//!
//! Needs root (cgroups, runtimes), like the engine itself. For work on the suite:
//! `ASSAY_SECURITY_CASES=a,b` runs only those cases, `ASSAY_SECURITY_VERBOSE=1` prints what
//! every program reported.

use assay_domain::{LimitPolicy, Limits, Program, RunResult, RunStatus};
use assay_sandbox::{
    CancellationToken, Engine, EngineConfig, RunEvent, RunRequest, RuntimeChoice, RuntimeKind,
};
use libc::{
    EACCES, EAFNOSUPPORT, EAGAIN, ECONNREFUSED, EEXIST, EFBIG, EHOSTUNREACH, EINVAL, EMFILE,
    ENETUNREACH, ENOENT, ENOSPC, ENOSYS, EOPNOTSUPP, EPERM, EROFS, ESOCKTNOSUPPORT, ESRCH, ETXTBSY,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

mod common;

const PRELUDE: &str = include_str!("hostile/_prelude.py");

/// Sandboxes running at once per runtime (the machine has two cores).
const CONCURRENCY: usize = 2;

const NOBODY: u32 = 65534;

/// The pids limit of cases about something else than pids: under runsc the host's pids limit
/// also counts gVisor's own threads, and the sandbox dies when it is reached (see
/// `busy_processes`, which runs under the operator default, and the fork bombs).
const PIDS_ROOMY: u32 = 256;

/// getaddrinfo errors that mean "no such name here".
const EAI_NONAME: i32 = -2;
const EAI_AGAIN: i32 = -3;
const EAI_FAIL: i32 = -4;
const EAI_NODATA: i32 = -5;

/// What a sandbox's environment must be, exactly (the `python` environment).
fn sandbox_env() -> Value {
    json!({
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

type Check = fn(&RunResult, &Ctx) -> Result<(), String>;

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    code: &'static str,
    args: &'static [&'static str],
    limits: fn(&mut Limits),
    fixture: Fixture,
    check: Check,
    /// A second run of the same program once the first passed (arguments, check): for what
    /// one run might leave to the next.
    then: Option<(&'static [&'static str], Check)>,
}

/// Something on the host side that a case attacks; its address goes to the program as its last
/// argument, and the runner verifies afterwards that the attack did not reach it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fixture {
    None,
    /// A `sleep` running as uid 65534 on the host (its PID is passed): it must survive.
    NobodyCanary,
    /// A TCP listener on the host's 127.0.0.1 (its port is passed): it must accept nothing.
    HostTcp,
    /// A listener in the host's abstract unix namespace (its name is passed): it must accept
    /// nothing.
    HostAbstract,
}

/// What a check may know besides the result.
struct Ctx {
    runtime: RuntimeKind,
    limits: Limits,
}

macro_rules! case {
    ($name:literal, $limits:expr, $check:expr) => {
        Case {
            name: $name,
            code: include_str!(concat!("hostile/", $name, ".py")),
            args: &[],
            limits: $limits,
            fixture: Fixture::None,
            check: $check,
            then: None,
        }
    };
}

fn keep(_: &mut Limits) {}

fn cases() -> Vec<Case> {
    vec![
        // --- Host secrets and what one run leaves to the next --------------------------------
        case!("etc_secrets", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq(
                "/listing",
                json!([
                    "group",
                    "hostname",
                    "hosts",
                    "nsswitch.conf",
                    "passwd",
                    "resolv.conf"
                ]),
            );
            e.eq("/users", json!(["nobody", "root"]));
            for k in [
                "/shadow",
                "/gshadow",
                "/sudoers",
                "/ssh_host_key",
                "/machine_id",
            ] {
                e.errno(k, &[ENOENT]);
            }
            e.errno("/write_shadow", &[EROFS, EACCES]);
            e.errno("/write_passwd", &[EROFS, EACCES]);
            e.done()
        }),
        case!("host_dirs", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let gvisor = ctx.runtime == RuntimeKind::Runsc;
            // gVisor mounts a sysfs of its own (synthetic, not the host's) at /sys.
            e.eq("/root", json!(expected_root_listing(gvisor)));
            if gvisor {
                e.errno("/sys", &[0]);
            } else {
                e.errno("/sys", &[ENOENT]);
            }
            for k in [
                "/root_home",
                "/home",
                "/var",
                "/run",
                "/boot",
                "/opt",
                "/mnt",
                "/srv",
                "/work",
                "/docker_sock",
                "/dotdot",
            ] {
                e.errno(k, &[ENOENT]);
            }
            // /proc/1/root is the sandbox's own root (gVisor refuses the lookup outright).
            e.errno("/via_proc_root", &[ENOENT, EACCES]);
            e.eq("/usr_lib_present", json!(true));
            e.done()
        }),
        case!("pid_namespace", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let pid = v["pid"].as_i64().unwrap_or(-1).to_string();
            e.eq("/ppid", json!(1));
            let procs = v["procs"].as_object().cloned().unwrap_or_default();
            let seen: BTreeSet<&str> = procs.keys().map(String::as_str).collect();
            let want: BTreeSet<&str> = ["1", pid.as_str()].into();
            if seen != want {
                e.fail(format!(
                    "processes visible: {seen:?}, expected only init and self {want:?}"
                ));
            }
            // The environment's command (python3 -c PRELUDE), then the program.
            let mut program = assay_sandbox::Environment::python().command;
            program.push("/code/main.py".into());
            let mut init = vec!["/.assay/init".to_string(), "--".into()];
            init.extend(program.iter().cloned());
            e.eq("/procs/1", json!(init));
            e.eq(&format!("/procs/{pid}"), json!(program));
            // The init's environ is the sandbox's own (never the host PID 1's), or unreadable.
            match &v["init_environ"] {
                Value::Number(_) => e.errno("/init_environ", &[EACCES, EPERM]),
                _ => e.eq("/init_environ", json!(sorted_keys(&sandbox_env()))),
            };
            e.done()
        }),
        Case {
            args: &["write"],
            then: Some((&["check"], |r, _| {
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.eq("/tmp", json!([]));
                e.eq("/shm_dir", json!([]));
                e.errno("/sysv", &[ENOENT]);
                e.done()
            })),
            ..case!("persistence", keep, |r, _| {
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.errno("/shm_errno", &[0]);
                e.eq("/tmp", json!(["assay-dir", "assay-persist"]));
                e.eq("/shm_dir", json!(["assay-persist"]));
                e.done()
            })
        },
        case!("inherited_fds", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq("/self_fds", json!(["0", "1", "2"]));
            // stdin is /dev/null or a pipe of the runtime's; gVisor shows its host fds as "host".
            let kinds: Vec<String> =
                serde_json::from_value(v["stdio_kinds"].clone()).unwrap_or_default();
            let ok = kinds.len() == 3
                && ["/dev/null", "pipe", "host"].contains(&kinds[0].as_str())
                && kinds[1..].iter().all(|k| k == "pipe" || k == "host");
            if !ok {
                e.fail(format!("stdio is {kinds:?}, expected /dev/null or pipes"));
            }
            match &v["init_fds"] {
                Value::Number(_) => e.errno("/init_fds", &[EACCES, EPERM]),
                _ => e.eq("/init_fds", json!(["0", "1", "2"])),
            };
            e.eq("/cwd", json!("/code"));
            e.eq("/root", json!("/"));
            match &v["init_cwd"] {
                Value::Number(_) => e.errno("/init_cwd", &[EACCES, EPERM]),
                _ => e.eq("/init_cwd", json!("/code")),
            };
            e.done()
        }),
        case!("environment", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq("/env", sandbox_env());
            e.eq("/init_env", sandbox_env());
            e.done()
        }),
        // --- Network -------------------------------------------------------------------------
        case!("net_tcp_egress", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/public", "/private", "/metadata", "/dns_over_tcp"] {
                e.errno(k, &[ENETUNREACH, EHOSTUNREACH]);
            }
            e.errno("/ipv6_public", &[ENETUNREACH, EHOSTUNREACH, EAFNOSUPPORT]);
            e.done()
        }),
        case!("net_udp_egress", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/public", "/private", "/broadcast", "/multicast"] {
                e.errno(k, &[ENETUNREACH, EHOSTUNREACH]);
            }
            e.done()
        }),
        case!("dns", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/example/gaierror", "/google/gaierror"] {
                e.errno(k, &[EAI_NONAME, EAI_AGAIN, EAI_FAIL, EAI_NODATA]);
            }
            e.eq("/localhost/ok", json!(["127.0.0.1"]));
            e.done()
        }),
        Case {
            fixture: Fixture::HostTcp,
            ..case!("host_loopback", keep, |r, _| {
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.errno("/connect", &[ECONNREFUSED]);
                e.done()
            })
        },
        Case {
            fixture: Fixture::HostAbstract,
            ..case!("host_abstract_socket", keep, |r, _| {
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.errno("/connect", &[ECONNREFUSED]);
                e.done()
            })
        },
        case!("net_interfaces", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq("/proc_net_dev", json!(["lo"]));
            e.eq("/ipv4_routes", json!(0));
            e.eq("/ifconf", json!(["lo"]));
            match &v["if_nameindex"] {
                // if_nameindex asks netlink, which seccomp refuses.
                Value::Number(_) => e.errno("/if_nameindex", &[EPERM]),
                _ => e.eq("/if_nameindex", json!(["lo"])),
            };
            e.done()
        }),
        case!("raw_sockets", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.errno("/packet_raw", &[EPERM]);
            e.errno("/packet_dgram", &[EPERM]);
            for k in [
                "/inet_raw_icmp",
                "/inet_raw_tcp",
                "/inet_raw_raw",
                "/inet6_raw",
            ] {
                e.errno(k, &[EPERM]);
            }
            if v.pointer("/ping/create").is_some() {
                e.errno("/ping/create", &[EACCES, EPERM]);
            } else {
                e.errno("/ping/send", &[ENETUNREACH, EHOSTUNREACH]);
            }
            e.done()
        }),
        case!("vsock", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/stream", "/dgram", "/seqpacket"] {
                e.errno(k, &[EPERM]);
            }
            e.errno("/dev_vsock", &[ENOENT]);
            e.done()
        }),
        case!("netlink", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.all_errno("", &[EPERM]);
            e.done()
        }),
        case!("socket_families", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.all_errno("/families", &[EPERM]);
            e.errno("/unix_allowed", &[0]);
            e.done()
        }),
        case!("socketpair_families", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            // family -> the socket types whose socketpair() was not refused by seccomp.
            let mut reached: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (k, got) in v["families"].as_object().cloned().unwrap_or_default() {
                let (family, typ) = k.split_once('/').unwrap_or((&k, "?"));
                let n = got.as_i64().unwrap_or(i64::MIN);
                let allowed: &[i32] = if family == "inet" {
                    // AF_INET sockets may be created anyway; the kernel makes no INET pairs.
                    &[EPERM, EOPNOTSUPP, ESOCKTNOSUPPORT]
                } else if ctx.runtime == RuntimeKind::Runsc {
                    // Under gVisor the call reaches the sentry's socket code, not the host's.
                    &[EPERM, EAFNOSUPPORT, ESOCKTNOSUPPORT, EOPNOTSUPP]
                } else {
                    // Anything but EPERM: the family's socket code ran in the host kernel, or
                    // the kernel looked for it (and would load its module where it can).
                    &[EPERM]
                };
                if !allowed.iter().any(|&a| i64::from(a) == n) {
                    reached
                        .entry(family.to_string())
                        .or_default()
                        .push(format!("{typ} {}", show(&got)));
                }
            }
            if !reached.is_empty() {
                let list: Vec<String> = reached
                    .iter()
                    .map(|(f, t)| format!("{f} [{}]", t.join(", ")))
                    .collect();
                e.fail(format!(
                    "socketpair() was not refused (EPERM) for: {}",
                    list.join("; ")
                ));
            }
            e.errno("/unix_allowed", &[0]);
            e.done()
        }),
        // --- File systems --------------------------------------------------------------------
        case!("rootfs_write", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.all_errno("/create", &[EROFS, EACCES]);
            e.errno("/proc_create", &[ENOENT, EACCES, EROFS]);
            e.all_errno("/overwrite", &[EROFS, EACCES]);
            e.all_errno("/exe", &[EROFS, EACCES, ETXTBSY]);
            for k in ["/mkdir", "/mkdir_usr", "/symlink", "/unlink", "/rename"] {
                e.errno(k, &[EROFS, EACCES]);
            }
            for k in ["/chmod", "/chmod_init", "/utime"] {
                e.errno(k, &[EROFS, EPERM, EACCES]);
            }
            e.done()
        }),
        case!("proc_writes", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for (k, path) in [
                ("/sysrq_trigger", "/proc/sysrq-trigger"),
                ("/hostname", "/proc/sys/kernel/hostname"),
                ("/core_pattern", "/proc/sys/kernel/core_pattern"),
                ("/modprobe", "/proc/sys/kernel/modprobe"),
                ("/drop_caches", "/proc/sys/vm/drop_caches"),
                ("/ip_forward", "/proc/sys/net/ipv4/ip_forward"),
            ] {
                // A knob the host's kernel does not have (no sysrq, no modules) is absent here too.
                if Path::new(path).exists() {
                    e.errno(k, &[EROFS, EACCES]);
                } else {
                    e.errno(k, &[ENOENT, EROFS, EACCES]);
                }
            }
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor's /proc/self/oom_score_adj is a value kept in the sentry's task: writing
                // it changes nothing on the host, whose OOM killer sees the sandbox's processes.
                e.errno("/oom_score_adj", &[0, EACCES, EPERM]);
            } else {
                e.errno("/oom_score_adj", &[EACCES, EPERM]);
                e.eq("/oom_score_adj_value", json!("1000"));
            }
            e.done()
        }),
        case!("sys_writes", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let keys = [
                "/cgroup_procs",
                "/pids_max",
                "/memory_limit",
                "/release_agent",
                "/uevent_helper",
                "/power_state",
                "/mkdir_cgroup",
            ];
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor's own synthetic sysfs (with an empty /sys/fs/cgroup): not writable.
                for k in keys {
                    e.errno(k, &[ENOENT, EACCES, EROFS]);
                }
                e.errno("/mkdir_sys", &[EEXIST]);
            } else {
                for k in keys {
                    e.errno(k, &[ENOENT]);
                }
                e.errno("/mkdir_sys", &[EROFS, EACCES]);
            }
            e.done()
        }),
        case!("proc_masked", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for (k, probe) in v.as_object().cloned().unwrap_or_default() {
                let ok = match (&probe["errno"], &probe["bytes"], &probe["entries"]) {
                    (Value::Number(n), _, _) => [ENOENT, EACCES, EPERM]
                        .iter()
                        .any(|&x| n.as_i64() == Some(x as i64)),
                    (_, Value::Number(n), _) | (_, _, Value::Number(n)) => n.as_i64() == Some(0),
                    _ => false,
                };
                if !ok {
                    e.fail(format!(
                        "/proc/{k}: {probe} (expected empty, or ENOENT/EACCES/EPERM)"
                    ));
                }
            }
            e.done()
        }),
        case!("nosuid_mounts", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor shows (and keeps) only ro/rw per mount; nosuid and nodev do not appear
                // in its mountinfo or statvfs. What they protect against is asserted directly by
                // setuid_exec (no privilege from a setuid binary) and mknod (no device nodes).
                for p in ["/", "/usr", "/code", "/etc", "/.assay"] {
                    e.eq(&ptr(&["mountinfo", p]), json!(["ro"]));
                }
                for p in ["/tmp", "/dev/shm"] {
                    e.eq(&ptr(&["mountinfo", p]), json!(["rw"]));
                }
                return e.done();
            }
            for p in ["/usr", "/code", "/etc", "/.assay"] {
                e.eq(
                    &ptr(&["statvfs", p]),
                    json!({"ro": true, "nosuid": true, "nodev": true}),
                );
                e.eq(&ptr(&["mountinfo", p]), json!(["nodev", "nosuid", "ro"]));
            }
            for p in ["/tmp", "/dev/shm"] {
                e.eq(
                    &ptr(&["statvfs", p]),
                    json!({"ro": false, "nosuid": true, "nodev": true}),
                );
                e.eq(&ptr(&["mountinfo", p]), json!(["nodev", "nosuid", "rw"]));
            }
            e.eq(&ptr(&["statvfs", "/", "ro"]), json!(true));
            e.eq(
                &ptr(&["statvfs", "/proc"]),
                json!({"ro": false, "nosuid": true, "nodev": true}),
            );
            e.done()
        }),
        case!("mknod", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/block_sda", "/char_mem", "/char_kmsg_shm", "/mknodat"] {
                e.errno(k, &[EPERM]);
            }
            e.eq("/created", json!([]));
            e.done()
        }),
        case!("dev_nodes", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let mut allowed: BTreeSet<&str> = [
                "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
                "stdin", "stdout", "tty", "urandom", "zero",
            ]
            .into();
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor's own /dev/fuse and /dev/net/tun (devices of the sentry, not the
                // host's): they open, but a TUN interface needs CAP_NET_ADMIN and a FUSE mount
                // needs mount(2), refused (see the mount case).
                allowed.extend(["fuse", "net"]);
                for (k, _) in v["open"].as_object().cloned().unwrap_or_default() {
                    let allowed: &[i32] = if k == "/dev/fuse" || k == "/dev/net/tun" {
                        &[0, ENOENT]
                    } else {
                        &[ENOENT]
                    };
                    e.errno(&ptr(&["open", &k]), allowed);
                }
                e.errno("/tun_setiff", &[EPERM]);
            } else {
                e.all_errno("/open", &[ENOENT]);
                e.errno("/tun_setiff", &[ENOENT]);
            }
            e.errno("/null_ok", &[0]);
            e.errno("/urandom_ok", &[0]);
            for d in v["listing"].as_array().cloned().unwrap_or_default() {
                let d = d.as_str().unwrap_or("?");
                if !allowed.contains(d) {
                    e.fail(format!("unexpected /dev/{d} (allowed: {allowed:?})"));
                }
            }
            e.done()
        }),
        // --- Privilege -----------------------------------------------------------------------
        case!("identity", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq("/resuid", json!([NOBODY, NOBODY, NOBODY]));
            e.eq("/resgid", json!([NOBODY, NOBODY, NOBODY]));
            e.eq("/groups", json!([]));
            e.eq("/status_uid", json!([NOBODY, NOBODY, NOBODY, NOBODY]));
            e.eq("/status_gid", json!([NOBODY, NOBODY, NOBODY, NOBODY]));
            e.eq("/user", json!("nobody"));
            e.done()
        }),
        case!("capabilities", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let zero = if ctx.runtime == RuntimeKind::Runsc {
                // gVisor's /proc/<pid>/status has no CapAmb line.
                json!({"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0})
            } else {
                json!({"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0})
            };
            e.eq("/self", zero.clone());
            e.eq("/init", zero);
            e.eq("/bounding_set", json!([]));
            e.done()
        }),
        case!("nnp_seccomp", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor's status has no NoNewPrivs line; prctl below reports the flag.
                e.eq("/status_nnp", Value::Null);
            } else {
                e.eq("/status_nnp", json!("1"));
            }
            e.eq("/status_seccomp", json!("2"));
            e.eq("/prctl_nnp", json!(1));
            e.eq("/prctl_seccomp", json!(2));
            e.errno("/clear_nnp", &[EINVAL, EPERM]);
            e.done()
        }),
        case!("setuid", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in [
                "/setuid",
                "/seteuid",
                "/setresuid",
                "/setgid",
                "/setgroups",
                "/capset",
            ] {
                e.errno(k, &[EPERM]);
            }
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor does not implement PR_CAP_AMBIENT.
                e.errno("/ambient_raise", &[EPERM, EINVAL]);
            } else {
                e.errno("/ambient_raise", &[EPERM]);
            }
            e.eq("/uid_after", json!([NOBODY, NOBODY, NOBODY]));
            e.done()
        }),
        case!("setuid_exec", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq("/suid_bit", json!(true));
            e.eq("/uids", json!([NOBODY, NOBODY, NOBODY, NOBODY]));
            e.done()
        }),
        case!("hostname", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/gethostname", "/nodename", "/proc", "/etc", "/after"] {
                e.eq(k, json!("sandbox"));
            }
            e.errno("/sethostname", &[EPERM]);
            e.errno("/setdomainname", &[EPERM]);
            e.done()
        }),
        case!("priority", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.errno("/sched_fifo", &[EPERM]);
            e.errno("/sched_rr", &[EPERM]);
            if ctx.runtime == RuntimeKind::Runsc {
                // gVisor lets a task lower its nice value, but keeps it in the sentry: the host
                // schedules the sandbox's threads as before (and the cgroup's CPU limits hold).
                e.errno("/nice_raise", &[0, EACCES, EPERM]);
            } else {
                e.errno("/nice_raise", &[EACCES, EPERM]);
                e.eq("/nice_after", json!(0));
            }
            e.eq("/scheduler_after", json!(0));
            e.done()
        }),
        case!("rlimits", keep, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let l = &ctx.limits;
            let cpu = l.cpu_time_ms.div_ceil(1000) + 1;
            e.eq(
                "/current/RLIMIT_NOFILE",
                json!([l.open_files, l.open_files]),
            );
            e.eq(
                "/current/RLIMIT_FSIZE",
                json!([l.file_size_bytes, l.file_size_bytes]),
            );
            e.eq("/current/RLIMIT_CORE", json!([0, 0]));
            e.eq("/current/RLIMIT_CPU", json!([cpu, cpu + 1]));
            for k in [
                "/raise_nofile",
                "/raise_fsize",
                "/raise_cpu",
                "/raise_core",
                "/prlimit_init",
            ] {
                e.errno(k, &[EPERM]);
            }
            e.done()
        }),
        // --- Syscalls the seccomp policy refuses ---------------------------------------------
        case!("mount", keep, all_eperm),
        case!("unshare", keep, all_eperm),
        case!("clone_ns", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            for k in ["/newns", "/newuser", "/newpid", "/newnet", "/newuser_newns"] {
                e.errno(k, &[EPERM]);
            }
            e.errno("/clone3", &[ENOSYS]);
            e.eq("/fork_exit_code", json!(7));
            e.done()
        }),
        case!("ptrace", keep, all_eperm),
        case!("process_vm", keep, all_eperm),
        case!("keyctl", keep, all_eperm),
        case!("io_uring", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.all_errno("", &[EPERM, ENOSYS]);
            e.done()
        }),
        case!("bpf", keep, all_eperm),
        case!("perf_event", keep, all_eperm),
        case!("userfaultfd", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.errno("/syscall", &[EPERM]);
            e.errno("/user_mode_only", &[EPERM]);
            e.errno("/dev", &[ENOENT]);
            e.done()
        }),
        case!("chroot", keep, all_eperm),
        case!("kernel_syscalls", keep, all_eperm),
        // --- Resources -----------------------------------------------------------------------
        case!(
            "fork_bomb",
            |l| {
                l.pids = 32;
                l.wall_time_ms = 5_000;
            },
            |r, ctx| {
                if ctx.runtime == RuntimeKind::Runsc {
                    return gvisor_bomb_contained(r);
                }
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.errno("/errno", &[EAGAIN]);
                // The init and this program count too.
                let forked = v["forked"].as_u64().unwrap_or(u64::MAX);
                if forked > u64::from(ctx.limits.pids) - 2 {
                    e.fail(format!(
                        "forked {forked} processes with pids = {}",
                        ctx.limits.pids
                    ));
                }
                e.done()
            }
        ),
        case!(
            "fork_bomb_exponential",
            |l| {
                l.pids = 32;
                l.wall_time_ms = 4_000;
                l.cpu_time_ms = 60_000;
            },
            |r, ctx| {
                if ctx.runtime == RuntimeKind::Runsc {
                    return gvisor_bomb_contained(r);
                }
                expect_status(r, RunStatus::TimedOut)?;
                let wall = ctx.limits.wall_time_ms;
                if r.wall_ms < wall || r.wall_ms > wall + 3_000 {
                    return Err(format!(
                        "wall {} ms, expected just past the {wall} ms limit",
                        r.wall_ms
                    ));
                }
                let v = parse_report(r)?;
                let mut e = Expect::new(&v);
                e.eq("/errnos", json!([EAGAIN]));
                e.done()
            }
        ),
        case!(
            "memory_bomb",
            |l| {
                l.memory_bytes = 64 << 20;
                l.wall_time_ms = 10_000;
            },
            |r, ctx| {
                expect_status(r, RunStatus::MemoryExceeded)?;
                if r.peak_memory_bytes > ctx.limits.memory_bytes {
                    return Err(format!(
                        "peak memory {} above the limit",
                        r.peak_memory_bytes
                    ));
                }
                Ok(())
            }
        ),
        case!(
            "throttled_kill",
            |l| {
                // A quarter of a core: gVisor needs 1-3 s of wall time to start at this rate
                // (machine-dependent; at a tenth of a core a slow host never reached the
                // program within the limit).
                l.cpu_millicores = 250;
                l.wall_time_ms = 5_000;
            },
            // What matters most is the leftovers check that every run gets.
            |r, _| {
                expect_status(r, RunStatus::TimedOut)?;
                let v = parse_report(r)?;
                let mut e = Expect::new(&v);
                e.eq("/started", json!(true));
                e.done()
            }
        ),
        case!(
            "tmpfs_memory",
            |l| {
                l.memory_bytes = 64 << 20;
                l.tmpfs_bytes = 512 << 20;
                l.file_size_bytes = 1 << 30;
            },
            |r, ctx| {
                if r.status == RunStatus::MemoryExceeded {
                    return Ok(());
                }
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.errno("/errno", &[ENOSPC, libc::ENOMEM]);
                e.at_most("/written", ctx.limits.memory_bytes);
                e.done()
            }
        ),
        case!("inode_flood", |l| l.memory_bytes = 64 << 20, |r, ctx| {
            if r.status == RunStatus::MemoryExceeded {
                return Ok(());
            }
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.errno("/errno", &[ENOSPC, libc::ENOMEM]);
            // An inode costs the kernel far more than 64 bytes.
            e.at_most("/files", ctx.limits.memory_bytes / 64);
            e.done()
        }),
        case!(
            "cpu_burner",
            |l| {
                l.cpu_time_ms = 1_000;
                l.wall_time_ms = 10_000;
            },
            |r, ctx| {
                expect_status(r, RunStatus::TimedOut)?;
                let cpu = ctx.limits.cpu_time_ms;
                if r.cpu_ms < cpu || r.cpu_ms > cpu + 1_000 {
                    return Err(format!(
                        "cpu {} ms, expected just past the {cpu} ms CPU limit",
                        r.cpu_ms
                    ));
                }
                // Ended by the CPU limit, before the wall-time limit (with some margin: the
                // other runtimes' suites share the two cores).
                if r.wall_ms >= ctx.limits.wall_time_ms - 2_000 {
                    return Err(format!(
                        "wall {} ms: the CPU limit did not end the run",
                        r.wall_ms
                    ));
                }
                Ok(())
            }
        ),
        case!(
            "cpu_bandwidth",
            |l| {
                l.cpu_millicores = 500;
                l.cpu_time_ms = 60_000;
                l.wall_time_ms = 3_000;
            },
            |r, ctx| {
                expect_status(r, RunStatus::TimedOut)?;
                let max = r.wall_ms * u64::from(ctx.limits.cpu_millicores) / 1000 + 300;
                if r.cpu_ms > max {
                    return Err(format!(
                        "cpu {} ms in {} ms wall at {} millicores (at most {max} ms expected)",
                        r.cpu_ms, r.wall_ms, ctx.limits.cpu_millicores
                    ));
                }
                Ok(())
            }
        ),
        case!("tmp_fill", tmpfs_8m, check_fill),
        case!("shm_fill", tmpfs_8m, check_fill),
        case!("file_size", |l| l.file_size_bytes = 1 << 20, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.errno("/errno", &[EFBIG]);
            e.eq("/written", json!(ctx.limits.file_size_bytes));
            e.errno("/truncate", &[EFBIG]);
            e.errno("/pwrite_beyond", &[EFBIG]);
            e.done()
        }),
        case!("open_files", |l| l.open_files = 64, |r, ctx| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.errno("/errno", &[EMFILE]);
            e.eq("/highest_fd", json!(ctx.limits.open_files - 1));
            e.done()
        }),
        case!("output_flood", |l| l.output_bytes = 64 << 10, |r, ctx| {
            expect_status(r, RunStatus::OutputExceeded)?;
            let mut e = Expect::new(&Value::Null);
            if !r.stdout_truncated || r.stderr_truncated {
                e.fail(format!(
                    "stdout_truncated {} stderr_truncated {}, expected true, false",
                    r.stdout_truncated, r.stderr_truncated
                ));
            }
            if r.stdout.len() as u64 != ctx.limits.output_bytes {
                e.fail(format!(
                    "kept {} bytes of stdout, limit {}",
                    r.stdout.len(),
                    ctx.limits.output_bytes
                ));
            }
            if r.stdout.bytes().any(|b| b != b'A') {
                e.fail("stdout holds something else than the program's output".into());
            }
            e.done()
        }),
        case!("stderr_flood", |l| l.output_bytes = 64 << 10, |r, ctx| {
            expect_status(r, RunStatus::OutputExceeded)?;
            let mut e = Expect::new(&Value::Null);
            if r.stdout_truncated || !r.stderr_truncated {
                e.fail(format!(
                    "stdout_truncated {} stderr_truncated {}, expected false, true",
                    r.stdout_truncated, r.stderr_truncated
                ));
            }
            if r.stderr.len() as u64 != ctx.limits.output_bytes {
                e.fail(format!(
                    "kept {} bytes of stderr, limit {}",
                    r.stderr.len(),
                    ctx.limits.output_bytes
                ));
            }
            if !r.stdout.is_empty() {
                e.fail(format!("stdout not empty: {} bytes", r.stdout.len()));
            }
            e.done()
        }),
        // --- Processes that try to outlive the run or reach the host's -----------------------
        case!("orphans", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            let marker = v["marker"].as_str().unwrap_or("").to_string();
            if !marker.starts_with("assay-orphan-") {
                return Err(format!("no marker in {v}"));
            }
            let argv: Vec<String> =
                serde_json::from_value(v["orphan_cmdline"].clone()).unwrap_or_default();
            if argv.last() != Some(&marker) {
                e.fail(format!(
                    "the orphan was not running before the program exited: {argv:?}"
                ));
            }
            // The orphan sleeps forever and holds stdout: the run must not wait for it.
            if r.wall_ms > 3_000 {
                e.fail(format!(
                    "the run took {} ms: it waited for the orphan",
                    r.wall_ms
                ));
            }
            let survivors: Vec<String> = host_processes()
                .into_iter()
                .filter(|p| p.cmdline.contains(&marker))
                .map(|p| p.to_string())
                .collect();
            if !survivors.is_empty() {
                e.fail(format!(
                    "the orphan survived the run on the host: {}",
                    survivors.join("; ")
                ));
            }
            e.done()
        }),
        Case {
            fixture: Fixture::NobodyCanary,
            ..case!("kill_all", keep, |r, _| {
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.errno("/direct", &[ESRCH]);
                e.errno("/kill_all", &[0]);
                e.eq("/child_killed_by", json!(9));
                e.done()
            })
        },
        // --- Controls: the containment leaves benign programs working --------------------------
        case!("threads", keep, |r, _| {
            let v = report(r)?;
            let mut e = Expect::new(&v);
            e.eq("/ran", json!([0, 1, 2, 3]));
            e.eq("/errors", json!([]));
            e.done()
        }),
        case!(
            "busy_processes",
            |l| l.pids = LimitPolicy::default().defaults.pids,
            |r, _| {
                let v = report(r)?;
                let mut e = Expect::new(&v);
                e.eq("/children_exit_codes", json!([0, 0, 0]));
                e.done()
            }
        ),
    ]
}

fn tmpfs_8m(l: &mut Limits) {
    l.tmpfs_bytes = 8 << 20;
    l.file_size_bytes = 64 << 20;
}

fn check_fill(r: &RunResult, ctx: &Ctx) -> Result<(), String> {
    let v = report(r)?;
    let mut e = Expect::new(&v);
    e.errno("/errno", &[ENOSPC]);
    e.at_most("/written", ctx.limits.tmpfs_bytes);
    e.at_least("/written", ctx.limits.tmpfs_bytes - (1 << 20));
    e.done()
}

/// Every value the program reported is an errno, and it is EPERM.
fn all_eperm(r: &RunResult, _: &Ctx) -> Result<(), String> {
    let v = report(r)?;
    let mut e = Expect::new(&v);
    e.all_errno("", &[EPERM]);
    e.done()
}

/// What `/` of the `python` environment holds: the sandbox's mount points plus the host's
/// `usr`, `bin`, `lib`, `lib64`, `sbin` that exist (and gVisor's own `/sys`).
fn expected_root_listing(with_sys: bool) -> Vec<String> {
    let mut v: Vec<String> = [".assay", "code", "dev", "etc", "proc", "tmp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if with_sys {
        v.push("sys".into());
    }
    for name in ["usr", "bin", "lib", "lib64", "sbin"] {
        if std::fs::symlink_metadata(Path::new("/").join(name)).is_ok() {
            v.push(name.into());
        }
    }
    v.sort();
    v
}

fn sorted_keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Checking helpers
// ---------------------------------------------------------------------------------------------

/// Under gVisor, fork never fails inside the sandbox (its kernel has no pids limit); the bomb is
/// contained by the host cgroup's pids limit on the whole sandbox, which ends the run. What must
/// hold: the run ended in a non-success status of the program, within its wall limit (the
/// harness then checks that nothing of it is left on the host).
fn gvisor_bomb_contained(r: &RunResult) -> Result<(), String> {
    match r.status {
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::MemoryExceeded => Ok(()),
        other => Err(format!(
            "status {other:?} (exit {:?}, error {:?}): a fork bomb under gVisor must end the run",
            r.exit_code, r.error
        )),
    }
}

fn expect_status(r: &RunResult, want: RunStatus) -> Result<(), String> {
    if r.status == want {
        Ok(())
    } else {
        Err(format!(
            "status {:?} (exit {:?}, signal {:?}, error {:?}, wall {} ms, cpu {} ms), expected {want:?}",
            r.status, r.exit_code, r.signal, r.error, r.wall_ms, r.cpu_ms
        ))
    }
}

/// The program's report, from a run that must have succeeded.
fn report(r: &RunResult) -> Result<Value, String> {
    expect_status(r, RunStatus::Succeeded)?;
    parse_report(r)
}

/// The program's one JSON line on stdout, whatever the status.
fn parse_report(r: &RunResult) -> Result<Value, String> {
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.as_slice() {
        [line] => serde_json::from_str(line).map_err(|e| format!("stdout is not JSON ({e})")),
        _ => Err(format!(
            "expected exactly one JSON line on stdout, got {} lines",
            lines.len()
        )),
    }
}

/// A JSON pointer as the reader wants to see it: `/families/netlink/1`, not `.../netlink~11`.
fn shown(key: &str) -> String {
    if key.is_empty() {
        "(report)".into()
    } else {
        key.replace("~1", "/").replace("~0", "~")
    }
}

/// A JSON pointer from plain path parts (escaping `/` and `~`).
fn ptr(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn errno_name(n: i64) -> &'static str {
    const NAMES: &[(i32, &str)] = &[
        (0, "success"),
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::EMFILE, "EMFILE"),
        (libc::ETXTBSY, "ETXTBSY"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTSUP, "EOPNOTSUPP"),
        (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
        (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::EHOSTUNREACH, "EHOSTUNREACH"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (EAI_NONAME, "EAI_NONAME"),
        (EAI_AGAIN, "EAI_AGAIN"),
        (EAI_FAIL, "EAI_FAIL"),
        (EAI_NODATA, "EAI_NODATA"),
    ];
    NAMES
        .iter()
        .find(|(e, _)| i64::from(*e) == n)
        .map(|(_, s)| *s)
        .unwrap_or("?")
}

fn show(v: &Value) -> String {
    match v.as_i64() {
        Some(n) => format!("{n} ({})", errno_name(n)),
        None => v.to_string(),
    }
}

/// Collects every mismatch of one report, so that a failing case says all that is wrong.
struct Expect<'a> {
    v: &'a Value,
    errors: Vec<String>,
}

impl<'a> Expect<'a> {
    fn new(v: &'a Value) -> Self {
        Expect {
            v,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, msg: String) {
        self.errors.push(msg);
    }

    fn get(&mut self, key: &str) -> Option<&'a Value> {
        let got = self.v.pointer(key);
        if got.is_none() {
            self.errors
                .push(format!("{}: missing from the report", shown(key)));
        }
        got
    }

    fn eq(&mut self, key: &str, want: Value) {
        if let Some(got) = self.get(key)
            && *got != want
        {
            self.errors
                .push(format!("{}: got {got}, expected {want}", shown(key)));
        }
    }

    /// The value at `key` is an errno in `allowed` (0 = the call succeeded).
    fn errno(&mut self, key: &str, allowed: &[i32]) {
        if let Some(got) = self.get(key)
            && !got
                .as_i64()
                .is_some_and(|n| allowed.iter().any(|&a| i64::from(a) == n))
        {
            let names: Vec<String> = allowed
                .iter()
                .map(|&a| format!("{a} ({})", errno_name(a.into())))
                .collect();
            self.errors.push(format!(
                "{}: got {}, expected one of [{}]",
                shown(key),
                show(got),
                names.join(", ")
            ));
        }
    }

    /// Every value of the object at `key` (`""`: the whole report) is an errno in `allowed`.
    fn all_errno(&mut self, key: &str, allowed: &[i32]) {
        let Some(obj) = self.get(key).and_then(Value::as_object) else {
            self.errors.push(format!("{}: not an object", shown(key)));
            return;
        };
        if obj.is_empty() {
            self.errors.push(format!("{}: empty", shown(key)));
        }
        for k in obj.keys() {
            self.errno(&format!("{key}{}", ptr(&[k])), allowed);
        }
    }

    fn at_most(&mut self, key: &str, max: u64) {
        if let Some(got) = self.get(key)
            && got.as_u64().is_none_or(|n| n > max)
        {
            self.errors
                .push(format!("{}: got {got}, expected at most {max}", shown(key)));
        }
    }

    fn at_least(&mut self, key: &str, min: u64) {
        if let Some(got) = self.get(key)
            && got.as_u64().is_none_or(|n| n < min)
        {
            self.errors.push(format!(
                "{}: got {got}, expected at least {min}",
                shown(key)
            ));
        }
    }

    fn done(self) -> Result<(), String> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors.join("; "))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The host side: processes, cgroups, fixtures
// ---------------------------------------------------------------------------------------------

/// A process of the host, as /proc shows it.
struct HostProcess {
    pid: i32,
    ppid: i32,
    name: String,
    state: String,
    cmdline: String,
    cgroup: String,
}

impl std::fmt::Display for HostProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parent = read_host_process(self.ppid)
            .map(|p| p.cmdline)
            .unwrap_or_default();
        write!(
            f,
            "pid {} {:?} state {:?} argv {:?}, parent {} {:?}",
            self.pid,
            self.name,
            self.state,
            self.cmdline,
            self.ppid,
            excerpt(&parent, 60)
        )
    }
}

fn read_host_process(pid: i32) -> Option<HostProcess> {
    let dir = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    Some(HostProcess {
        pid,
        ppid: field("PPid").parse().unwrap_or(0),
        name: field("Name"),
        state: field("State"),
        cmdline: std::fs::read(dir.join("cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim_end()
                    .to_string()
            })
            .unwrap_or_default(),
        cgroup: std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default(),
    })
}

fn host_processes() -> Vec<HostProcess> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_host_process)
        .collect()
}

/// The start time (clock ticks after boot) of a process: with the PID, it names one process
/// even if the PID is reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the first, starttime
    // (field 22 of the whole line) the twentieth.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The processes below `pid` (children, grandchildren, ...), as (pid, start time).
fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                if let Some(st) = start_time(c) {
                    out.push((c, st));
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Nothing of a run may outlive `Engine::run`: no cgroup directory in any hierarchy, and no
/// live process that was below the runtime process while the program ran, is in the run's
/// cgroup, or is its runtime process.
///
/// Zombies are not failures: dead, without memory or files, they wait for their parent, often
/// the host's init after the runtime exited (gVisor's ptrace stubs after every run; the
/// container's init when the engine kills the runtime process before it reaped it). They are
/// returned, to be counted in the summary.
fn check_leftovers(
    engine: &Engine,
    sandbox_id: &str,
    runtime_pid: u32,
    tree: &[(u32, u64)],
) -> Result<Vec<String>, String> {
    let rel = engine.cgroup_root().join(sandbox_id);
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> = vec![root.join(&rel)];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(e.path().join(&rel));
            }
        }
    }
    let mut errors = Vec::new();
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    if !left.is_empty() {
        errors.push(format!("cgroups left behind: {left:?}"));
    }
    // The runtime's process tree seen while the program ran (this finds a zombie that was
    // re-parented away, whatever cgroup it was in), then whatever is in the run's cgroup: a
    // process that has exited keeps its (deleted) cgroup path on the cgroup2 hierarchy.
    let mut pids: BTreeSet<i32> = tree
        .iter()
        .filter(|&&(pid, st)| start_time(pid) == Some(st))
        .filter_map(|&(pid, _)| i32::try_from(pid).ok())
        .collect();
    pids.extend(
        host_processes()
            .into_iter()
            .filter(|p| {
                p.cgroup.contains(sandbox_id)
                    || (u32::try_from(p.pid) == Ok(runtime_pid) && p.cmdline.contains(sandbox_id))
            })
            .map(|p| p.pid),
    );
    let (zombies, live): (Vec<HostProcess>, Vec<HostProcess>) = pids
        .into_iter()
        .filter_map(read_host_process)
        .partition(|p| p.state.starts_with('Z') || p.state.starts_with('X'));
    if !live.is_empty() {
        let live: Vec<String> = live.iter().map(|p| p.to_string()).collect();
        errors.push(format!(
            "processes of the run alive after Engine::run returned: {}",
            live.join("; ")
        ));
    }
    if errors.is_empty() {
        Ok(zombies.iter().map(|p| p.to_string()).collect())
    } else {
        Err(errors.join("; "))
    }
}

enum Live {
    None,
    Canary(tokio::process::Child),
    Tcp(std::net::TcpListener),
    Abstract(std::os::unix::net::UnixListener),
}

impl Live {
    /// Sets the fixture up; returns it and the argument that tells the program where it is.
    fn start(f: Fixture, tag: &str) -> Result<(Live, Option<String>), String> {
        match f {
            Fixture::None => Ok((Live::None, None)),
            Fixture::NobodyCanary => {
                let child = tokio::process::Command::new("sleep")
                    .arg("300")
                    .uid(NOBODY)
                    .gid(NOBODY)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("starting the host canary: {e}"))?;
                let pid = child.id().ok_or("the host canary has no pid")?;
                Ok((Live::Canary(child), Some(pid.to_string())))
            }
            Fixture::HostTcp => {
                let l = std::net::TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| format!("host listener: {e}"))?;
                let port = l.local_addr().map_err(|e| e.to_string())?.port();
                Ok((Live::Tcp(l), Some(port.to_string())))
            }
            Fixture::HostAbstract => {
                use std::os::linux::net::SocketAddrExt;
                let name = format!("assay-hostile-{tag}-{}", std::process::id());
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .map_err(|e| e.to_string())?;
                let l = std::os::unix::net::UnixListener::bind_addr(&addr)
                    .map_err(|e| format!("host listener: {e}"))?;
                Ok((Live::Abstract(l), Some(name)))
            }
        }
    }

    /// Verifies the attack did not reach the fixture, and removes it.
    async fn finish(self) -> Result<(), String> {
        fn nothing_accepted<T>(r: std::io::Result<T>) -> Result<(), String> {
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Ok(_) => Err("the host listener accepted a connection from the sandbox".into()),
                Err(e) => Err(format!("host listener: {e}")),
            }
        }
        match self {
            Live::None => Ok(()),
            Live::Canary(mut child) => {
                let alive = child.try_wait();
                let _ = child.start_kill();
                let _ = child.wait().await;
                match alive {
                    Ok(None) => Ok(()),
                    Ok(Some(st)) => Err(format!("the host canary (uid {NOBODY}) died: {st}")),
                    Err(e) => Err(format!("host canary: {e}")),
                }
            }
            Live::Tcp(l) => {
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                nothing_accepted(l.accept())
            }
            Live::Abstract(l) => {
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                nothing_accepted(l.accept())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

fn base_limits() -> Limits {
    let mut l = LimitPolicy::default().defaults;
    l.pids = PIDS_ROOMY;
    l.wall_time_ms = 10_000;
    l.cpu_time_ms = 5_000;
    l.output_bytes = 64 << 10;
    l.tmpfs_bytes = 16 << 20;
    l
}

struct Outcome {
    case: &'static str,
    elapsed: Duration,
    /// (status, wall ms) of each run.
    runs: Vec<(RunStatus, u64)>,
    /// stdout of each run.
    stdouts: Vec<String>,
    /// Zombies the runs left for the host's init to reap.
    zombies: Vec<String>,
    failure: Option<String>,
}

fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.trim_end().to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes in all]", &s[..end], s.len())
}

fn describe(r: &RunResult) -> String {
    format!(
        "    status {:?}, exit {:?}, signal {:?}, wall {} ms, cpu {} ms, peak {} B, error {:?}\n    stdout: {}\n    stderr: {}",
        r.status,
        r.exit_code,
        r.signal,
        r.wall_ms,
        r.cpu_ms,
        r.peak_memory_bytes,
        r.error,
        excerpt(&r.stdout, 600),
        excerpt(&r.stderr, 600)
    )
}

/// One run of a case's program, with the universal leftovers check.
/// One run of a case's program, with the universal leftovers check. Returns the result and the
/// zombies the run left.
async fn run_once(
    engine: &Engine,
    case: &Case,
    args: &[&str],
    limits: Limits,
) -> Result<(RunResult, Vec<String>), (String, Option<RunResult>)> {
    let tag = format!("{}-{}", engine.runtime(), case.name);
    let (live, extra) = Live::start(case.fixture, &tag).map_err(|e| (e, None))?;
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(extra);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = RunRequest {
        program: Program::single(format!("{PRELUDE}\n{}", case.code)),
        environment: "python".into(),
        args,
        stdin: vec![],
        limits,
        retain_output: None,
        output_budget: None,
    };
    // While the run goes on: its id and runtime PID, and, once the program has written
    // something (so it certainly runs), the runtime process's tree of descendants.
    let watch = async {
        let mut started = None;
        let mut tree = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                RunEvent::Started {
                    sandbox_id,
                    runtime_pid,
                    ..
                } => started = Some((sandbox_id, runtime_pid)),
                RunEvent::Output { .. } if tree.is_empty() => {
                    if let Some((_, pid)) = &started {
                        tree = descendants(*pid);
                    }
                }
                RunEvent::Output { .. } => {}
            }
        }
        (started, tree)
    };
    let (r, (started, tree)) =
        tokio::join!(engine.run(req, Some(tx), CancellationToken::new()), watch);
    let mut errors = Vec::new();
    if let Err(e) = live.finish().await {
        errors.push(e);
    }
    let mut zombies = Vec::new();
    match &started {
        Some((id, pid)) => match check_leftovers(engine, id, *pid, &tree) {
            Ok(z) => zombies = z,
            Err(e) => errors.push(e),
        },
        None => errors.push("the run never started".into()),
    }
    if errors.is_empty() {
        Ok((r, zombies))
    } else {
        Err((errors.join("; "), Some(r)))
    }
}

async fn run_case(engine: Engine, case: Case) -> Outcome {
    let started = Instant::now();
    let mut limits = base_limits();
    (case.limits)(&mut limits);
    let ctx = Ctx {
        runtime: engine.runtime(),
        limits,
    };
    let mut runs = Vec::new();
    let mut stdouts = Vec::new();
    let mut zombies = Vec::new();
    let mut steps: Vec<(&[&str], Check)> = vec![(case.args, case.check)];
    steps.extend(case.then);
    let mut failure = None;
    for (i, (args, check)) in steps.into_iter().enumerate() {
        let step = if i == 0 {
            String::new()
        } else {
            format!(" (run {})", i + 1)
        };
        match run_once(&engine, &case, args, limits).await {
            Ok((r, z)) => {
                runs.push((r.status, r.wall_ms));
                stdouts.push(r.stdout.clone());
                zombies.extend(z);
                if let Err(e) = check(&r, &ctx) {
                    failure = Some(format!("{e}{step}\n{}", describe(&r)));
                    break;
                }
            }
            Err((e, r)) => {
                if let Some(r) = &r {
                    runs.push((r.status, r.wall_ms));
                }
                let d = r.as_ref().map(describe).unwrap_or_default();
                failure = Some(format!("{e}{step}\n{d}"));
                break;
            }
        }
    }
    Outcome {
        case: case.name,
        elapsed: started.elapsed(),
        runs,
        stdouts,
        zombies,
        failure,
    }
}

async fn suite(kind: RuntimeKind) {
    if !common::installed(kind, "security suite") {
        return;
    }
    let state = tempfile::tempdir().expect("temporary state directory");
    let engine = Engine::new(EngineConfig {
        runtime: RuntimeChoice::Exactly(kind),
        state_dir: state.path().to_path_buf(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("[{kind}] starting the engine: {e}"));
    let mut all = cases();
    // ASSAY_SECURITY_CASES=a,b runs only those cases (for working on the suite).
    if let Ok(only) = std::env::var("ASSAY_SECURITY_CASES") {
        let only: BTreeSet<&str> = only.split(',').map(str::trim).collect();
        all.retain(|c| only.contains(c.name));
        eprintln!(
            "[{kind}] ASSAY_SECURITY_CASES: running only {} cases",
            all.len()
        );
    }
    let mut names = BTreeSet::new();
    for c in &all {
        assert!(names.insert(c.name), "duplicate case {}", c.name);
    }
    // ASSAY_SECURITY_VERBOSE=1 prints what each program reported.
    let verbose = std::env::var_os("ASSAY_SECURITY_VERBOSE").is_some();
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for case in all.iter().copied() {
        let engine = engine.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let o = run_case(engine, case).await;
            let mark = if o.failure.is_some() { "FAIL" } else { "ok  " };
            eprintln!(
                "[{kind}] {mark} {:<24} {:>6} ms  {:?}",
                o.case,
                o.elapsed.as_millis(),
                o.runs
            );
            if verbose {
                for out in &o.stdouts {
                    eprintln!("[{kind}]      {} stdout: {}", o.case, excerpt(out, 2000));
                }
                for z in &o.zombies {
                    eprintln!("[{kind}]      {} left a zombie: {z}", o.case);
                }
            }
            o
        });
    }
    let mut outcomes = Vec::new();
    while let Some(o) = set.join_next().await {
        outcomes.push(o.expect("a case task panicked"));
    }
    let total = started.elapsed();
    drop(engine);
    drop(state);
    outcomes.sort_by_key(|o| o.case);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    let slowest = outcomes
        .iter()
        .max_by_key(|o| o.elapsed)
        .map(|o| (o.case, o.elapsed));
    eprintln!(
        "[{kind}] {} cases, {} failed, {:.1} s in all (concurrency {CONCURRENCY}); slowest: {slowest:?}",
        outcomes.len(),
        failed.len(),
        total.as_secs_f64()
    );
    let zombies: usize = outcomes.iter().map(|o| o.zombies.len()).sum();
    if zombies > 0 {
        let cases = outcomes.iter().filter(|o| !o.zombies.is_empty()).count();
        eprintln!(
            "[{kind}] note: {zombies} zombies left to the host's init by {cases} cases (dead, not \
             failures; ASSAY_SECURITY_VERBOSE=1 lists them)"
        );
    }
    if !failed.is_empty() {
        let mut msg = format!(
            "\n{} of {} hostile cases failed under {kind}:\n",
            failed.len(),
            outcomes.len()
        );
        for o in failed {
            let _ = writeln!(
                msg,
                "\n[{kind}] {}: {}",
                o.case,
                o.failure.as_deref().unwrap_or("")
            );
        }
        panic!("{msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn security_runc() {
    suite(RuntimeKind::Runc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn security_crun() {
    suite(RuntimeKind::Crun).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn security_runsc() {
    suite(RuntimeKind::Runsc).await;
}
