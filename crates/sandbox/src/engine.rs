//! The engine: one single-use sandbox per run, from bundle to result to clean-up.

use crate::bundle::{self, Common};
use crate::capture::Capture;
use crate::cgroup::{CgroupLimits, Cgroups, DEFAULT_ROOT, Layout, RunCgroup};
use crate::cleanup;
use crate::environment::{Environment, write_minimal_etc};
use crate::error::{SandboxError, state_err};
use crate::init::find_init;
use crate::runtime::{Runtime, RuntimeChoice, RuntimeKind};
use crate::sandbox::{OutputBudget, RunEvent, RunRequest, Sandbox};
use crate::status::classify;
use assay_domain::{OutputStream, RunResult, RunStatus};
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
use tracing::Instrument;

/// How often a running sandbox's CPU time is checked against its limit (and a pending kill is
/// repeated until the runtime reports the end).
/// Bytes of one read of a program's stdout or stderr (and of output budget it takes first).
const READ_BYTES: usize = 64 * 1024;

/// Waits for one read's worth of output budget (never, without one: that branch is off).
async fn take_budget(budget: Option<&OutputBudget>) {
    match budget {
        Some(b) => b.take(u32::try_from(READ_BYTES).expect("64 KiB")).await,
        None => std::future::pending().await,
    }
}

const TICK: Duration = Duration::from_millis(20);

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
    /// Where the cgroup hierarchies are mounted (`/sys/fs/cgroup`). It must be the mount the
    /// runtimes see there too; another path is for hosts that mount it elsewhere.
    pub cgroup_mount: PathBuf,
    pub environments: Vec<Environment>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            runtime: RuntimeChoice::Auto,
            state_dir: PathBuf::from("/run/assay"),
            cgroup_parent: "assay".into(),
            cgroup_mount: PathBuf::from(DEFAULT_ROOT),
            environments: vec![Environment::python()],
        }
    }
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
    cgroups: Cgroups,
    cgroup_parent: String,
    envs: BTreeMap<String, Environment>,
    common: Common,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every run borrows the engine, so none is in flight: remove the engine's cgroup and
        // directory (runtime state, generated /etc, init) so that nothing outlives it.
        self.cgroups
            .remove_tree(&Path::new(&self.cgroup_parent).join(&self.id));
        let _ = fs::remove_dir_all(&self.dir);
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

impl Engine {
    /// Starts an engine: finds the runtime and tini, checks cgroups, removes what dead engines
    /// under the same state directory left behind, and claims a fresh engine directory.
    pub async fn new(config: EngineConfig) -> Result<Engine, SandboxError> {
        let (kind, path) = resolve_runtime(config.runtime)?;
        let init_binary = find_init().ok_or(SandboxError::NoInit)?;
        let cgroups = Cgroups::detect(config.cgroup_mount).map_err(SandboxError::Cgroup)?;
        let engines = config.state_dir.join("engines");
        fs::create_dir_all(&engines).map_err(state_err(&engines))?;
        fs::set_permissions(&config.state_dir, fs::Permissions::from_mode(0o711))
            .map_err(state_err(&config.state_dir))?;
        let cleaned = cleanup::dead_engines(&engines, &cgroups, &config.cgroup_parent).await;
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
        let common = Common {
            runtime: kind,
            etc_dir,
            init_dir,
            seccomp_profile: kind.seccomp_profile(),
            seccomp_bpf: kind.precompiled_seccomp()?,
        };
        let runtime = Runtime::new(kind, path, dir.join(kind.name()), cgroups.layout());
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
                cgroups,
                cgroup_parent: config.cgroup_parent,
                envs,
                common,
            }),
        })
    }

    pub fn runtime(&self) -> RuntimeKind {
        self.inner.runtime.kind
    }

    pub fn layout(&self) -> Layout {
        self.inner.cgroups.layout()
    }

    /// The cgroup hierarchies this engine's runs live in.
    pub fn cgroups(&self) -> &Cgroups {
        &self.inner.cgroups
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
    ///
    /// Traced as a `sandbox.run` span (runtime, run id, status) with one child span per phase:
    /// `sandbox.prepare` (cgroup and bundle), `sandbox.start` (the runtime process),
    /// `sandbox.program` (until the runtime reports the end) and `sandbox.teardown`.
    pub async fn run(
        &self,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let span = tracing::info_span!(
            "sandbox.run",
            runtime = self.inner.runtime.kind.name(),
            run_id = %run_id,
            status = tracing::field::Empty,
        );
        let result = self
            .run_and_clean_up(&run_id, req, events, cancel)
            .instrument(span.clone())
            .await;
        span.record("status", tracing::field::display(result.status));
        result
    }

    async fn run_and_clean_up(
        &self,
        run_id: &str,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult {
        let bundle = self.inner.dir.join("runs").join(run_id);
        // The run's cgroup is held here, not in `run_in`, so that its removal is part of the
        // teardown whatever `run_in` returned.
        let mut cgroup = None;
        let result = self
            .run_in(run_id, &bundle, req, events, cancel, &mut cgroup)
            .await;
        self.teardown(run_id, &bundle, cgroup)
            .instrument(tracing::info_span!("sandbox.teardown"))
            .await;
        match result {
            Ok(r) => r,
            Err(e) => RunResult::platform_error(self.inner.runtime.kind.name(), e.to_string()),
        }
    }

    /// Clean-up, whatever happened: the run's cgroup (with every process still in it), then
    /// what may remain of runtime state (after a crash of the runtime process), then the bundle.
    async fn teardown(&self, run_id: &str, bundle: &Path, cgroup: Option<RunCgroup>) {
        if let Some(mut cg) = cgroup {
            cg.remove();
        }
        if self.inner.runtime.has_state(run_id) {
            self.inner.runtime.delete_force(run_id).await;
        }
        if let Err(e) = fs::remove_dir_all(bundle)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(bundle = %bundle.display(), error = %e, "could not remove bundle");
        }
    }

    async fn run_in(
        &self,
        run_id: &str,
        bundle: &Path,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
        cgroup: &mut Option<RunCgroup>,
    ) -> Result<RunResult, SandboxError> {
        let inner = &self.inner;
        let kind = inner.runtime.kind;
        let limits = req.limits;
        let pid_file = bundle.join("pid");

        let (cg, mut cmd) = {
            let _prepare = tracing::info_span!("sandbox.prepare").entered();
            let env = inner
                .envs
                .get(&req.environment)
                .ok_or_else(|| SandboxError::UnknownEnvironment(req.environment.clone()))?;
            let cg = RunCgroup::create(
                &inner.cgroups,
                self.cgroup_root().join(run_id),
                CgroupLimits {
                    memory_bytes: limits.memory_bytes,
                    pids: kind.host_pids_limit(limits.pids),
                    cpu_millicores: limits.cpu_millicores,
                },
            )
            .map_err(SandboxError::Cgroup)?;
            let cg = &*cgroup.insert(cg);
            let (cgroups_path, join) = if inner.runtime.manages_cgroups() {
                (Some(cg.container_path()), Vec::new())
            } else {
                (None, cg.join_procs_files().map_err(SandboxError::Cgroup)?)
            };
            bundle::prepare(bundle, &req, env, &inner.common, cgroups_path.as_deref())?;
            let cmd = inner.runtime.run_command(bundle, &pid_file, run_id, &join);
            (cg, cmd)
        };

        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if req.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        });
        let started = Instant::now();
        let mut child = tracing::info_span!("sandbox.start")
            .in_scope(|| cmd.spawn())
            .map_err(|source| SandboxError::Spawn {
                runtime: kind,
                source,
            })?;
        let runtime_pid = child.id();
        if let Some(tx) = &events {
            let _ = tx.send(RunEvent::Started {
                runtime: kind,
                sandbox_id: run_id.to_string(),
                runtime_pid: runtime_pid.unwrap_or(0),
            });
        }
        // A program that never reads its stdin must not block the run: the write is one more
        // branch of the loop below, and closes the pipe (EOF for the program) when done.
        let stdin_pipe = child.stdin.take();
        let mut stdin_done = stdin_pipe.is_none();
        let write_stdin = async {
            if let Some(mut pipe) = stdin_pipe {
                let _ = pipe.write_all(&req.stdin).await;
            }
        };
        tokio::pin!(write_stdin);
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let mut out = Capture::new(OutputStream::Stdout, limits.output_bytes, req.retain_output);
        let mut err = Capture::new(OutputStream::Stderr, limits.output_bytes, req.retain_output);
        let mut buf_out = vec![0u8; READ_BYTES];
        let mut buf_err = vec![0u8; READ_BYTES];
        // With a budget, each read first takes READ_BYTES of it and gives back what it did not
        // send; without a receiver there is nobody to give it back, so no budget.
        let budget = req.output_budget.clone().filter(|_| events.is_some());
        let (mut out_ready, mut err_ready) = (budget.is_none(), budget.is_none());

        let deadline = tokio::time::Instant::from_std(started + limits.wall_time());
        let cpu_limit_ns = limits.cpu_time_ms.saturating_mul(1_000_000);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut kill = Kill {
            cg,
            spare: runtime_pid,
            reason: None,
            since: None,
        };
        let mut exit: Option<ExitStatus> = None;
        let mut wall = Duration::ZERO;
        let mut drain_deadline = tokio::time::Instant::now();

        async {
            loop {
                if exit.is_some() && out.eof && err.eof {
                    return Ok::<(), SandboxError>(());
                }
                tokio::select! {
                    () = &mut write_stdin, if !stdin_done => stdin_done = true,
                    () = take_budget(budget.as_ref()), if !out_ready && !out.eof => out_ready = true,
                    () = take_budget(budget.as_ref()), if !err_ready && !err.eof => err_ready = true,
                    r = stdout.read(&mut buf_out), if out_ready && !out.eof => {
                        let before = out.sent();
                        if out.take(r, &buf_out, &events) {
                            kill.start(RunStatus::OutputExceeded);
                        }
                        if let Some(b) = &budget {
                            b.unused(READ_BYTES - (out.sent() - before));
                            out_ready = false;
                        }
                    }
                    r = stderr.read(&mut buf_err), if err_ready && !err.eof => {
                        let before = err.sent();
                        if err.take(r, &buf_err, &events) {
                            kill.start(RunStatus::OutputExceeded);
                        }
                        if let Some(b) = &budget {
                            b.unused(READ_BYTES - (err.sent() - before));
                            err_ready = false;
                        }
                    }
                    status = child.wait(), if exit.is_none() => {
                        wall = started.elapsed();
                        exit = Some(status.map_err(|source| SandboxError::Spawn { runtime: kind, source })?);
                        // Nothing of the run may outlive the runtime (it may have crashed, leaving
                        // the container behind): kill what is left, then read the pipes to their end.
                        cg.kill_all();
                        drain_deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
                    }
                    () = tokio::time::sleep_until(deadline), if exit.is_none() && kill.reason.is_none() => {
                        kill.start(RunStatus::TimedOut);
                    }
                    () = cancel.cancelled(), if exit.is_none() && kill.reason.is_none() => {
                        kill.start(RunStatus::Cancelled);
                    }
                    _ = ticker.tick(), if exit.is_none() => {
                        if let Some(since) = kill.since {
                            // The kill may have come before the runtime moved the program into the
                            // cgroup: repeat it until the runtime reports the end. A runtime that
                            // does not end within its grace period is killed too.
                            if since.elapsed() >= kind.kill_grace() {
                                cg.kill_all();
                                let _ = child.start_kill();
                            } else {
                                cg.kill_all_except(runtime_pid);
                            }
                        } else if cg.cpu_ns() > cpu_limit_ns {
                            kill.start(RunStatus::TimedOut);
                        }
                    }
                    () = tokio::time::sleep_until(drain_deadline), if exit.is_some() => {
                        tracing::warn!(run = run_id, "output pipes still open after the sandbox ended; abandoning them");
                        return Ok(());
                    }
                }
            }
        }
        .instrument(tracing::info_span!("sandbox.program"))
        .await?;

        let stats = cg.stats();
        let exit = exit.expect("the loop ends only after the exit");
        let started_ok = pid_file.exists();
        let (status, exit_code, signal, error) =
            classify(exit, kill.reason, stats.oom_events, started_ok, &err.kept);
        Ok(RunResult {
            status,
            exit_code,
            signal,
            wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
            cpu_ms: stats.cpu_ns / 1_000_000,
            peak_memory_bytes: stats.peak_memory_bytes,
            stdout: out.text(),
            stderr: err.text(),
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            runtime: kind.name().into(),
            error,
        })
    }
}

/// A kill Assay decided on: why (the first reason wins), since when, and the run's cgroup.
struct Kill<'a> {
    cg: &'a RunCgroup,
    /// The runtime process, spared while it has its grace period (see
    /// `RunCgroup::kill_all_except`).
    spare: Option<u32>,
    reason: Option<RunStatus>,
    since: Option<Instant>,
}

impl Kill<'_> {
    fn start(&mut self, reason: RunStatus) {
        if self.reason.is_none() {
            self.reason = Some(reason);
            self.since = Some(Instant::now());
            self.cg.kill_all_except(self.spare);
        }
    }
}

#[async_trait::async_trait]
impl Sandbox for Engine {
    fn runtime_name(&self) -> &str {
        self.inner.runtime.kind.name()
    }

    async fn run(
        &self,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult {
        Engine::run(self, req, events, cancel).await
    }
}
