//! The OCI bundle of one run: `rootfs/` (mount points and the environment's symlinks only),
//! `code/` (the program's files) and `config.json`.

use crate::environment::{Entry, Environment};
use crate::error::SandboxError;
use crate::runtime::RuntimeKind;
use crate::sandbox::RunRequest;
use crate::spec;
use serde_json::Value;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What every bundle of one engine shares.
pub(crate) struct Common {
    pub(crate) runtime: RuntimeKind,
    /// The generated minimal `/etc`.
    pub(crate) etc_dir: PathBuf,
    /// The directory holding the init binary.
    pub(crate) init_dir: PathBuf,
    pub(crate) seccomp_profile: Value,
    /// The precompiled filter, for the runtime that takes one.
    pub(crate) seccomp_bpf: Option<String>,
}

fn prep(what: &str) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |e| SandboxError::Prepare(format!("{what}: {e}"))
}

/// Writes the bundle of `req` into `bundle` (which must not exist yet).
pub(crate) fn prepare(
    bundle: &Path,
    req: &RunRequest,
    env: &Environment,
    common: &Common,
    cgroups_path: Option<&str>,
) -> Result<(), SandboxError> {
    let rootfs = bundle.join("rootfs");
    let entries = env.entries().map_err(prep("reading the environment"))?;
    // The root: an empty directory holding only mount points and the environment's symlinks.
    for d in ["proc", "dev", "tmp", "code", ".assay"] {
        fs::create_dir_all(rootfs.join(d)).map_err(prep("rootfs"))?;
    }
    // runc copies the mount point's mode onto a tmpfs; /tmp must be world-writable + sticky.
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(prep("rootfs"))?;
    if env.generated_etc {
        fs::create_dir_all(rootfs.join("etc")).map_err(prep("rootfs"))?;
    }
    for entry in &entries {
        match entry {
            Entry::Bind { name, source } => {
                if source.is_dir() {
                    fs::create_dir_all(rootfs.join(name))
                } else {
                    File::create(rootfs.join(name)).map(|_| ())
                }
            }
            Entry::Symlink { name, target } => {
                std::os::unix::fs::symlink(target, rootfs.join(name))
            }
        }
        .map_err(prep("rootfs"))?;
    }
    // The program's files, readable by the sandbox user.
    let code = bundle.join("code");
    fs::create_dir_all(&code).map_err(prep("code"))?;
    for f in req.program.files() {
        let path = code.join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(prep("code"))?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).map_err(prep("code"))?;
        }
        fs::write(&path, &f.content).map_err(prep("code"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(prep("code"))?;
    }
    let mut args = env.command.clone();
    args.push(format!("{}/{}", spec::CODE_DIR, req.program.entrypoint()));
    args.extend(req.args.iter().cloned());
    let config = spec::build(&spec::SpecInput {
        runtime: common.runtime,
        args,
        env: &env.env,
        entries: &entries,
        code_dir: &code,
        etc_dir: env.generated_etc.then_some(common.etc_dir.as_path()),
        init_dir: &common.init_dir,
        limits: &req.limits,
        cgroups_path,
        seccomp_profile: &common.seccomp_profile,
        seccomp_bpf: common.seccomp_bpf.as_deref(),
    })
    .map_err(|e| SandboxError::Prepare(format!("spec: {e}")))?;
    let json =
        serde_json::to_vec(&config).map_err(|e| SandboxError::Prepare(format!("spec: {e}")))?;
    fs::write(bundle.join("config.json"), json).map_err(prep("config.json"))?;
    Ok(())
}
