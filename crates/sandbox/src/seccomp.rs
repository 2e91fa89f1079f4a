//! The seccomp policy of every sandbox, defined once and rendered two ways:
//!
//! * as the OCI `linux.seccomp` section (runc compiles it with libseccomp; runsc applies it inside
//!   the sandbox with `--oci-seccomp`), and
//! * as a precompiled classic-BPF program (via `seccompiler`) handed to crun in the
//!   `run.oci.seccomp_bpf_data` annotation, which saves crun compiling it on every run.
//!
//! The policy is an allowlist, stricter than Docker's default profile: no ptrace, no io_uring,
//! no keyctl/add_key/request_key, no bpf/perf_event_open/userfaultfd, no mount/unshare/setns or
//! namespace-creating clone flags, no chroot/pivot_root, no mknod, no process_vm_*, no kernel
//! module/reboot/clock calls, and sockets only of the families AF_UNIX, AF_INET and AF_INET6
//! (so no AF_VSOCK, AF_PACKET, AF_NETLINK, AF_ALG, ...), and `socketpair` only for AF_UNIX. Everything not allowed fails with
//! EPERM, except `clone3`, which fails with ENOSYS so that glibc falls back to `clone`, whose
//! flags can be inspected.

use base64::Engine as _;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name as i64)),*]
    };
}

/// Syscalls allowed with any arguments, as (name, x86_64 number). Names are the `SYS_` constants
/// without that prefix.
const ALLOWED: &[(&str, i64)] = syscalls![
    SYS_accept,
    SYS_accept4,
    SYS_access,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_chdir,
    SYS_chmod,
    SYS_chown,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_creat,
    SYS_dup,
    SYS_dup2,
    SYS_dup3,
    SYS_epoll_create,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_epoll_wait,
    SYS_eventfd,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fork,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpgrp,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_ioctl,
    SYS_kill,
    SYS_lchown,
    SYS_lgetxattr,
    SYS_link,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lseek,
    SYS_lstat,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_mincore,
    SYS_mkdir,
    SYS_mkdirat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open,
    SYS_openat,
    SYS_openat2,
    SYS_pause,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe,
    SYS_pipe2,
    SYS_poll,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_pselect6,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlink,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_rename,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rmdir,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_yield,
    SYS_select,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_set_robust_list,
    SYS_set_tid_address,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_setsid,
    SYS_setsockopt,
    SYS_setuid,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd,
    SYS_signalfd4,
    SYS_splice,
    SYS_stat,
    SYS_statfs,
    SYS_statx,
    SYS_symlink,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_time,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlink,
    SYS_unlinkat,
    SYS_utime,
    SYS_utimensat,
    SYS_utimes,
    SYS_vfork,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];

/// Namespace-creating clone flags; `clone` is allowed only with none of them set.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Socket families a program may create.
const SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
];

/// `personality` values allowed: the default persona and the query.
const PERSONALITIES: &[u64] = &[0, 0xffff_ffff];

const ERRNO_DENIED: u32 = libc::EPERM as u32;

/// Names of the syscalls the policy allows unconditionally (for tests and documentation).
pub fn allowed_names() -> impl Iterator<Item = &'static str> {
    ALLOWED.iter().map(|(n, _)| n.trim_start_matches("SYS_"))
}

/// The policy as the OCI runtime spec's `linux.seccomp` object.
///
/// `clone3_enosys`: answer `clone3` with ENOSYS (so glibc falls back to `clone`, whose flags the
/// filter can check); otherwise `clone3` is allowed. Which one a runtime gets is decided by
/// `RuntimeKind::seccomp_profile`.
pub fn oci_profile(clone3_enosys: bool) -> Value {
    let names: Vec<&str> = allowed_names().collect();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    syscalls.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
    }));
    for fam in SOCKET_FAMILIES {
        syscalls.push(json!({
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": fam, "op": "SCMP_CMP_EQ"}],
        }));
    }
    syscalls.push(json!({
        "names": ["socketpair"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": libc::AF_UNIX, "op": "SCMP_CMP_EQ"}],
    }));
    for p in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
        }));
    }
    if clone3_enosys {
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS,
        }));
    } else {
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ALLOW"}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ERRNO_DENIED,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": syscalls,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("building the seccomp filter: {0}")]
pub struct SeccompError(String);

fn cond(op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(0, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError(e.to_string()))
}

fn rule(c: SeccompCondition) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(vec![c]).map_err(|e| SeccompError(e.to_string()))
}

/// BPF_LD | BPF_W | BPF_ABS
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_RET_K: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The policy compiled to classic BPF for x86_64.
pub fn bpf_program() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&(_, nr)| (nr, vec![])).collect();
    rules.insert(
        libc::SYS_clone,
        vec![rule(cond(
            SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
            0,
        )?)?],
    );
    rules.insert(
        libc::SYS_socket,
        SOCKET_FAMILIES
            .iter()
            .map(|&f| rule(cond(SeccompCmpOp::Eq, f)?))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(cond(SeccompCmpOp::Eq, libc::AF_UNIX as u64)?)?],
    );
    rules.insert(
        libc::SYS_personality,
        PERSONALITIES
            .iter()
            .map(|&p| rule(cond(SeccompCmpOp::Eq, p)?))
            .collect::<Result<_, _>>()?,
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(ERRNO_DENIED),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| SeccompError(e.to_string()))?;
    let body: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError(e.to_string()))?;
    // seccompiler applies one action to every match, so `clone3 → ENOSYS` is a prologue:
    // check the architecture, then answer clone3 before the allowlist is consulted.
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, 4),
        sock_filter {
            code: BPF_JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, 0),
        sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: u32::try_from(libc::SYS_clone3).map_err(|e| SeccompError(e.to_string()))?,
        },
        stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    prog.extend(body);
    Ok(prog)
}

/// The compiled program as crun's `run.oci.seccomp_bpf_data` annotation wants it: the raw
/// `struct sock_filter` array (8 bytes each, native endianness), base64-encoded.
pub fn bpf_annotation() -> Result<String, SeccompError> {
    let prog = bpf_program()?;
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for ins in &prog {
        bytes.extend_from_slice(&ins.code.to_ne_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_ne_bytes());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_syscalls_are_not_allowed() {
        let allowed: Vec<_> = allowed_names().collect();
        for bad in [
            "ptrace",
            "io_uring_setup",
            "io_uring_enter",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "chroot",
            "pivot_root",
            "mknod",
            "mknodat",
            "process_vm_readv",
            "process_vm_writev",
            "init_module",
            "finit_module",
            "kexec_load",
            "reboot",
            "swapon",
            "syslog",
            "clock_settime",
            "settimeofday",
            "open_by_handle_at",
            "name_to_handle_at",
            "acct",
            "quotactl",
            "fsopen",
            "fsmount",
            "move_mount",
            "open_tree",
            "pidfd_getfd",
            "kcmp",
            "clone3",
            "clone",
            "socket",
            "personality",
        ] {
            assert!(
                !allowed.contains(&bad),
                "{bad} must not be unconditionally allowed"
            );
        }
    }

    #[test]
    fn oci_profile_has_conditional_rules() {
        let p = oci_profile(true);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        let rules = p["syscalls"].as_array().unwrap();
        let socket_rules: Vec<_> = rules.iter().filter(|r| r["names"][0] == "socket").collect();
        assert_eq!(socket_rules.len(), 3);
        assert!(
            rules
                .iter()
                .any(|r| r["names"][0] == "clone3" && r["errnoRet"] == 38)
        );
    }

    #[test]
    fn bpf_compiles_and_encodes() {
        let prog = bpf_program().unwrap();
        assert!(prog.len() > ALLOWED.len());
        assert!(prog.len() < 4096);
        let b64 = bpf_annotation().unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw.len(), prog.len() * 8);
    }
}
