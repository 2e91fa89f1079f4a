//! The engine: one single-use sandbox per run, from bundle to result to clean-up.

use crate::cgroup::{self, CgroupLimits, Layout, RunCgroup};
use crate::environment::{Entry, Environment, write_minimal_etc};
use crate::runtime::{Runtime, RuntimeChoice, RuntimeKind};
use crate::{seccomp, spec};
use assay_domain::{Limits, OutputStream, Program, RunResult, RunStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// Where tini's static build is looked for; it becomes the sandbox's PID 1.
const INIT_CANDIDATES: &[&str] = &["/usr/bin/tini-static", "/usr/local/bin/tini-static"];

/// How often a running sandbox's CPU time is checked against its limit (and a pending kill is
/// repeated until the runtime reports the end).
const TICK: Duration = Duration::from_millis(20);

/// A kill that has not ended the run after this long also kills the runtime process: runc and
/// crun are left alive for a while so that they reap the container's init (no zombies for the
/// host's PID 1); runsc is slow to notice its sandbox died, and is stopped at once.
fn runtime_kill_grace(kind: RuntimeKind) -> Duration {
    match kind {
        RuntimeKind::Runsc => Duration::ZERO,
        RuntimeKind::Runc | RuntimeKind::Crun => Duration::from_secs(2),
    }
}

/// Host processes gVisor itself needs (sentry, gofer, platform stubs) besides the program's.
const RUNSC_PIDS_BASE: u32 = 128;

/// The pids limit of the host cgroup. Under runsc every guest thread also costs host threads
/// (the ptrace platform's stubs) and the sentry has its own, so the host limit is a bound on the
/// whole sandbox rather than the program's exact count: base + 2 per allowed process.
fn host_pids_limit(kind: RuntimeKind, pids: u32) -> u32 {
    match kind {
        RuntimeKind::Runsc => RUNSC_PIDS_BASE.saturating_add(pids.saturating_mul(2)),
        RuntimeKind::Runc | RuntimeKind::Crun => pids,
    }
}

/// After the runtime exits, output still in the pipes is read until EOF; a pipe held open past
/// this (it cannot be by a sandboxed process, which is dead by then) is abandoned.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub runtime: RuntimeChoice,
    /// Where bundles and runtime state live. Best on a tmpfs (`/run/assay`).
    pub state_dir: PathBuf,
    /// The cgroup below which per-run cgroups are created (`<parent>/<engine>/<run>`).
    pub cgroup_parent: String,
    pub environments: Vec<Environment>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            runtime: RuntimeChoice::Auto,
            state_dir: PathBuf::from("/run/assay"),
            cgroup_parent: "assay".into(),
            environments: vec![Environment::python()],
        }
    }
}

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
    Seccomp(#[from] seccomp::SeccompError),
    #[error("preparing the sandbox: {0}")]
    Prepare(String),
    #[error("starting {runtime}: {source}")]
    Spawn {
        runtime: RuntimeKind,
        source: std::io::Error,
    },
}

/// One program to run.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub program: Program,
    /// Name of a registered environment (`python` by default).
    pub environment: String,
    /// Extra arguments after the entrypoint.
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    pub limits: Limits,
}

/// What a running sandbox reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The runtime process started (its host PID, for diagnostics and crash tests).
    Started {
        runtime: RuntimeKind,
        sandbox_id: String,
        runtime_pid: u32,
    },
    /// A chunk of output, in order per stream, never beyond the output limit.
    Output { stream: OutputStream, data: Vec<u8> },
}

/// The engine. Cheap to clone; runs may go on concurrently.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    dir: PathBuf,
    /// Held (flock) for the engine's lifetime: an engine directory whose lock can be taken
    /// belongs to a dead engine and is cleaned up.
    _lock: File,
    runtime: Runtime,
    layout: Layout,
    cgroup_parent: String,
    envs: BTreeMap<String, Environment>,
    etc_dir: PathBuf,
    init_dir: PathBuf,
    seccomp_profile: Value,
    seccomp_bpf: Option<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every run borrows the engine, so none is in flight: remove the engine's cgroup and
        // directory (runtime state, generated /etc, init) so that nothing outlives it.
        cgroup::remove_tree(self.layout, &Path::new(&self.cgroup_parent).join(&self.id));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::State {
        path: path.to_path_buf(),
        source,
    }
}

/// Picks the runtime: the configured one, or the strongest installed.
pub fn resolve_runtime(choice: RuntimeChoice) -> Result<(RuntimeKind, PathBuf), SandboxError> {
    match choice {
        RuntimeChoice::Exactly(k) => k
            .find()
            .map(|p| (k, p))
            .ok_or(SandboxError::RuntimeMissing(k)),
        RuntimeChoice::Auto => RuntimeKind::BY_STRENGTH
            .iter()
            .find_map(|&k| k.find().map(|p| (k, p)))
            .ok_or(SandboxError::NoRuntime),
    }
}

pub fn find_init() -> Option<PathBuf> {
    INIT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Summary of what start-up clean-up removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub engines: usize,
    pub sandboxes: usize,
}

impl Engine {
    /// Starts an engine: finds the runtime and tini, checks cgroups, removes what dead engines
    /// under the same state directory left behind, and claims a fresh engine directory.
    pub async fn new(config: EngineConfig) -> Result<Engine, SandboxError> {
        let (kind, path) = resolve_runtime(config.runtime)?;
        let init_binary = find_init().ok_or(SandboxError::NoInit)?;
        let layout = Layout::detect().map_err(SandboxError::Cgroup)?;
        let engines = config.state_dir.join("engines");
        fs::create_dir_all(&engines).map_err(state_err(&engines))?;
        fs::set_permissions(&config.state_dir, fs::Permissions::from_mode(0o711))
            .map_err(state_err(&config.state_dir))?;
        let cleaned = cleanup_dead_engines(&engines, layout, &config.cgroup_parent).await;
        if cleaned.sandboxes > 0 || cleaned.engines > 0 {
            tracing::info!(
                engines = cleaned.engines,
                sandboxes = cleaned.sandboxes,
                "removed leftovers of earlier runs"
            );
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let dir = engines.join(&id);
        fs::create_dir_all(dir.join("runs")).map_err(state_err(&dir))?;
        let lock = File::create(dir.join("lock")).map_err(state_err(&dir))?;
        lock.try_lock().map_err(|e| SandboxError::State {
            path: dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // The init binary is copied into the engine's directory, which is bound as a directory:
        // file binds are handled differently by each runtime.
        let init_dir = dir.join("init");
        fs::create_dir_all(&init_dir).map_err(state_err(&init_dir))?;
        fs::copy(&init_binary, init_dir.join("init")).map_err(state_err(&init_dir))?;
        fs::set_permissions(&init_dir, fs::Permissions::from_mode(0o755))
            .map_err(state_err(&init_dir))?;
        let etc_dir = dir.join("etc");
        write_minimal_etc(&etc_dir).map_err(state_err(&etc_dir))?;
        let seccomp_bpf = if kind == RuntimeKind::Crun {
            Some(seccomp::bpf_annotation()?)
        } else {
            None
        };
        let runtime = Runtime::new(kind, path, dir.join(kind.name()), layout);
        let envs = config
            .environments
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        Ok(Engine {
            inner: Arc::new(Inner {
                id,
                dir,
                _lock: lock,
                runtime,
                layout,
                cgroup_parent: config.cgroup_parent,
                envs,
                etc_dir,
                init_dir,
                seccomp_profile: seccomp::oci_profile(kind != RuntimeKind::Runsc),
                seccomp_bpf,
            }),
        })
    }

    pub fn runtime(&self) -> RuntimeKind {
        self.inner.runtime.kind
    }

    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// This engine's directory under the state directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The cgroup (relative to each hierarchy root) that holds all of this engine's runs.
    pub fn cgroup_root(&self) -> PathBuf {
        Path::new(&self.inner.cgroup_parent).join(&self.inner.id)
    }

    pub fn environments(&self) -> impl Iterator<Item = &str> {
        self.inner.envs.keys().map(String::as_str)
    }

    /// Runs one program in a fresh sandbox and returns how it ended. Output chunks go to
    /// `events` as they come. `cancel` kills the sandbox at once. Platform failures are
    /// reported as an `errored` result, never as a panic or a lost run. Whatever happens, the
    /// sandbox's processes, cgroups, runtime state and bundle are gone when this returns.
    pub async fn run(
        &self,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let bundle = self.inner.dir.join("runs").join(&run_id);
        let result = self.run_in(&run_id, &bundle, req, events, cancel).await;
        // Clean-up, whatever happened above. The run's cgroup (with every process still in
        // it) was removed when `run_in` dropped its `RunCgroup`; what may remain is runtime
        // state (after a crash of the runtime process) and the bundle.
        if self.inner.runtime.has_state(&run_id) {
            self.inner.runtime.delete_force(&run_id).await;
        }
        if let Err(e) = fs::remove_dir_all(&bundle)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(bundle = %bundle.display(), error = %e, "could not remove bundle");
        }
        match result {
            Ok(r) => r,
            Err(e) => RunResult::platform_error(self.inner.runtime.kind.name(), e.to_string()),
        }
    }

    fn prepare_bundle(
        &self,
        bundle: &Path,
        req: &RunRequest,
        env: &Environment,
        cgroups_path: Option<&str>,
    ) -> Result<(), SandboxError> {
        let prep = |what: &str, e: std::io::Error| SandboxError::Prepare(format!("{what}: {e}"));
        let rootfs = bundle.join("rootfs");
        let entries = env
            .entries()
            .map_err(|e| prep("reading the environment", e))?;
        // The root: an empty directory holding only mount points and the environment's symlinks.
        for d in ["proc", "dev", "tmp", "code", ".assay"] {
            fs::create_dir_all(rootfs.join(d)).map_err(|e| prep("rootfs", e))?;
        }
        // runc copies the mount point's mode onto a tmpfs; /tmp must be world-writable + sticky.
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .map_err(|e| prep("rootfs", e))?;
        if env.generated_etc {
            fs::create_dir_all(rootfs.join("etc")).map_err(|e| prep("rootfs", e))?;
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
            .map_err(|e| prep("rootfs", e))?;
        }
        // The program's files, readable by the sandbox user.
        let code = bundle.join("code");
        fs::create_dir_all(&code).map_err(|e| prep("code", e))?;
        for f in req.program.files() {
            let path = code.join(&f.path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| prep("code", e))?;
                fs::set_permissions(parent, fs::Permissions::from_mode(0o755))
                    .map_err(|e| prep("code", e))?;
            }
            fs::write(&path, &f.content).map_err(|e| prep("code", e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(|e| prep("code", e))?;
        }
        let mut args = env.command.clone();
        args.push(format!("{}/{}", spec::CODE_DIR, req.program.entrypoint()));
        args.extend(req.args.iter().cloned());
        let config = spec::build(&spec::SpecInput {
            runtime: self.inner.runtime.kind,
            args,
            env: &env.env,
            entries: &entries,
            code_dir: &code,
            etc_dir: env.generated_etc.then_some(self.inner.etc_dir.as_path()),
            init_dir: &self.inner.init_dir,
            limits: &req.limits,
            cgroups_path,
            seccomp_profile: &self.inner.seccomp_profile,
            seccomp_bpf: self.inner.seccomp_bpf.as_deref(),
        })
        .map_err(|e| SandboxError::Prepare(format!("spec: {e}")))?;
        let json =
            serde_json::to_vec(&config).map_err(|e| SandboxError::Prepare(format!("spec: {e}")))?;
        fs::write(bundle.join("config.json"), json).map_err(|e| prep("config.json", e))?;
        Ok(())
    }

    async fn run_in(
        &self,
        run_id: &str,
        bundle: &Path,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> Result<RunResult, SandboxError> {
        let inner = &self.inner;
        let env = inner
            .envs
            .get(&req.environment)
            .ok_or_else(|| SandboxError::UnknownEnvironment(req.environment.clone()))?;
        let limits = req.limits;
        let cg = RunCgroup::create(
            inner.layout,
            self.cgroup_root().join(run_id),
            CgroupLimits {
                memory_bytes: limits.memory_bytes,
                pids: host_pids_limit(inner.runtime.kind, limits.pids),
                cpu_millicores: limits.cpu_millicores,
            },
        )
        .map_err(SandboxError::Cgroup)?;
        let (cgroups_path, join) = if inner.runtime.manages_cgroups() {
            (Some(cg.container_path()), Vec::new())
        } else {
            (None, cg.join_procs_files().map_err(SandboxError::Cgroup)?)
        };
        self.prepare_bundle(bundle, &req, env, cgroups_path.as_deref())?;

        let pid_file = bundle.join("pid");
        let mut cmd = inner.runtime.run_command(bundle, &pid_file, run_id, &join);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if req.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        });
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
            runtime: inner.runtime.kind,
            source,
        })?;
        if let Some(tx) = &events {
            let _ = tx.send(RunEvent::Started {
                runtime: inner.runtime.kind,
                sandbox_id: run_id.to_string(),
                runtime_pid: child.id().unwrap_or(0),
            });
        }
        if let Some(mut stdin) = child.stdin.take() {
            let data = req.stdin.clone();
            // A program that never reads its stdin must not block the run: the writer is a
            // separate task that ends with the pipe.
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let mut out = Capture::new(OutputStream::Stdout, limits.output_bytes);
        let mut err = Capture::new(OutputStream::Stderr, limits.output_bytes);
        let mut buf_out = vec![0u8; 64 * 1024];
        let mut buf_err = vec![0u8; 64 * 1024];

        let deadline = tokio::time::Instant::from_std(started + limits.wall_time());
        let cpu_limit_ns = limits.cpu_time_ms.saturating_mul(1_000_000);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let runtime_pid = child.id();
        let mut kill_reason: Option<RunStatus> = None;
        let mut kill_since: Option<Instant> = None;
        let mut exit: Option<ExitStatus> = None;
        let mut wall = Duration::ZERO;
        let mut drain_deadline = tokio::time::Instant::now();

        loop {
            if exit.is_some() && out.eof && err.eof {
                break;
            }
            tokio::select! {
                r = stdout.read(&mut buf_out), if !out.eof => {
                    if out.take(r, &buf_out, &events) && kill_reason.is_none() {
                        kill_reason = Some(RunStatus::OutputExceeded);
                        kill_since = Some(Instant::now());
                        cg.kill_all_except(runtime_pid);
                    }
                }
                r = stderr.read(&mut buf_err), if !err.eof => {
                    if err.take(r, &buf_err, &events) && kill_reason.is_none() {
                        kill_reason = Some(RunStatus::OutputExceeded);
                        kill_since = Some(Instant::now());
                        cg.kill_all_except(runtime_pid);
                    }
                }
                status = child.wait(), if exit.is_none() => {
                    wall = started.elapsed();
                    exit = Some(status.map_err(|source| SandboxError::Spawn { runtime: inner.runtime.kind, source })?);
                    // Nothing of the run may outlive the runtime (it may have crashed, leaving the
                    // container behind): kill what is left, then read the pipes to their end.
                    cg.kill_all();
                    drain_deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
                }
                _ = tokio::time::sleep_until(deadline), if exit.is_none() && kill_reason.is_none() => {
                    kill_reason = Some(RunStatus::TimedOut);
                    kill_since = Some(Instant::now());
                    cg.kill_all_except(runtime_pid);
                }
                _ = cancel.cancelled(), if exit.is_none() && kill_reason.is_none() => {
                    kill_reason = Some(RunStatus::Cancelled);
                    kill_since = Some(Instant::now());
                    cg.kill_all_except(runtime_pid);
                }
                _ = ticker.tick(), if exit.is_none() => {
                    if let Some(since) = kill_since {
                        // The kill may have come before the runtime moved the program into the
                        // cgroup: repeat it until the runtime reports the end. A runtime that
                        // does not end within the grace period is killed too.
                        if since.elapsed() >= runtime_kill_grace(inner.runtime.kind) {
                            cg.kill_all();
                            let _ = child.start_kill();
                        } else {
                            cg.kill_all_except(runtime_pid);
                        }
                    } else if cg.cpu_ns() > cpu_limit_ns {
                        kill_reason = Some(RunStatus::TimedOut);
                        kill_since = Some(Instant::now());
                        cg.kill_all_except(runtime_pid);
                    }
                }
                _ = tokio::time::sleep_until(drain_deadline), if exit.is_some() => {
                    tracing::warn!(run = run_id, "output pipes still open after the sandbox ended; abandoning them");
                    break;
                }
            }
        }
        let stats = cg.stats();
        let exit = exit.expect("loop ends only after exit");
        let started_ok = pid_file.exists();
        let (status, exit_code, signal, error) =
            classify(exit, kill_reason, stats.oom_events, started_ok, &err.kept);
        Ok(RunResult {
            status,
            exit_code,
            signal,
            wall_ms: wall.as_millis() as u64,
            cpu_ms: stats.cpu_ns / 1_000_000,
            peak_memory_bytes: stats.peak_memory_bytes,
            stdout: String::from_utf8_lossy(&out.kept).into_owned(),
            stderr: String::from_utf8_lossy(&err.kept).into_owned(),
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            runtime: inner.runtime.kind.name().into(),
            error,
        })
    }
}

type Classified = (RunStatus, Option<i32>, Option<i32>, Option<String>);

/// Decides the status. Order matters: what Assay did (cancel, timeout, output cap) first, then
/// what the cgroup saw (OOM), then whether the runtime ever started the program, then the exit.
fn classify(
    exit: ExitStatus,
    kill_reason: Option<RunStatus>,
    oom_events: u64,
    started_ok: bool,
    stderr: &[u8],
) -> Classified {
    use std::os::unix::process::ExitStatusExt;
    let code = exit.code();
    // tini reports a child killed by signal N as exit code 128 + N.
    let signal = exit
        .signal()
        .or_else(|| code.filter(|c| (129..=192).contains(c)).map(|c| c - 128));
    if let Some(reason) = kill_reason {
        return (reason, code, signal, None);
    }
    if oom_events > 0 {
        return (RunStatus::MemoryExceeded, code, signal, None);
    }
    if !started_ok {
        let msg = String::from_utf8_lossy(stderr).trim().to_string();
        return (
            RunStatus::Errored,
            code,
            signal,
            Some(format!(
                "the runtime failed before the program started: {msg}"
            )),
        );
    }
    if exit.signal().is_some() {
        // The runtime process itself was killed (not the program: its fate arrives as tini's
        // exit code). The sandbox was killed with it.
        return (
            RunStatus::Errored,
            None,
            exit.signal(),
            Some("the runtime process died during the run".into()),
        );
    }
    match code {
        Some(0) => (RunStatus::Succeeded, Some(0), None, None),
        _ => (RunStatus::Failed, code, signal, None),
    }
}

/// One output stream: what was kept (up to the limit), and whether more came.
struct Capture {
    stream: OutputStream,
    limit: usize,
    kept: Vec<u8>,
    truncated: bool,
    eof: bool,
}

impl Capture {
    fn new(stream: OutputStream, limit: u64) -> Capture {
        Capture {
            stream,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            kept: Vec::new(),
            truncated: false,
            eof: false,
        }
    }

    /// Takes one read's result. Returns true the first time the limit is exceeded.
    fn take(
        &mut self,
        r: std::io::Result<usize>,
        buf: &[u8],
        events: &Option<UnboundedSender<RunEvent>>,
    ) -> bool {
        let n = match r {
            Ok(0) | Err(_) => {
                self.eof = true;
                return false;
            }
            Ok(n) => n,
        };
        let room = self.limit - self.kept.len();
        let keep = n.min(room);
        if keep > 0 {
            self.kept.extend_from_slice(&buf[..keep]);
            if let Some(tx) = events {
                let _ = tx.send(RunEvent::Output {
                    stream: self.stream,
                    data: buf[..keep].to_vec(),
                });
            }
        }
        if keep < n && !self.truncated {
            self.truncated = true;
            return true;
        }
        false
    }
}

/// Removes what engines that are no longer alive left under `engines/`: their containers
/// (through the runtime), their cgroups and their directories.
async fn cleanup_dead_engines(engines: &Path, layout: Layout, cgroup_parent: &str) -> Cleanup {
    let mut done = Cleanup::default();
    let Ok(rd) = fs::read_dir(engines) else {
        return done;
    };
    for entry in rd.flatten() {
        let dir = entry.path();
        let Ok(lock) = File::options()
            .read(true)
            .write(true)
            .open(dir.join("lock"))
        else {
            // No lock file: a half-created directory of a dead engine.
            let _ = fs::remove_dir_all(&dir);
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // a live engine
        }
        let engine_id = entry.file_name().to_string_lossy().into_owned();
        // First the processes: killing through the cgroups needs no runtime and, once a cgroup
        // is removed, every process that was in it has exited.
        let cg_root = Path::new(cgroup_parent).join(&engine_id);
        for run in cgroup::list_children(layout, &cg_root) {
            cgroup::remove_tree(layout, &cg_root.join(&run));
        }
        cgroup::remove_tree(layout, &cg_root);
        // Then the runtimes' state of those containers.
        for kind in [RuntimeKind::Runc, RuntimeKind::Crun, RuntimeKind::Runsc] {
            let root = dir.join(kind.name());
            let Some(path) = kind.find() else { continue };
            if !root.exists() {
                continue;
            }
            let rt = Runtime::new(kind, path, root, layout);
            for id in rt.known_containers() {
                rt.delete_force(&id).await;
                done.sandboxes += 1;
            }
        }
        if let Ok(runs) = fs::read_dir(dir.join("runs")) {
            done.sandboxes = done.sandboxes.max(runs.count());
        }
        // A runtime process orphaned by the dead engine (runc is not inside the run's cgroup)
        // may still be removing its own state as its container dies: retry briefly.
        for attempt in 0..50 {
            match fs::remove_dir_all(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if attempt == 49 => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a dead engine's directory")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        done.engines += 1;
    }
    done
}
