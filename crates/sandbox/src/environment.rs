//! Environments: the read-only file trees a program runs on.
//!
//! The sandbox root is always an empty directory; an environment contributes read-only binds of
//! its top-level entries (and recreates its top-level symlinks, such as Debian's `bin -> usr/bin`).
//! The default `python` environment is a subset of the host (`/usr`, `/bin`, `/lib`, `/lib64`,
//! `/sbin`) with a generated minimal `/etc`. An operator can register another from a directory
//! holding a root file system, or from an unpacked OCI image bundle (`rootfs/` plus
//! `config.json`, as `umoci unpack` writes it), whose `process.env` is taken over.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Top-level names the sandbox provides itself; an environment's entries of these names are not
/// bound.
const RESERVED: &[&str] = &["proc", "dev", "sys", "tmp", "code", ".assay", "run"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Bind this host directory (or file) read-only at `/<name>`.
    Bind { name: String, source: PathBuf },
    /// Create `/<name>` as a symlink to `target`.
    Symlink { name: String, target: PathBuf },
}

#[derive(Clone, Debug)]
pub struct Environment {
    pub name: String,
    /// The tree whose top-level entries make the sandbox's root.
    pub root: PathBuf,
    /// When set, only these top-level entries are used (missing ones are skipped).
    pub only: Option<Vec<String>>,
    /// Generate a minimal `/etc` (users root and nobody, localhost) instead of the tree's own.
    pub generated_etc: bool,
    /// Command the entrypoint is appended to, e.g. `["/usr/bin/python3"]`.
    pub command: Vec<String>,
    /// The environment variables of the program: exactly these, nothing inherited.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("environment directory {0} does not exist or is not a directory")]
    NotADirectory(PathBuf),
    #[error("reading the OCI image config {path}: {reason}")]
    ImageConfig { path: PathBuf, reason: String },
    #[error("environment {0:?} has an empty command")]
    EmptyCommand(String),
    #[error("invalid environment name {0:?} (use letters, digits, '-', '_' and '.')")]
    InvalidName(String),
}

const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the `python` environment runs before the program (`python3 -c PRELUDE ENTRYPOINT
/// ARGS...`): unbuffered stdout and stderr (as `-u`) whose writes are always whole. gVisor
/// answers a write into a full pipe with a short count, and Python's unbuffered streams drop
/// the rest silently (`print('x' * 200_000)` kept 64 KiB); these loop until every byte is
/// written. Then the program runs as `python3 ENTRYPOINT` would run it: `__main__`, its own
/// `sys.argv`, its directory first on `sys.path`, and tracebacks that start in its own code.
const PYTHON_PRELUDE: &str = r#"import io, os, sys
class _Whole(io.RawIOBase):
    def __init__(self, fd):
        self._fd = fd
    def writable(self):
        return True
    def fileno(self):
        return self._fd
    def write(self, b):
        v = memoryview(b).cast("B")
        n = len(v)
        while v:
            v = v[os.write(self._fd, v):]
        return n
for _name, _fd in (("stdout", 1), ("stderr", 2)):
    _old = getattr(sys, _name)
    setattr(sys, _name, io.TextIOWrapper(_Whole(_fd), encoding=_old.encoding, errors=_old.errors, write_through=True))
del _name, _fd, _old
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])
import runpy
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    raise
except BaseException as _e:
    import traceback
    _tb = _e.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != sys.argv[0]:
        _tb = _tb.tb_next
    traceback.print_exception(type(_e), _e, _tb or _e.__traceback__)
    sys.stderr.flush()
    sys.exit(1)
"#;

impl Environment {
    /// The default environment: the host's Python 3, read-only.
    pub fn python() -> Environment {
        Environment {
            name: "python".into(),
            root: PathBuf::from("/"),
            only: Some(vec![
                "usr".into(),
                "bin".into(),
                "lib".into(),
                "lib64".into(),
                "sbin".into(),
            ]),
            generated_etc: true,
            command: vec![
                "/usr/bin/python3".into(),
                "-c".into(),
                PYTHON_PRELUDE.into(),
            ],
            env: vec![
                ("PATH".into(), BASE_PATH.into()),
                ("HOME".into(), "/tmp".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("PYTHONUNBUFFERED".into(), "1".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ],
        }
    }

    /// An environment from a directory: a root file system, or an unpacked OCI image bundle
    /// (`<dir>/rootfs` plus `<dir>/config.json`).
    pub fn from_dir(
        name: &str,
        dir: &Path,
        command: Vec<String>,
    ) -> Result<Environment, EnvironmentError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(EnvironmentError::InvalidName(name.into()));
        }
        if command.is_empty() {
            return Err(EnvironmentError::EmptyCommand(name.into()));
        }
        if !dir.is_dir() {
            return Err(EnvironmentError::NotADirectory(dir.into()));
        }
        let mut env = vec![
            ("PATH".to_string(), BASE_PATH.to_string()),
            ("HOME".into(), "/tmp".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        let mut root = dir.to_path_buf();
        let config = dir.join("config.json");
        if dir.join("rootfs").is_dir() && config.is_file() {
            root = dir.join("rootfs");
            env = image_env(&config)?;
        }
        let generated_etc = !root.join("etc").is_dir();
        Ok(Environment {
            name: name.into(),
            root,
            only: None,
            generated_etc,
            command,
            env,
        })
    }

    /// The top-level entries to place in the sandbox root.
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let names: Vec<String> = match &self.only {
            Some(list) => list.clone(),
            None => {
                let mut v: Vec<String> = std::fs::read_dir(&self.root)?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            }
        };
        let mut out = Vec::new();
        for name in names {
            if RESERVED.contains(&name.as_str()) || (name == "etc" && self.generated_etc) {
                continue;
            }
            let source = self.root.join(&name);
            let Ok(meta) = std::fs::symlink_metadata(&source) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&source)?;
                out.push(Entry::Symlink { name, target });
            } else if meta.is_dir() || meta.is_file() {
                out.push(Entry::Bind { name, source });
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct ImageConfig {
    process: Option<ImageProcess>,
}

#[derive(Deserialize)]
struct ImageProcess {
    #[serde(default)]
    env: Vec<String>,
}

fn image_env(path: &Path) -> Result<Vec<(String, String)>, EnvironmentError> {
    let err = |reason: String| EnvironmentError::ImageConfig {
        path: path.into(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let cfg: ImageConfig = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut env: Vec<(String, String)> = cfg
        .process
        .map(|p| p.env)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), BASE_PATH.into()));
    }
    Ok(env)
}

/// The generated `/etc`: just enough for name lookups of the sandbox user and localhost.
pub fn write_minimal_etc(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let files: &[(&str, &str)] = &[
        (
            "passwd",
            "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n",
        ),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
        ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("hostname", "sandbox\n"),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n",
        ),
        ("resolv.conf", ""),
    ];
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::write(&p, content)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_env_binds_host_usr_and_recreates_symlinks() {
        let e = Environment::python();
        let entries = e.entries().unwrap();
        assert!(
            entries
                .iter()
                .any(|x| matches!(x, Entry::Bind { name, .. } if name == "usr"))
        );
        assert!(!entries.iter().any(
            |x| matches!(x, Entry::Bind { name, .. } | Entry::Symlink { name, .. } if name == "etc")
        ));
        assert!(e.env.iter().all(|(k, _)| k != "LD_PRELOAD"));
    }

    #[test]
    fn dir_env_skips_reserved_and_reads_image_env() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        for d in ["usr", "proc", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::write(
            t.path().join("config.json"),
            r#"{"process":{"env":["PATH=/opt/bin:/usr/bin","FOO=bar"]}}"#,
        )
        .unwrap();
        let e = Environment::from_dir("img", t.path(), vec!["/usr/bin/python3".into()]).unwrap();
        assert!(!e.generated_etc);
        let names: Vec<_> = e
            .entries()
            .unwrap()
            .into_iter()
            .map(|x| match x {
                Entry::Bind { name, .. } | Entry::Symlink { name, .. } => name,
            })
            .collect();
        assert_eq!(names, vec!["etc", "usr"]);
        assert!(e.env.contains(&("FOO".into(), "bar".into())));
        assert!(Environment::from_dir("bad name", t.path(), vec!["x".into()]).is_err());
        assert!(Environment::from_dir("x", &t.path().join("nope"), vec!["x".into()]).is_err());
    }
}
