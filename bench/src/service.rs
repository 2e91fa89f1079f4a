//! `bench-service`: what the service adds on top of the sandbox, measured in the same run.
//!
//! One run of this binary measures, on the same machine and under the same load:
//!
//! 1. the baseline, the sandbox alone: [`Engine::run`] called directly, `print('hello')` N times
//!    one at a time (latency), then `print(1)` N times two at a time (throughput);
//! 2. end to end: the real `assay serve` (`--slots 2`, the same runtime) on loopback, N
//!    `POST /v1/evaluations?wait=30` of `print('hello')` one after another;
//! 3. batch throughput: thousands of `print(1)` through `POST /v1/evaluations/batch`, timed until
//!    `GET /v1/queue` shows them all finished;
//! 4. read throughput: `GET /v1/evaluations/{id}` of one finished evaluation over many
//!    keep-alive connections for a fixed time.
//!
//! It prints a table (and one line of JSON) that compares each figure with its baseline and
//! with the targets of the issue. Timing targets are reported, never asserted: only requests or
//! runs that did not end as expected make the process exit non-zero.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use assay_domain::{LimitOverrides, LimitPolicy, Limits, Program, RunStatus};
use assay_sandbox::{
    CancellationToken, Engine, EngineConfig, Environment, RunRequest, RuntimeChoice, RuntimeKind,
};
use clap::Parser;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The latency program, and what it must print.
mod common;
use common::{Failures, Stats, command_version, fmt_opt, median, ms, pass, round2, short};

const HELLO: &str = "print('hello')";
const HELLO_OUT: &str = "hello\n";
/// The throughput program, and what it must print.
const TRIVIAL: &str = "print(1)";
const TRIVIAL_OUT: &str = "1\n";
/// Sandboxes the server runs at once (`--slots`), and the parallelism of the baseline.
const SLOTS: usize = 2;
/// The API's largest batch.
const CHUNK: usize = 1000;
/// Targets: end-to-end median at most this much above the sandbox-alone median, ...
const E2E_MARGIN_MS: f64 = 15.0;
/// ... batch throughput at least this share of the sandbox-alone throughput at parallel 2, ...
const BATCH_SHARE: f64 = 0.8;
/// ... and this many GETs per second.
const GET_RPS: f64 = 5000.0;
/// How often the batch phase asks `/v1/queue` whether everything finished.
const POLL: Duration = Duration::from_millis(100);
/// The batch phase gives up when no evaluation finished for this long.
const STALL: Duration = Duration::from_secs(60);
/// How many failures are printed in full (all are counted).
const MAX_PRINTED_FAILURES: usize = 20;
/// When the baseline measured at the end differs from the one at the start by more than this
/// share, the load changed during the run and the table says so.
const MAX_DRIFT: f64 = 0.2;
/// `/proc/<pid>/stat` times are in clock ticks of 1/100 s on Linux (USER_HZ).
const TICK_MS: f64 = 10.0;

#[derive(Parser, Debug)]
#[command(
    name = "bench-service",
    about = "The evaluation service end to end against the sandbox alone, measured in the same run"
)]
struct Args {
    /// Few runs: proves the benchmark works (for CI), figures are rough.
    #[arg(long)]
    quick: bool,
    /// OCI runtime of both the baseline and the server [default: crun if installed, else runc].
    #[arg(long)]
    runtime: Option<RuntimeKind>,
    /// Print only the JSON line on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Measured runs of each latency and baseline batch [default: 200, --quick: 20].
    #[arg(long)]
    runs: Option<usize>,
    /// Evaluations submitted for the batch throughput [default: 5000, --quick: 500].
    #[arg(long)]
    evaluations: Option<usize>,
    /// Seconds of GET load [default: 5, --quick: 2].
    #[arg(long)]
    get_secs: Option<f64>,
    /// Concurrent keep-alive connections of the GET load.
    #[arg(long, default_value_t = 48)]
    connections: usize,
    /// Unmeasured runs before the sandbox and the end-to-end latency [default: 5, --quick: 2].
    #[arg(long)]
    warmup: Option<usize>,
    /// The `assay` binary [default: `assay` next to this binary, built if missing].
    #[arg(long)]
    assay: Option<PathBuf>,
    /// Where the temporary folder (database, sandbox state of both sides) is created
    /// [default: the system's temporary directory].
    #[arg(long)]
    tmp: Option<PathBuf>,
}

struct Settings {
    runs: usize,
    evaluations: usize,
    get_time: Duration,
    connections: usize,
    warmup: usize,
}

impl Args {
    fn settings(&self) -> Settings {
        let (runs, evaluations, get_secs, warmup) = if self.quick {
            (20, 500, 2.0, 2)
        } else {
            (200, 5000, 5.0, 5)
        };
        Settings {
            runs: self.runs.unwrap_or(runs).max(1),
            evaluations: self.evaluations.unwrap_or(evaluations).max(1),
            get_time: Duration::from_secs_f64(self.get_secs.unwrap_or(get_secs).max(0.1)),
            connections: self.connections.max(1),
            warmup: self.warmup.unwrap_or(warmup),
        }
    }
}

/// The first number of `/proc/loadavg` (load over the last minute).
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of a process so far, in ms: (its own, its waited-for children's).
fn cpu_ms(pid: &str) -> Option<(f64, f64)> {
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

// ---------------------------------------------------------------------------------------------
// 1. The sandbox alone.

/// The limits a submission without limits gets from the server.
fn default_limits() -> Result<Limits> {
    LimitPolicy::default()
        .resolve(&LimitOverrides::default())
        .map_err(|e| anyhow::anyhow!("default limits: {e}"))
}

/// N runs of one program through the engine with `parallel` runs in flight.
struct SandboxBatch {
    /// Latency of each successful `Engine::run`, ms.
    latencies: Vec<f64>,
    /// The engine's own `wall_ms` of each successful run (runtime start to exit).
    inside: Vec<f64>,
    failed: usize,
    wall: Duration,
    n: usize,
    parallel: usize,
    /// This process's CPU during the batch, ms: its own (the engine), and its waited-for
    /// children's (runtimes and sandboxed programs).
    cpu: Option<(f64, f64)>,
}

impl SandboxBatch {
    fn runs_per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }
}

async fn sandbox_once(
    engine: &Engine,
    code: &str,
    expected: &str,
    limits: Limits,
) -> Result<u64, String> {
    let r = engine
        .run(
            RunRequest {
                program: Program::single(code),
                environment: "python".into(),
                args: vec![],
                stdin: vec![],
                limits,
                retain_output: None,
            },
            None,
            CancellationToken::new(),
        )
        .await;
    if r.status != RunStatus::Succeeded || r.stdout != expected {
        return Err(format!(
            "status {}, exit {:?}, stdout {:?}, stderr {:?}, error {:?}",
            r.status,
            r.exit_code,
            short(&r.stdout),
            short(&r.stderr),
            r.error
        ));
    }
    Ok(r.wall_ms)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn sandbox_batch(
    label: &str,
    engine: &Engine,
    code: &'static str,
    expected: &'static str,
    limits: Limits,
    n: usize,
    parallel: usize,
    failures: &Failures,
) -> SandboxBatch {
    eprintln!("{label}: {n} runs of {code}, {parallel} at a time");
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_ms("self");
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..parallel {
        let (next, engine, failures, label) = (
            next.clone(),
            engine.clone(),
            failures.clone(),
            label.to_string(),
        );
        workers.push(tokio::spawn(async move {
            let (mut lat, mut inside, mut failed) = (Vec::new(), Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                match sandbox_once(&engine, code, expected, limits).await {
                    Ok(wall) => {
                        lat.push(ms(t.elapsed()));
                        inside.push(wall as f64);
                    }
                    Err(e) => {
                        failed += 1;
                        failures.add(format!("{label} run {i}: {e}"));
                    }
                }
            }
            (lat, inside, failed)
        }));
    }
    let mut b = SandboxBatch {
        latencies: Vec::with_capacity(n),
        inside: Vec::with_capacity(n),
        failed: 0,
        wall: Duration::ZERO,
        n,
        parallel,
        cpu: None,
    };
    for w in workers {
        let (lat, inside, failed) = w.await.expect("a benchmark worker panicked");
        b.latencies.extend(lat);
        b.inside.extend(inside);
        b.failed += failed;
    }
    b.wall = start.elapsed();
    b.cpu = cpu_before
        .zip(cpu_ms("self"))
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1));
    b
}

// ---------------------------------------------------------------------------------------------
// The server.

/// A running `assay serve`. Dropping it stops the server (SIGTERM, then SIGKILL).
struct Server {
    child: Child,
    url: String,
    key: String,
    log: PathBuf,
}

impl Server {
    fn start(assay: &Path, dir: &Path, runtime: RuntimeKind) -> Result<Server> {
        let data = dir.join("data");
        let log = dir.join("server.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        eprintln!(
            "server: {} serve --slots {SLOTS} --runtime {runtime} (log {})",
            assay.display(),
            log.display()
        );
        let mut child = Command::new(assay)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--slots", &SLOTS.to_string()])
            .arg("--data")
            .arg(&data)
            .args(["--runtime", runtime.name()])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env_remove("ASSAY_URL")
            .env_remove("ASSAY_KEY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", assay.display()))?;
        // The first stdout line names the address. Later lines (if any) are drained so that the
        // server never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut server = Server {
            child,
            url: String::new(),
            key: String::new(),
            log,
        };
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => bail!(
                "the server exited before saying where it listens:\n{}",
                server.log_tail()
            ),
            Err(_) => bail!(
                "the server did not say where it listens within 60 s:\n{}",
                server.log_tail()
            ),
        };
        server.url = line
            .trim()
            .strip_prefix("assay: listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_string();
        let key_file = data.join("admin.key");
        server.key = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?
            .trim()
            .to_string();
        eprintln!("server: listening on {}", server.url);
        Ok(server)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The last lines of the server's stderr, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Asks the server to stop (SIGTERM: sandboxes and cgroups are cleaned up), waits up to 20 s,
    /// then kills it. Does nothing when it already exited.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid =
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("server: no exit 20 s after SIGTERM; killing it");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn req(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        c.request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key)
    }

    /// `GET /v1/queue` counts by status.
    async fn counts(&self, c: &reqwest::Client) -> Result<BTreeMap<String, u64>> {
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

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `assay` next to this binary; built (same profile, same target folder) when missing.
fn find_assay(explicit: Option<&Path>) -> Result<PathBuf> {
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
// 2. End to end.

/// Milliseconds since the epoch of an RFC 3339 field of an evaluation.
fn time_field(ev: &Value, field: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(ev[field].as_str()?).ok()?;
    Some(ms(t.duration_since(UNIX_EPOCH).ok()?))
}

/// One `POST /v1/evaluations?wait=30`, with the server's own timestamps.
struct E2eRun {
    total: f64,
    /// created → started: in the queue until a slot claimed it.
    queued: Option<f64>,
    /// started → finished: the sandbox run plus the worker's store writes.
    processing: Option<f64>,
    /// The engine's `wall_ms`: runtime process start to exit.
    inside: Option<f64>,
    /// total − (finished − created): HTTP, submission, waking the waiting request, response.
    rest: Option<f64>,
}

async fn e2e_once(s: &Server, c: &reqwest::Client) -> Result<E2eRun, String> {
    let t = Instant::now();
    let r = s
        .req(c, reqwest::Method::POST, "/v1/evaluations?wait=30")
        .json(&json!({"language": "python", "code": HELLO}))
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| format!("body: {e}"))?;
    let total = ms(t.elapsed());
    let ev: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{status}: not JSON ({e}): {:?}",
            short(&String::from_utf8_lossy(&body))
        )
    })?;
    if status != reqwest::StatusCode::OK
        || ev["status"] != "succeeded"
        || ev["result"]["stdout"] != HELLO_OUT
    {
        return Err(format!(
            "{status}, status {}, result {}",
            ev["status"], ev["result"]
        ));
    }
    let (created, started, finished) = (
        time_field(&ev, "created_at"),
        time_field(&ev, "started_at"),
        time_field(&ev, "finished_at"),
    );
    Ok(E2eRun {
        total,
        queued: started.zip(created).map(|(s, c)| s - c),
        processing: finished.zip(started).map(|(f, s)| f - s),
        inside: ev["result"]["wall_ms"].as_f64(),
        rest: finished.zip(created).map(|(f, c)| total - (f - c)),
    })
}

struct E2e {
    runs: Vec<E2eRun>,
    failed: usize,
    n: usize,
    wall: Duration,
}

impl E2e {
    fn column(&self, f: impl Fn(&E2eRun) -> Option<f64>) -> Vec<f64> {
        self.runs.iter().filter_map(f).collect()
    }
}

async fn end_to_end(s: &Server, n: usize, warmup: usize, failures: &Failures) -> E2e {
    eprintln!("end to end: {warmup} warm-up submissions, then {n} of {HELLO} one at a time");
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");
    for i in 0..warmup {
        if let Err(e) = e2e_once(s, &c).await {
            failures.add(format!("end-to-end warm-up {i}: {e}"));
        }
    }
    let mut out = E2e {
        runs: Vec::with_capacity(n),
        failed: 0,
        n,
        wall: Duration::ZERO,
    };
    let start = Instant::now();
    for i in 0..n {
        match e2e_once(s, &c).await {
            Ok(r) => out.runs.push(r),
            Err(e) => {
                out.failed += 1;
                failures.add(format!("end-to-end run {i}: {e}"));
            }
        }
    }
    out.wall = start.elapsed();
    out
}

// ---------------------------------------------------------------------------------------------
// 3. Batch throughput.

struct BatchReport {
    n: usize,
    /// From the first batch POST until `/v1/queue` showed all of them finished.
    wall: Duration,
    /// Time spent in the batch POSTs (the workers already run meanwhile).
    submit: Duration,
    /// Evaluations that ended in each status (counts after − counts before).
    statuses: BTreeMap<String, u64>,
    /// The server's CPU during the phase, ms: its own, and its waited-for children's (runtimes
    /// and sandboxed programs).
    server_cpu: Option<(f64, f64)>,
    /// One of the evaluations (for the GET phase).
    sample_id: Option<String>,
}

impl BatchReport {
    fn runs_per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }

    fn succeeded(&self) -> u64 {
        self.statuses.get("succeeded").copied().unwrap_or(0)
    }
}

const TERMINAL_EXCLUDED: [&str; 2] = ["queued", "running"];

fn finished(counts: &BTreeMap<String, u64>) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| !TERMINAL_EXCLUDED.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum()
}

async fn batch_throughput(s: &Server, n: usize, failures: &Failures) -> Result<BatchReport> {
    eprintln!(
        "batch: {n} evaluations of {TRIVIAL} in chunks of {CHUNK}, then wait until all finished"
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let before = s.counts(&c).await?;
    let item = json!({"language": "python", "code": TRIVIAL});
    let cpu_before = cpu_ms(&s.pid());
    let start = Instant::now();
    let mut sample_id = None;
    let mut sent = 0;
    while sent < n {
        let k = CHUNK.min(n - sent);
        let body = json!({"items": vec![item.clone(); k]});
        let r = s
            .req(&c, reqwest::Method::POST, "/v1/evaluations/batch")
            .json(&body)
            .send()
            .await
            .context("POST /v1/evaluations/batch")?;
        let status = r.status();
        let v: Value = r.json().await.context("batch response")?;
        let items = v["items"].as_array().map_or(0, |a| a.len());
        if status != reqwest::StatusCode::ACCEPTED || items != k {
            bail!(
                "POST /v1/evaluations/batch of {k}: {status}, {items} items: {}",
                short(&v.to_string())
            );
        }
        if sample_id.is_none() {
            sample_id = v["items"][0]["id"].as_str().map(String::from);
        }
        sent += k;
    }
    let submit = start.elapsed();
    eprintln!(
        "batch: {n} submitted in {:.1} s; waiting for them to finish",
        submit.as_secs_f64()
    );
    let target = finished(&before) + n as u64;
    let (mut last_done, mut last_progress) = (0, Instant::now());
    let mut errors = 0;
    let after = loop {
        tokio::time::sleep(POLL).await;
        let counts = match s.counts(&c).await {
            Ok(c) => c,
            Err(e) => {
                errors += 1;
                if errors >= 10 {
                    return Err(e.context("GET /v1/queue failed 10 times in a row"));
                }
                continue;
            }
        };
        errors = 0;
        let done = finished(&counts);
        if done >= target {
            break counts;
        }
        if done != last_done {
            (last_done, last_progress) = (done, Instant::now());
        } else if last_progress.elapsed() > STALL {
            failures.add(format!(
                "batch: no evaluation finished for {} s; counts {counts:?}",
                STALL.as_secs()
            ));
            break counts;
        }
    };
    let wall = start.elapsed();
    let server_cpu = cpu_before
        .zip(cpu_ms(&s.pid()))
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1));
    let statuses: BTreeMap<String, u64> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0).min(*v)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let report = BatchReport {
        n,
        wall,
        submit,
        statuses,
        server_cpu,
        sample_id,
    };
    if report.succeeded() != n as u64 {
        failures.add(format!(
            "batch: {} of {n} evaluations succeeded; new evaluations by status: {:?}",
            report.succeeded(),
            report.statuses
        ));
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// 4. GET throughput.

struct GetReport {
    connections: usize,
    requests: usize,
    /// Non-200 answers and transport errors.
    bad: usize,
    latencies: Vec<f64>,
    wall: Duration,
    /// CPU of the server and of this process during the load, in % of one core.
    server_cpu_pct: Option<f64>,
    bench_cpu_pct: Option<f64>,
}

impl GetReport {
    fn per_s(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
}

/// Checks that the evaluation is finished and succeeded, so that every GET reads the same row.
async fn check_sample(s: &Server, id: &str) -> Result<()> {
    let c = reqwest::Client::new();
    let r = s
        .req(&c, reqwest::Method::GET, &format!("/v1/evaluations/{id}"))
        .send()
        .await?;
    let status = r.status();
    let ev: Value = r.json().await?;
    if status != reqwest::StatusCode::OK
        || ev["status"] != "succeeded"
        || ev["result"]["stdout"] != TRIVIAL_OUT
    {
        bail!(
            "GET /v1/evaluations/{id}: {status}, {}",
            short(&ev.to_string())
        );
    }
    Ok(())
}

async fn get_throughput(
    s: &Server,
    id: &str,
    connections: usize,
    time: Duration,
    failures: &Failures,
) -> GetReport {
    eprintln!(
        "GET: /v1/evaluations/{id} over {connections} keep-alive connections for {:.1} s",
        time.as_secs_f64()
    );
    let url = format!("{}/v1/evaluations/{id}", s.url);
    let barrier = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, key, barrier) = (url.clone(), s.key.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // One client per task: one keep-alive connection each.
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client");
            let once = || async {
                let r = c.get(&url).bearer_auth(&key).send().await;
                match r {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status == reqwest::StatusCode::OK => Ok(()),
                            Ok(b) => {
                                Err(format!("{status}: {}", short(&String::from_utf8_lossy(&b))))
                            }
                            Err(e) => Err(format!("body: {e}")),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            };
            // Open the connection before the clock starts.
            let mut first_error = None;
            let mut bad = 0;
            for _ in 0..3 {
                if let Err(e) = once().await {
                    bad += 1;
                    first_error.get_or_insert(e);
                }
            }
            barrier.wait().await;
            let deadline = Instant::now() + time;
            let mut lat = Vec::with_capacity(8192);
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = once().await;
                lat.push(ms(t.elapsed()));
                if let Err(e) = r {
                    bad += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lat, bad, first_error)
        }));
    }
    let (pid, me) = (s.pid(), std::process::id().to_string());
    barrier.wait().await;
    let (server0, bench0) = (cpu_ms(&pid), cpu_ms(&me));
    let start = Instant::now();
    let mut report = GetReport {
        connections,
        requests: 0,
        bad: 0,
        latencies: Vec::new(),
        wall: Duration::ZERO,
        server_cpu_pct: None,
        bench_cpu_pct: None,
    };
    let mut first_error = None;
    for t in tasks {
        let (lat, bad, err) = t.await.expect("a GET task panicked");
        report.requests += lat.len();
        report.latencies.extend(lat);
        report.bad += bad;
        if first_error.is_none() {
            first_error = err;
        }
    }
    report.wall = start.elapsed();
    let pct = |before: Option<(f64, f64)>, after: Option<(f64, f64)>| {
        before
            .zip(after)
            .map(|(b, a)| (a.0 - b.0) / ms(report.wall) * 100.0)
    };
    report.server_cpu_pct = pct(server0, cpu_ms(&pid));
    report.bench_cpu_pct = pct(bench0, cpu_ms(&me));
    if report.bad > 0 {
        failures.add(format!(
            "GET: {} responses were not 200 or failed (first: {})",
            report.bad,
            first_error.unwrap_or_default()
        ));
    }
    report
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    // On SIGINT or SIGTERM the measurement is dropped, and with it the server (stopped by its
    // guard) and the temporary folder.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        r = real_main() => match r {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bench-service: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("bench-service: interrupted");
            ExitCode::from(130)
        }
        _ = term.recv() => {
            eprintln!("bench-service: terminated");
            ExitCode::from(143)
        }
    }
}

fn default_runtime() -> RuntimeKind {
    if RuntimeKind::Crun.find().is_some() {
        RuntimeKind::Crun
    } else {
        RuntimeKind::Runc
    }
}

/// Everything measured, for the report.
struct Measured {
    hello_p1: SandboxBatch,
    trivial_p2: SandboxBatch,
    e2e: E2e,
    batch: BatchReport,
    get: Option<GetReport>,
    /// The baseline at parallel 2, measured again at the end (the server stopped).
    trivial_p2_after: SandboxBatch,
    load_start: Option<f64>,
    load_end: Option<f64>,
}

async fn real_main() -> Result<ExitCode> {
    let args = Args::parse();
    let s = args.settings();
    let failures = Failures::default();
    let runtime = args.runtime.unwrap_or_else(default_runtime);
    if runtime.find().is_none() {
        bail!("runtime {runtime} is not installed");
    }
    let assay = find_assay(args.assay.as_deref())?;
    let load_start = loadavg();

    // One temporary folder for everything: the database and the sandbox state of both the
    // baseline engine and the server live on the same file system. Declared first, dropped last.
    let tmp = {
        let mut b = tempfile::Builder::new();
        b.prefix("assay-bench-service-");
        match &args.tmp {
            Some(dir) => b.tempdir_in(dir),
            None => b.tempdir(),
        }
        .context("creating a temporary folder")?
    };
    let limits = default_limits()?;

    // 1. The baseline: the sandbox alone, the same environment and limits as the server's.
    let engine = Engine::new(EngineConfig {
        runtime: RuntimeChoice::Exactly(runtime),
        state_dir: tmp.path().join("sandbox-state"),
        cgroup_parent: "assay-bench".into(),
        environments: vec![Environment::python()],
        ..EngineConfig::default()
    })
    .await
    .with_context(|| format!("starting an engine with {runtime}"))?;
    eprintln!("sandbox alone: {} warm-up runs ({runtime})", s.warmup);
    for i in 0..s.warmup {
        if let Err(e) = sandbox_once(&engine, HELLO, HELLO_OUT, limits).await {
            failures.add(format!("sandbox warm-up run {i}: {e}"));
        }
    }
    let hello_p1 = sandbox_batch(
        "sandbox alone",
        &engine,
        HELLO,
        HELLO_OUT,
        limits,
        s.runs,
        1,
        &failures,
    )
    .await;
    let trivial_p2 = sandbox_batch(
        "sandbox alone",
        &engine,
        TRIVIAL,
        TRIVIAL_OUT,
        limits,
        s.runs,
        SLOTS,
        &failures,
    )
    .await;

    // 2-4. The server.
    let mut server = Server::start(&assay, tmp.path(), runtime)?;
    let e2e = end_to_end(&server, s.runs, s.warmup, &failures).await;
    let batch = batch_throughput(&server, s.evaluations, &failures).await?;
    let get = match &batch.sample_id {
        Some(id) => match check_sample(&server, id).await {
            Ok(()) => Some(get_throughput(&server, id, s.connections, s.get_time, &failures).await),
            Err(e) => {
                failures.add(format!("GET: the sample evaluation: {e:#}"));
                None
            }
        },
        None => {
            failures.add("GET: the batch returned no evaluation id".into());
            None
        }
    };
    eprintln!("server: stopping");
    server.stop();
    drop(server);

    // The baseline again, to see whether the load changed during the run.
    let trivial_p2_after = sandbox_batch(
        "sandbox alone (again)",
        &engine,
        TRIVIAL,
        TRIVIAL_OUT,
        limits,
        s.runs,
        SLOTS,
        &failures,
    )
    .await;
    drop(engine);

    let m = Measured {
        hello_p1,
        trivial_p2,
        e2e,
        batch,
        get,
        trivial_p2_after,
        load_start,
        load_end: loadavg(),
    };
    let host = json!({
        "python": command_version("/usr/bin/python3", &["--version"]),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runtime_version": runtime.find().map(|p| command_version(&p.display().to_string(), &["--version"])),
        "loadavg_1m_start": m.load_start,
        "loadavg_1m_end": m.load_end,
    });
    let (table, json) = report(&m, &s, &args, runtime, &failures, host);
    if !args.json {
        print!("{table}");
    }
    println!(
        "{}",
        serde_json::to_string(&json).expect("JSON of plain values")
    );

    let all = failures.all();
    if all.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\n{} failure(s):", all.len());
        for f in all.iter().take(MAX_PRINTED_FAILURES) {
            eprintln!("  - {f}");
        }
        if all.len() > MAX_PRINTED_FAILURES {
            eprintln!("  … and {} more", all.len() - MAX_PRINTED_FAILURES);
        }
        Ok(ExitCode::FAILURE)
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

/// Builds the table and the JSON document.
fn report(
    m: &Measured,
    s: &Settings,
    args: &Args,
    runtime: RuntimeKind,
    failures: &Failures,
    host: Value,
) -> (String, Value) {
    use std::fmt::Write;
    let hello = Stats::of(&m.hello_p1.latencies);
    let base_median = hello.map(|x| x.median);
    let base_rps = m.trivial_p2.runs_per_s();

    let e2e = Stats::of(&m.e2e.column(|r| Some(r.total)));
    let e2e_diff = e2e.zip(base_median).map(|(e, b)| e.median - b);
    let e2e_ok = m.e2e.failed == 0 && e2e_diff.is_some_and(|d| d <= E2E_MARGIN_MS);

    let batch_rps = m.batch.runs_per_s();
    let batch_share = batch_rps / base_rps;
    let batch_all = m.batch.succeeded() == m.batch.n as u64;
    let batch_ok = batch_all && batch_share >= BATCH_SHARE;

    let get_stats = m.get.as_ref().and_then(|g| Stats::of(&g.latencies));
    let get_ok = m
        .get
        .as_ref()
        .is_some_and(|g| g.bad == 0 && g.per_s() >= GET_RPS);
    let targets_met = e2e_ok && batch_ok && get_ok;

    let mut t = String::new();
    let _ = writeln!(
        t,
        "Assay service benchmark: `assay serve --slots {SLOTS}` against the sandbox alone ({runtime}, {} CPUs, {}, {})",
        host["cpus"],
        host["python"].as_str().unwrap_or(""),
        if args.quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        t,
        "{} runs per latency batch (warm-up {}), {} batch evaluations in chunks of {CHUNK}, {} GET connections for {:.0} s",
        s.runs,
        s.warmup,
        s.evaluations,
        s.connections,
        s.get_time.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "load average (1 min): {} at the start, {} at the end\n",
        fmt_opt(m.load_start, 2),
        fmt_opt(m.load_end, 2)
    );

    let header = format!(
        "{:<32} {:>6} {:>4} {:>9} {:>7} {:>7} {:>10} {:>18} {:>9}  {:<34} {}",
        "what",
        "n",
        "fail",
        "median ms",
        "p90 ms",
        "p99 ms",
        "rate /s",
        "baseline",
        "vs. base",
        "target",
        "result"
    );
    let _ = writeln!(t, "{}", header.trim_end());
    let _ = writeln!(t, "{}", "-".repeat(header.trim_end().chars().count()));
    #[expect(clippy::too_many_arguments, reason = "one column each")]
    fn row(
        t: &mut String,
        what: &str,
        n: usize,
        fail: usize,
        l: Option<Stats>,
        rate: f64,
        baseline: &str,
        vs: &str,
        target: &str,
        result: &str,
    ) {
        let line = format!(
            "{:<32} {:>6} {:>4} {:>9} {:>7} {:>7} {:>10.1} {:>18} {:>9}  {:<34} {}",
            what,
            n,
            fail,
            fmt_opt(l.map(|x| x.median), 2),
            fmt_opt(l.map(|x| x.p90), 2),
            fmt_opt(l.map(|x| x.p99), 2),
            rate,
            baseline,
            vs,
            target,
            result
        );
        let _ = writeln!(t, "{}", line.trim_end());
    }
    row(
        &mut t,
        &format!("sandbox alone @1 {HELLO}"),
        m.hello_p1.n,
        m.hello_p1.failed,
        hello,
        m.hello_p1.runs_per_s(),
        "-",
        "-",
        "(baseline: latency)",
        "",
    );
    row(
        &mut t,
        &format!("sandbox alone @{SLOTS} {TRIVIAL}"),
        m.trivial_p2.n,
        m.trivial_p2.failed,
        Stats::of(&m.trivial_p2.latencies),
        base_rps,
        "-",
        "-",
        "(baseline: throughput)",
        "",
    );
    row(
        &mut t,
        "end to end POST ?wait=30",
        m.e2e.n,
        m.e2e.failed,
        e2e,
        m.e2e.n as f64 / m.e2e.wall.as_secs_f64(),
        &format!("{} ms median", fmt_opt(base_median, 2)),
        &e2e_diff
            .map(|d| format!("{d:+.2} ms"))
            .unwrap_or_else(|| "-".into()),
        &format!("median <= sandbox + {E2E_MARGIN_MS:.0} ms"),
        pass(e2e_ok),
    );
    row(
        &mut t,
        &format!("batch {} x {TRIVIAL}", m.batch.n),
        m.batch.n,
        m.batch.n - usize::try_from(m.batch.succeeded()).map_or(m.batch.n, |s| s.min(m.batch.n)),
        None,
        batch_rps,
        &format!("{base_rps:.1}/s @{SLOTS}"),
        &format!("{:.0}%", batch_share * 100.0),
        &format!(">= {:.0}% of sandbox runs/s @{SLOTS}", BATCH_SHARE * 100.0),
        &if batch_ok {
            "PASS".to_string()
        } else if !batch_all {
            "MISS (failures)".to_string()
        } else {
            "MISS".to_string()
        },
    );
    match &m.get {
        Some(g) => row(
            &mut t,
            "GET /v1/evaluations/{id}",
            g.requests,
            g.bad,
            get_stats,
            g.per_s(),
            "-",
            "-",
            &format!(">= {GET_RPS:.0} req/s"),
            pass(get_ok),
        ),
        None => {
            let _ = writeln!(t, "GET /v1/evaluations/{{id}}: not measured (see failures)");
        }
    }

    // Where the end-to-end time goes.
    let col = |f: fn(&E2eRun) -> Option<f64>| median(&m.e2e.column(f));
    let (queued, processing, inside, rest) = (
        col(|r| r.queued),
        col(|r| r.processing),
        col(|r| r.inside),
        col(|r| r.rest),
    );
    let base_inside = median(&m.hello_p1.inside);
    let _ = writeln!(
        t,
        "\nwhere the end-to-end time goes (medians, ms; server timestamps have 1 ms resolution):"
    );
    let line = |t: &mut String, what: &str, v: Option<f64>| {
        let _ = writeln!(t, "  {what:<70} {:>8}", fmt_opt(v, 2));
    };
    line(
        &mut t,
        "client: POST ?wait=30 until the response is read",
        e2e.map(|x| x.median),
    );
    line(
        &mut t,
        "  server: created -> started (queue, claim by a free slot)",
        queued,
    );
    line(
        &mut t,
        "  server: started -> finished (sandbox run + worker's store writes)",
        processing,
    );
    line(
        &mut t,
        "    of which the runtime process (result wall_ms)",
        inside,
    );
    line(
        &mut t,
        "  the rest: HTTP, insert, waking the waiting request, response",
        rest,
    );
    line(
        &mut t,
        "sandbox alone: Engine::run (bundle, cgroup, runtime, clean-up)",
        base_median,
    );
    line(
        &mut t,
        "  of which the runtime process (wall_ms)",
        base_inside,
    );

    // Batch details.
    let others: Vec<String> = m
        .batch
        .statuses
        .iter()
        .filter(|(k, _)| k.as_str() != "succeeded")
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        t,
        "\nbatch: {} submitted in {:.2} s, all finished after {:.2} s; succeeded {}{}",
        m.batch.n,
        m.batch.submit.as_secs_f64(),
        m.batch.wall.as_secs_f64(),
        m.batch.succeeded(),
        if others.is_empty() {
            String::new()
        } else {
            format!(", {}", others.join(", "))
        }
    );
    let per_run = |cpu: Option<(f64, f64)>, n: usize| {
        cpu.map(|(own, children)| {
            format!(
                "{:.2} ms in the process, {:.2} ms in its runtimes and sandboxes",
                own / n as f64,
                children / n as f64
            )
        })
        .unwrap_or_else(|| "-".into())
    };
    let _ = writeln!(
        t,
        "       CPU per evaluation: server {}",
        per_run(m.batch.server_cpu, m.batch.n)
    );
    let _ = writeln!(
        t,
        "       CPU per run, sandbox alone @{SLOTS}: {}",
        per_run(m.trivial_p2.cpu, m.trivial_p2.n)
    );
    if let Some(g) = &m.get {
        let _ = writeln!(
            t,
            "GET: {} connections, {:.2} s, {} requests; CPU: server {}%, benchmark client {}% (of one core)",
            g.connections,
            g.wall.as_secs_f64(),
            g.requests,
            fmt_opt(g.server_cpu_pct, 0),
            fmt_opt(g.bench_cpu_pct, 0)
        );
    }
    let after_rps = m.trivial_p2_after.runs_per_s();
    let drift = after_rps / base_rps - 1.0;
    let noisy = drift.abs() > MAX_DRIFT;
    let _ = writeln!(
        t,
        "baseline drift: sandbox alone @{SLOTS} {base_rps:.1}/s at the start, {after_rps:.1}/s at the end ({:+.0}%){}",
        drift * 100.0,
        if noisy {
            "\nWARNING: the load changed during the run; the comparisons with the baseline are unreliable. Run again on a quiet machine."
        } else {
            ""
        }
    );
    let nfail = failures.count();
    let _ = writeln!(
        t,
        "\nfailures: {nfail}; timing targets: {} (reported, not asserted)\n",
        if targets_met {
            "all met"
        } else {
            "some missed"
        }
    );

    let batch_json = json!({
        "evaluations": m.batch.n,
        "chunk": CHUNK,
        "submit_s": round2(m.batch.submit.as_secs_f64()),
        "wall_s": round2(m.batch.wall.as_secs_f64()),
        "runs_per_s": round2(batch_rps),
        "statuses": m.batch.statuses,
        "server_cpu_ms_per_evaluation": m.batch.server_cpu.map(|(o, _)| round2(o / m.batch.n as f64)),
        "children_cpu_ms_per_evaluation": m.batch.server_cpu.map(|(_, c)| round2(c / m.batch.n as f64)),
        "share_of_sandbox_p2": round2(batch_share),
        "target": {"min_share_of_sandbox_p2": BATCH_SHARE, "met": batch_ok},
    });
    let get_json = m.get.as_ref().map(|g| {
        json!({
            "connections": g.connections,
            "wall_s": round2(g.wall.as_secs_f64()),
            "requests": g.requests,
            "bad": g.bad,
            "requests_per_s": round2(g.per_s()),
            "latency": get_stats.map(|x| x.json()),
            "server_cpu_pct": g.server_cpu_pct.map(round2),
            "bench_cpu_pct": g.bench_cpu_pct.map(round2),
            "target": {"min_requests_per_s": GET_RPS, "met": get_ok},
        })
    });
    let json = json!({
        "benchmark": "bench-service",
        "quick": args.quick,
        "runtime": runtime.name(),
        "slots": SLOTS,
        "settings": {
            "runs": s.runs,
            "warmup": s.warmup,
            "evaluations": s.evaluations,
            "get_s": s.get_time.as_secs_f64(),
            "connections": s.connections,
        },
        "host": host,
        "sandbox": {
            "hello_p1": {
                "runs": m.hello_p1.n,
                "failures": m.hello_p1.failed,
                "latency": hello.map(|x| x.json()),
                "inside_wall_median_ms": base_inside.map(round2),
                "runs_per_s": round2(m.hello_p1.runs_per_s()),
            },
            "trivial_p2": {
                "runs": m.trivial_p2.n,
                "parallel": m.trivial_p2.parallel,
                "failures": m.trivial_p2.failed,
                "runs_per_s": round2(base_rps),
                "cpu_ms_per_run": m.trivial_p2.cpu.map(|(o, _)| round2(o / m.trivial_p2.n as f64)),
                "children_cpu_ms_per_run": m.trivial_p2.cpu.map(|(_, c)| round2(c / m.trivial_p2.n as f64)),
            },
            "trivial_p2_at_end": {
                "runs": m.trivial_p2_after.n,
                "failures": m.trivial_p2_after.failed,
                "runs_per_s": round2(after_rps),
            },
        },
        "end_to_end": {
            "runs": m.e2e.n,
            "failures": m.e2e.failed,
            "latency": e2e.map(|x| x.json()),
            "minus_sandbox_median_ms": e2e_diff.map(round2),
            "breakdown_median_ms": {
                "queued": queued.map(round2),
                "processing": processing.map(round2),
                "inside_wall": inside.map(round2),
                "rest": rest.map(round2),
            },
            "target": {"max_minus_sandbox_median_ms": E2E_MARGIN_MS, "met": e2e_ok},
        },
        "batch": batch_json,
        "get": get_json,
        "baseline_drift": round2(drift),
        "noisy": noisy,
        "failures": nfail,
        "targets_met": targets_met,
    });
    (t, json)
}
