//! Why an engine could not start, or a run could not be carried out.

use crate::init::INIT_CANDIDATES;
use crate::runtime::RuntimeKind;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "no OCI runtime found (looked for runsc, crun, runc); install one: apt-get install runc crun runsc"
    )]
    NoRuntime,
    #[error("runtime {0} is not installed (apt-get install {0})")]
    RuntimeMissing(RuntimeKind),
    #[error(
        "tini-static not found (looked in {INIT_CANDIDATES:?}); install it: apt-get install tini"
    )]
    NoInit,
    #[error("cgroups: {0}")]
    Cgroup(std::io::Error),
    #[error("state directory {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown environment {0:?}")]
    UnknownEnvironment(String),
    #[error(transparent)]
    Environment(#[from] crate::environment::EnvironmentError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("preparing the sandbox: {0}")]
    Prepare(String),
    #[error("starting {runtime}: {source}")]
    Spawn {
        runtime: RuntimeKind,
        source: std::io::Error,
    },
}

/// Maps an I/O error on `path` to [`SandboxError::State`].
pub(crate) fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::State {
        path: path.to_path_buf(),
        source,
    }
}
