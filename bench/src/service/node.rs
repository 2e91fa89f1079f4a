//! The processes under test: `assay serve` (an API node, with or without workers of its own) and
//! `assay worker` (workers alone), started from the real binary and stopped by their guards;
//! and what the benchmark reads about processes and the host from `/proc`.

use anyhow::{Context, Result, bail};
use assay_sandbox::RuntimeKind;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// `/proc/<pid>/stat` times are in clock ticks of 1/100 s on Linux (USER_HZ).
const TICK_MS: f64 = 10.0;
/// How long a node may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a node finds its store, its blobs and its sandboxes' state.
#[derive(Clone, Debug)]
pub(crate) struct NodeConfig {
    pub(crate) assay: PathBuf,
    pub(crate) runtime: RuntimeKind,
    /// `--store`.
    pub(crate) store: String,
    /// `--blob`: every node of a store names the same one.
    pub(crate) blob: String,
    /// `--state-dir` of the sandboxes.
    pub(crate) state: PathBuf,
}

/// A running `assay` process. Dropping it stops it (SIGTERM, then SIGKILL).
pub(crate) struct Node {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Node {
    /// Starts `assay ARGS` with stdout and stderr copied, line by line, to `log` and to the
    /// returned receiver (read it to learn when the node is ready; drop it afterwards).
    fn spawn(
        name: &str,
        assay: &Path,
        args: &[OsString],
        log: PathBuf,
    ) -> Result<(Node, Receiver<String>)> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(assay);
        cmd.args(args);
        for var in [
            "ASSAY_URL",
            "ASSAY_KEY",
            "ASSAY_DATA",
            "ASSAY_STORE",
            "ASSAY_BLOB",
            "ASSAY_CONFIG",
            "ASSAY_LISTEN",
            "ASSAY_RUNTIME",
            "ASSAY_STATE_DIR",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", assay.display()))?;
        let (tx, rx) = channel();
        let file = std::sync::Arc::new(std::sync::Mutex::new(file));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for stream in streams {
            let (tx, file) = (tx.clone(), file.clone());
            // The node never blocks on a full pipe: every line is read, logged and offered.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        eprintln!(
            "{name}: {} {} (log {})",
            assay.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            log.display()
        );
        Ok((
            Node {
                child,
                name: name.to_string(),
                log,
            },
            rx,
        ))
    }

    /// Waits for the first line that `ready` accepts (and returns it).
    fn wait_for(&mut self, rx: &Receiver<String>, ready: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) if ready(&line) => return Ok(line),
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!(
                    "{} did not say it is ready within {} s:\n{}",
                    self.name,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                ),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Both streams closed: give the log a moment to be complete.
                    std::thread::sleep(Duration::from_millis(50));
                    bail!(
                        "{} exited before it was ready:\n{}",
                        self.name,
                        self.log_tail()
                    )
                }
            }
        }
    }

    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The last lines of the node's output, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Asks the node to stop (SIGTERM: sandboxes and cgroups are cleaned up).
    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid =
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }

    /// Waits until `deadline` for the node to exit, then kills it.
    fn reap(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        eprintln!(
            "{}: no exit {} s after SIGTERM; killing it",
            self.name,
            STOP_TIMEOUT.as_secs()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn stop(&mut self) {
        self.terminate();
        self.reap(Instant::now() + STOP_TIMEOUT);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops several nodes at once: all are asked first, then all are waited for.
pub(crate) fn stop_all<'a>(nodes: impl IntoIterator<Item = &'a mut Node>) {
    let mut nodes: Vec<&mut Node> = nodes.into_iter().collect();
    for n in &mut nodes {
        n.terminate();
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for n in &mut nodes {
        n.reap(deadline);
    }
}

/// A running `assay serve`: its address and the admin key of its data folder.
pub(crate) struct Server {
    pub(crate) node: Node,
    pub(crate) url: String,
    pub(crate) key: String,
}

impl Server {
    /// `assay serve --slots SLOTS` on the node's store, with `data` as its data folder (the
    /// admin key is made there by the first server of a store; later ones read it).
    pub(crate) fn start(name: &str, cfg: &NodeConfig, slots: usize, data: &Path) -> Result<Server> {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--slots".into(),
            slots.to_string().into(),
            "--data".into(),
            data.into(),
        ];
        args.extend(common_args(cfg));
        let log = data
            .parent()
            .unwrap_or(data)
            .join(format!("{}.log", name.replace([' ', '/', ':'], "-")));
        let (mut node, rx) = Node::spawn(name, &cfg.assay, &args, log)?;
        let line = node.wait_for(&rx, |l| l.starts_with("assay: listening on "))?;
        let url = line
            .trim()
            .strip_prefix("assay: listening on ")
            .expect("the predicate checked it")
            .to_string();
        let key_file = data.join("admin.key");
        let key = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?
            .trim()
            .to_string();
        eprintln!("{name}: listening on {url}");
        Ok(Server { node, url, key })
    }

    pub(crate) fn pid(&self) -> String {
        self.node.pid()
    }

    pub(crate) fn req(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        c.request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key)
    }

    /// `GET /v1/queue` counts by status.
    pub(crate) async fn counts(&self, c: &reqwest::Client) -> Result<BTreeMap<String, u64>> {
        let r = self
            .req(c, reqwest::Method::GET, "/v1/queue")
            .send()
            .await
            .context("GET /v1/queue")?;
        let status = r.status();
        let body: Value = r.json().await.context("GET /v1/queue: body")?;
        if status != reqwest::StatusCode::OK {
            bail!("GET /v1/queue: {status} {body}");
        }
        serde_json::from_value(body["counts"].clone()).context("GET /v1/queue: counts")
    }
}

/// `assay worker --slots SLOTS` on the node's store; returns once its engine is up.
pub(crate) fn start_worker(name: &str, cfg: &NodeConfig, slots: usize, dir: &Path) -> Result<Node> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut args: Vec<OsString> = vec![
        "worker".into(),
        "--slots".into(),
        slots.to_string().into(),
        "--data".into(),
        dir.join("data").into(),
    ];
    args.extend(common_args(cfg));
    let log = dir.join(format!("{}.log", name.replace([' ', '/', ':'], "-")));
    let (mut node, rx) = Node::spawn(name, &cfg.assay, &args, log)?;
    node.wait_for(&rx, |l| l.starts_with("assay: worker "))?;
    Ok(node)
}

fn common_args(cfg: &NodeConfig) -> Vec<OsString> {
    vec![
        "--runtime".into(),
        cfg.runtime.name().into(),
        "--state-dir".into(),
        cfg.state.clone().into(),
        "--store".into(),
        cfg.store.clone().into(),
        "--blob".into(),
        cfg.blob.clone().into(),
    ]
}

/// `assay` next to this binary; built (same profile, same target folder) when missing.
pub(crate) fn find_assay(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--assay {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = exe.parent().context("this binary has no folder")?;
    let assay = dir.join("assay");
    if assay.is_file() {
        return Ok(assay);
    }
    // <target>/<profile>/bench-service: build `assay` into the same place.
    let profile = dir.file_name().and_then(|s| s.to_str()).unwrap_or("");
    let target = dir.parent().context("no target folder")?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "assay", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("{} is missing; building it: {cmd:?}", assay.display());
    let status = cmd.status().context("running cargo")?;
    if !status.success() || !assay.is_file() {
        bail!(
            "could not build {}; build it with `cargo build --release -p assay -p assay-bench`",
            assay.display()
        );
    }
    Ok(assay)
}

// ---------------------------------------------------------------------------------------------
// /proc

/// The first number of `/proc/loadavg` (load over the last minute).
pub(crate) fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of a process so far, in ms: (its own, its waited-for children's).
pub(crate) fn cpu_ms(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11) // state ... cmajflt: fields 3 to 13
        .take(4) // utime stime cutime cstime
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.len() == 4).then(|| ((f[0] + f[1]) * TICK_MS, (f[2] + f[3]) * TICK_MS))
}

/// The sum of [`cpu_ms`] over several processes.
pub(crate) fn cpu_ms_sum(pids: &[String]) -> Option<(f64, f64)> {
    pids.iter()
        .map(|p| cpu_ms(p))
        .try_fold((0.0, 0.0), |acc, c| c.map(|c| (acc.0 + c.0, acc.1 + c.1)))
}

/// Own CPU time, in ms, of the PostgreSQL backends serving database `db` on this host (found by
/// their process titles; a backend that exits meanwhile takes its time with it, so this is
/// exact only while connections are kept, as the nodes' pools do).
pub(crate) fn postgres_cpu_ms(db: &str) -> Option<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if comm.trim() != "postgres" {
            continue;
        }
        // The title: `postgres: 15/main: USER DB HOST(PORT) STATE`.
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        if !title.split_whitespace().any(|w| w == db) {
            continue;
        }
        if let Some((own, _)) = cpu_ms(pid) {
            total += own;
        }
    }
    Some(total)
}

/// Busy and total jiffies of all CPUs (`/proc/stat`), to compute how busy the host was.
pub(crate) fn host_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user and nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The share of all CPUs that was busy between two [`host_jiffies`] readings.
pub(crate) fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = before.zip(after)?;
    let total = t1.checked_sub(t0).filter(|t| *t > 0)?;
    Some((b1.saturating_sub(b0)) as f64 / total as f64)
}
