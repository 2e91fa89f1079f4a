//! Set-up done in the runtime's child process between fork and exec (crun only).
//!
//! 1. crun on hybrid-cgroup hosts.
//!
//! crun 1.8 refuses to run when it sees both v1 controllers and a cgroup2 mount at
//! `/sys/fs/cgroup/unified` ("cgroups in hybrid mode not supported"). It works when, in its own
//! mount namespace, that cgroup2 mount is absent. So the crun process is started in a fresh mount
//! namespace (made private first, so nothing propagates back to the host) with the cgroup2 mount
//! detached. The v1 hierarchies, where the limits live, are untouched.
//!
//! 2. crun runs with `--cgroup-manager=disabled`: instead of creating and removing a cgroup in
//!    every hierarchy per run (about 6 ms of wall time here), the crun process joins the run's
//!    cgroup Assay created before it execs, so the container it starts is born inside it.
//!
//! This is the one place in Assay with `unsafe`: `pre_exec` runs a closure in the forked child
//! before `exec`, which Rust can only offer as an unsafe API.
#![expect(
    unsafe_code,
    reason = "pre_exec is an unsafe API; this module is the one place allowed to use it"
)]

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;
use std::ffi::CString;
use tokio::process::Command;

/// Starts the command in a private mount namespace without the cgroup2 mount. The path is the
/// one crun itself inspects (it always looks at `/sys/fs/cgroup`, whatever root the engine's
/// cgroup code was given).
pub fn hide_cgroup2(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // operations are allowed. It makes three raw syscalls (unshare, mount, umount2) through nix
    // with static C-string literals, so it allocates nothing, takes no locks and touches no
    // state shared with the parent. Errors become `io::Error::from_raw_os_error`, which does not
    // allocate either.
    unsafe {
        cmd.pre_exec(|| {
            unshare(CloneFlags::CLONE_NEWNS)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            mount(
                None::<&std::ffi::CStr>,
                c"/",
                None::<&std::ffi::CStr>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&std::ffi::CStr>,
            )
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            match umount2(c"/sys/fs/cgroup/unified", MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(e) => Err(std::io::Error::from_raw_os_error(e as i32)),
            }
        });
    }
}

/// Makes the child join the given cgroups (paths of `cgroup.procs` files) before exec.
pub fn join_cgroups(cmd: &mut Command, procs_files: Vec<CString>) {
    if procs_files.is_empty() {
        return;
    }
    // SAFETY: as above, the closure runs between fork and exec. The paths were turned into C
    // strings before the fork; the closure only borrows them, and makes open/write syscalls
    // (writing "0" moves the calling process). No allocation, no locks. The file descriptors
    // are closed when the OwnedFd drops (close is async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            for path in &procs_files {
                let fd = open(
                    path.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
                nix::unistd::write(&fd, b"0")
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            }
            Ok(())
        });
    }
}
