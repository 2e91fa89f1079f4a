//! `bench-sandbox`: what a sandbox costs, against direct execution measured in the same run.
//!
//! One run of this binary measures, on the same machine and under the same load:
//!
//! 1. the baseline: `/usr/bin/python3 -S -c 'print(1)'` spawned directly (no sandbox), N runs one
//!    at a time, then N runs two at a time;
//! 2. the same program through the [`Engine`] for each OCI runtime (runc, crun, runsc), with an
//!    environment whose command is `python3 -S`, so that both sides do the same work;
//! 3. the precision of the wall-clock limit (a busy loop under a 1 s limit) and of cancellation
//!    (a sleeping program cancelled through its token), per runtime.
//!
//! It prints a table (and one line of JSON) with latencies, throughput, the overhead against the
//! baseline and the targets of the issue. Timing targets are reported, never asserted: only runs
//! that did not end as expected make the process exit non-zero.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use assay_domain::{LimitPolicy, Limits, OutputStream, Program, RunResult, RunStatus};
use assay_sandbox::{
    CancellationToken, Engine, EngineConfig, Environment, RunEvent, RunRequest, RuntimeChoice,
    RuntimeKind,
};
use clap::Parser;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

mod common;
use common::{Failures, Stats, command_version, fmt_opt, ms, pass, round2, short};

const PYTHON: &str = "/usr/bin/python3";
/// The program both sides run, and what it must print.
const PROGRAM: &str = "print(1)";
const EXPECTED: &str = "1\n";
/// The wall-clock limit of the timeout-precision runs.
const TIMEOUT_LIMIT_MS: u64 = 1000;
/// How long after the sandbox started the cancellation runs are cancelled (at the earliest; the
/// program must also have said it is running).
const CANCEL_AFTER: Duration = Duration::from_millis(500);
/// Precision target for both the timeout overshoot and the cancellation latency.
const PRECISION_TARGET_MS: f64 = 100.0;
/// How many failures are printed in full (all are counted).
const MAX_PRINTED_FAILURES: usize = 20;

#[derive(Parser, Debug)]
#[command(
    name = "bench-sandbox",
    about = "Sandbox overhead against direct execution, measured in the same run"
)]
struct Args {
    /// Measured runs per mode for direct execution, crun and runc [default: 200, --quick: 20].
    #[arg(long)]
    runs: Option<usize>,
    /// Measured runs per mode for runsc (gVisor) [default: 30, --quick: 5].
    #[arg(long)]
    runsc_runs: Option<usize>,
    /// Runtimes to measure, comma-separated. Without this flag every installed one is measured
    /// (and missing ones are skipped); a runtime named here but not installed is a failure.
    #[arg(long, value_delimiter = ',')]
    runtimes: Option<Vec<RuntimeKind>>,
    /// Runs each of the timeout and the cancellation precision checks [default: 5, --quick: 3].
    #[arg(long)]
    precision_runs: Option<usize>,
    /// Unmeasured warm-up runs before each mode [default: 5, --quick: 2].
    #[arg(long)]
    warmup: Option<usize>,
    /// Few runs: proves the benchmark works (for CI), figures are rough.
    #[arg(long)]
    quick: bool,
    /// Print only the JSON line on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// State directory of the engines (bundles, runtime state).
    #[arg(long, default_value = "/run/assay-bench")]
    state_dir: PathBuf,
}

struct Settings {
    runs: usize,
    runsc_runs: usize,
    precision_runs: usize,
    warmup: usize,
}

impl Args {
    fn settings(&self) -> Settings {
        let (runs, runsc_runs, precision_runs, warmup) = if self.quick {
            (20, 5, 3, 2)
        } else {
            (200, 30, 5, 5)
        };
        Settings {
            runs: self.runs.unwrap_or(runs).max(1),
            runsc_runs: self.runsc_runs.unwrap_or(runsc_runs).max(1),
            precision_runs: self.precision_runs.unwrap_or(precision_runs).max(1),
            warmup: self.warmup.unwrap_or(warmup),
        }
    }
}

/// One batch of N runs at a given parallelism.
struct Batch {
    /// Client-side latency of each successful run (spawn to result), ms.
    latencies: Vec<f64>,
    /// For sandboxed runs: the engine's own `wall_ms` (runtime process start to exit).
    inside: Vec<f64>,
    failed: usize,
    wall: Duration,
    n: usize,
}

impl Batch {
    fn runs_per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `n` calls of `one` with `parallel` workers; each call returns the engine's `wall_ms` (or
/// `None` for direct runs) or a description of what went wrong.
async fn batch<F, Fut>(label: &str, n: usize, parallel: usize, failures: &Failures, one: F) -> Batch
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Option<u64>, String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new((Vec::with_capacity(n), Vec::new(), 0usize)));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..parallel {
        let (next, out, one, failures, label) = (
            next.clone(),
            out.clone(),
            one.clone(),
            failures.clone(),
            label.to_string(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let r = one().await;
                let elapsed = ms(t.elapsed());
                let mut o = out.lock().await;
                match r {
                    Ok(inside) => {
                        o.0.push(elapsed);
                        if let Some(w) = inside {
                            o.1.push(w as f64);
                        }
                    }
                    Err(e) => {
                        o.2 += 1;
                        failures.add(format!("{label} run {i}: {e}"));
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("a benchmark worker panicked");
    }
    let wall = start.elapsed();
    let (latencies, inside, failed) = Arc::try_unwrap(out).expect("workers are done").into_inner();
    Batch {
        latencies,
        inside,
        failed,
        wall,
        n,
    }
}

/// The variables the sandboxed program gets; the direct runs get exactly the same.
fn program_env() -> Vec<(String, String)> {
    Environment::python().env
}

async fn direct_once() -> Result<Option<u64>, String> {
    let out = tokio::process::Command::new(PYTHON)
        .args(["-S", "-c", PROGRAM])
        .env_clear()
        .envs(program_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("spawning {PYTHON}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout != EXPECTED {
        return Err(format!(
            "{}, stdout {stdout:?}, stderr {:?}",
            out.status,
            short(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    Ok(None)
}

fn describe(r: &RunResult) -> String {
    let mut s = format!(
        "status {}, exit {:?}, signal {:?}, wall {} ms, stdout {:?}",
        r.status,
        r.exit_code,
        r.signal,
        r.wall_ms,
        short(&r.stdout)
    );
    if !r.stderr.is_empty() {
        s.push_str(&format!(", stderr {:?}", short(&r.stderr)));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!(", error {:?}", short(e)));
    }
    s
}

fn limits() -> Limits {
    LimitPolicy::default().defaults
}

fn request(code: &str, limits: Limits) -> RunRequest {
    RunRequest {
        program: Program::single(code),
        environment: "python".into(),
        args: vec![],
        stdin: vec![],
        limits,
        retain_output: None,
        output_budget: None,
    }
}

async fn sandboxed_once(engine: Engine) -> Result<Option<u64>, String> {
    let r = engine
        .run(request(PROGRAM, limits()), None, CancellationToken::new())
        .await;
    if r.status != RunStatus::Succeeded || r.stdout != EXPECTED {
        return Err(describe(&r));
    }
    Ok(Some(r.wall_ms))
}

/// One mode (direct or a runtime): warm-up, then N runs at parallel 1 and N at parallel 2.
struct Mode {
    name: String,
    p1: Batch,
    p2: Batch,
}

async fn measure<F, Fut>(name: &str, n: usize, warmup: usize, failures: &Failures, one: F) -> Mode
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Option<u64>, String>> + Send + 'static,
{
    eprintln!("{name}: {warmup} warm-up runs, then {n} runs at parallel 1 and {n} at parallel 2");
    for i in 0..warmup {
        if let Err(e) = one().await {
            failures.add(format!("{name} warm-up run {i}: {e}"));
        }
    }
    let p1 = batch(&format!("{name} parallel 1"), n, 1, failures, one.clone()).await;
    let p2 = batch(&format!("{name} parallel 2"), n, 2, failures, one).await;
    Mode {
        name: name.to_string(),
        p1,
        p2,
    }
}

/// Timeout and cancellation precision of one runtime.
struct Precision {
    /// `wall_ms - limit` of busy loops under the wall-clock limit.
    timeout_overshoot: Vec<f64>,
    /// From `cancel()` to `run()` returning.
    cancel_latency: Vec<f64>,
}

async fn timeout_once(engine: &Engine) -> Result<f64, String> {
    let limits = Limits {
        wall_time_ms: TIMEOUT_LIMIT_MS,
        ..limits()
    };
    let r = engine
        .run(
            request("while True:\n    pass\n", limits),
            None,
            CancellationToken::new(),
        )
        .await;
    if r.status != RunStatus::TimedOut {
        return Err(format!("expected timed_out: {}", describe(&r)));
    }
    Ok(r.wall_ms as f64 - TIMEOUT_LIMIT_MS as f64)
}

async fn cancel_once(engine: &Engine) -> Result<f64, String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let run = {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        let req = request(
            "import time\nprint(\"ready\", flush=True)\ntime.sleep(30)\n",
            limits(),
        );
        tokio::spawn(async move { engine.run(req, Some(tx), cancel).await })
    };
    // Wait for the program to say it runs (and at least CANCEL_AFTER past the start).
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        let mut started = None;
        let mut stdout = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                RunEvent::Started { .. } => started = Some(Instant::now()),
                RunEvent::Output {
                    stream: OutputStream::Stdout,
                    data,
                } => {
                    stdout.extend_from_slice(&data);
                    if stdout.starts_with(b"ready\n") {
                        return started;
                    }
                }
                RunEvent::Output { .. } => {}
            }
        }
        None
    })
    .await;
    let started = match waited {
        Ok(Some(started)) => started,
        Ok(None) => {
            // The run ended (or never reported its start) before the program was ready.
            let r = run.await.map_err(|e| format!("run task: {e}"))?;
            return Err(format!("the program never became ready: {}", describe(&r)));
        }
        Err(_) => {
            cancel.cancel();
            let r = run.await.map_err(|e| format!("run task: {e}"))?;
            return Err(format!("no \"ready\" after 20 s: {}", describe(&r)));
        }
    };
    tokio::time::sleep_until((started + CANCEL_AFTER).into()).await;
    let t = Instant::now();
    cancel.cancel();
    let r = run.await.map_err(|e| format!("run task: {e}"))?;
    let latency = ms(t.elapsed());
    if r.status != RunStatus::Cancelled {
        return Err(format!("expected cancelled: {}", describe(&r)));
    }
    Ok(latency)
}

async fn precision(engine: &Engine, name: &str, runs: usize, failures: &Failures) -> Precision {
    eprintln!(
        "{name}: {runs} timeout runs (limit {TIMEOUT_LIMIT_MS} ms) and {runs} cancellation runs"
    );
    let mut p = Precision {
        timeout_overshoot: Vec::new(),
        cancel_latency: Vec::new(),
    };
    for i in 0..runs {
        match timeout_once(engine).await {
            Ok(v) => p.timeout_overshoot.push(v),
            Err(e) => failures.add(format!("{name} timeout run {i}: {e}")),
        }
    }
    for i in 0..runs {
        match cancel_once(engine).await {
            Ok(v) => p.cancel_latency.push(v),
            Err(e) => failures.add(format!("{name} cancellation run {i}: {e}")),
        }
    }
    p
}

/// The goals for one runtime at `print(1)`.
#[derive(Clone, Copy)]
struct Target {
    max_overhead_ms: Option<f64>,
    min_runs_per_s_p2: Option<f64>,
}

impl Target {
    fn of(kind: RuntimeKind) -> Target {
        match kind {
            RuntimeKind::Crun => Target {
                max_overhead_ms: Some(20.0),
                min_runs_per_s_p2: Some(80.0),
            },
            RuntimeKind::Runc => Target {
                max_overhead_ms: Some(50.0),
                min_runs_per_s_p2: Some(30.0),
            },
            // gVisor: it just has to work.
            RuntimeKind::Runsc => Target {
                max_overhead_ms: None,
                min_runs_per_s_p2: None,
            },
        }
    }

    fn describe(&self) -> String {
        match (self.max_overhead_ms, self.min_runs_per_s_p2) {
            (Some(o), Some(t)) => format!("overhead <= {o:.0} ms, >= {t:.0}/s @2"),
            _ => "runs work".into(),
        }
    }
}

/// Figures of one runtime against the baseline.
struct RuntimeReport {
    kind: RuntimeKind,
    mode: Mode,
    precision: Precision,
}

fn lat(b: &Batch) -> Option<Stats> {
    Stats::of(&b.latencies)
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main() -> Result<ExitCode> {
    let args = Args::parse();
    let s = args.settings();
    let failures = Failures::default();
    if !std::path::Path::new(PYTHON).is_file() {
        bail!("{PYTHON} not found");
    }

    // Which runtimes: the named ones (missing = failure), or every installed one.
    let mut kinds = Vec::new();
    let mut skipped = Vec::new();
    match &args.runtimes {
        Some(list) => {
            for &k in list {
                if kinds.contains(&k) {
                    continue;
                }
                if k.find().is_some() {
                    kinds.push(k);
                } else {
                    failures.add(format!("runtime {k} was asked for but is not installed"));
                }
            }
        }
        None => {
            for k in [RuntimeKind::Runc, RuntimeKind::Crun, RuntimeKind::Runsc] {
                if k.find().is_some() {
                    kinds.push(k);
                } else {
                    skipped.push(k);
                }
            }
        }
    }
    for k in &skipped {
        eprintln!("{k}: not installed, skipped");
    }

    // The baseline first, then each runtime.
    let direct = measure("direct", s.runs, s.warmup, &failures, direct_once).await;

    let mut environment = Environment::python();
    environment.command = vec![PYTHON.into(), "-S".into()];
    let mut reports = Vec::new();
    for kind in kinds {
        let engine = Engine::new(EngineConfig {
            runtime: RuntimeChoice::Exactly(kind),
            state_dir: args.state_dir.clone(),
            cgroup_parent: "assay-bench".into(),
            environments: vec![environment.clone()],
            ..EngineConfig::default()
        })
        .await
        .with_context(|| format!("starting an engine with {kind}"))?;
        let n = if kind == RuntimeKind::Runsc {
            s.runsc_runs
        } else {
            s.runs
        };
        let e = engine.clone();
        let mode = measure(kind.name(), n, s.warmup, &failures, move || {
            sandboxed_once(e.clone())
        })
        .await;
        let precision = precision(&engine, kind.name(), s.precision_runs, &failures).await;
        reports.push(RuntimeReport {
            kind,
            mode,
            precision,
        });
    }

    let versions = json!({
        "python": command_version(PYTHON, &["--version"]),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runtimes": reports.iter().map(|r| {
            let path = r.kind.find().map(|p| p.display().to_string()).unwrap_or_default();
            (r.kind.name().to_string(), Value::String(command_version(&path, &["--version"])))
        }).collect::<serde_json::Map<_, _>>(),
    });

    let (table, json) = report(&direct, &reports, &s, &args, &failures, versions);
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
        eprintln!("\n{} run(s) did not end as expected:", all.len());
        for f in all.iter().take(MAX_PRINTED_FAILURES) {
            eprintln!("  - {f}");
        }
        if all.len() > MAX_PRINTED_FAILURES {
            eprintln!("  … and {} more", all.len() - MAX_PRINTED_FAILURES);
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Builds the table and the JSON document.
fn report(
    direct: &Mode,
    reports: &[RuntimeReport],
    s: &Settings,
    args: &Args,
    failures: &Failures,
    versions: Value,
) -> (String, Value) {
    use std::fmt::Write;
    let base = lat(&direct.p1);
    let base_median = base.map(|b| b.median);
    let base_tput_p1 = direct.p1.runs_per_s();
    let base_tput_p2 = direct.p2.runs_per_s();

    let mut t = String::new();
    let _ = writeln!(
        t,
        "Assay sandbox benchmark: `print(1)` under python3 -S, direct vs. sandboxed ({} CPUs, {}, {})",
        versions["cpus"],
        versions["python"].as_str().unwrap_or(""),
        if args.quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        t,
        "runs per mode: {} (runsc {}), warm-up {}, each mode at parallel 1 then parallel 2\n",
        s.runs, s.runsc_runs, s.warmup
    );
    let header = format!(
        "{:<7} {:>5} {:>4} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>11} {:>11}  {:<30} {}",
        "mode",
        "runs",
        "fail",
        "median ms",
        "p90 ms",
        "inside ms",
        "runs/s @1",
        "runs/s @2",
        "overhead",
        "median x",
        "runs/s @1 x",
        "runs/s @2 x",
        "target",
        "result"
    );
    let _ = writeln!(t, "{}", header.trim_end());
    let _ = writeln!(t, "{}", "-".repeat(header.trim_end().chars().count()));
    let row = |t: &mut String,
               m: &Mode,
               inside: Option<f64>,
               overhead: Option<f64>,
               ratios: (Option<f64>, Option<f64>, Option<f64>),
               target: &str,
               result: &str| {
        let l = lat(&m.p1);
        let line = format!(
            "{:<7} {:>5} {:>4} {:>9} {:>7} {:>9} {:>9.1} {:>9.1} {:>8} {:>8} {:>11} {:>11}  {:<30} {}",
            m.name,
            m.p1.n,
            m.p1.failed + m.p2.failed,
            fmt_opt(l.map(|x| x.median), 1),
            fmt_opt(l.map(|x| x.p90), 1),
            fmt_opt(inside, 1),
            m.p1.runs_per_s(),
            m.p2.runs_per_s(),
            fmt_opt(overhead, 1),
            fmt_opt(ratios.0, 2),
            fmt_opt(ratios.1, 2),
            fmt_opt(ratios.2, 2),
            target,
            result
        );
        let _ = writeln!(t, "{}", line.trim_end());
    };
    row(
        &mut t,
        direct,
        None,
        None,
        (Some(1.0), Some(1.0), Some(1.0)),
        "(baseline)",
        "",
    );

    let mut runtimes_json = Vec::new();
    let mut targets_met = true;
    for r in reports {
        let m = &r.mode;
        let l = lat(&m.p1);
        let inside = Stats::of(&m.p1.inside).map(|x| x.median);
        let overhead = l.zip(base_median).map(|(l, b)| l.median - b);
        let median_ratio = l.zip(base_median).map(|(l, b)| l.median / b);
        let tput1_ratio = m.p1.runs_per_s() / base_tput_p1;
        let tput2_ratio = m.p2.runs_per_s() / base_tput_p2;
        let target = Target::of(r.kind);
        let failed = m.p1.failed + m.p2.failed;
        let overhead_ok = match target.max_overhead_ms {
            Some(max) => overhead.is_some_and(|o| o <= max),
            None => true,
        };
        let tput_ok = match target.min_runs_per_s_p2 {
            Some(min) => m.p2.runs_per_s() >= min && failed == 0,
            None => true,
        };
        let works = failed == 0 && l.is_some();
        let met = overhead_ok && tput_ok && works;
        targets_met &= met;
        let result = if met {
            "PASS".to_string()
        } else {
            let mut why = Vec::new();
            if !works {
                why.push("failures");
            }
            if !overhead_ok {
                why.push("overhead");
            }
            if !tput_ok {
                why.push("throughput");
            }
            format!("MISS ({})", why.join(", "))
        };
        row(
            &mut t,
            m,
            inside,
            overhead,
            (median_ratio, Some(tput1_ratio), Some(tput2_ratio)),
            &target.describe(),
            &result,
        );
        runtimes_json.push((
            r,
            json!({
                "runtime": r.kind.name(),
                "runs": m.p1.n,
                "failures": failed,
                "latency_p1": l.map(|x| x.json()),
                "latency_p2": lat(&m.p2).map(|x| x.json()),
                "inside_wall_median_ms": inside.map(round2),
                "runs_per_s_p1": round2(m.p1.runs_per_s()),
                "runs_per_s_p2": round2(m.p2.runs_per_s()),
                "overhead_ms": overhead.map(round2),
                "median_ratio": median_ratio.map(round2),
                "throughput_ratio_p1": round2(tput1_ratio),
                "throughput_ratio_p2": round2(tput2_ratio),
                "target": {
                    "max_overhead_ms": target.max_overhead_ms,
                    "min_runs_per_s_p2": target.min_runs_per_s_p2,
                    "overhead_met": overhead_ok,
                    "throughput_met": tput_ok,
                    "met": met,
                },
            }),
        ));
    }

    let _ = writeln!(
        t,
        "\nmedian/p90: per-run latency at parallel 1 (spawn to result, incl. bundle set-up and clean-up);\n\
         inside: median of the engine's wall_ms (runtime process start to exit); runs/s @k: N / wall time of\n\
         the batch of N runs, k at a time; overhead: median - direct median; x: ratio to direct execution\n\
         (median x > 1 is slower, runs/s x < 1 is slower)."
    );

    let _ = writeln!(
        t,
        "\nprecision ({} runs each; target: max <= {PRECISION_TARGET_MS:.0} ms)",
        s.precision_runs
    );
    let header = format!(
        "{:<7} {:>28} {:>28}  {}",
        "runtime", "timeout overshoot ms med/max", "cancel latency ms med/max", "result"
    );
    let _ = writeln!(t, "{header}");
    let _ = writeln!(t, "{}", "-".repeat(header.chars().count()));
    let mut out_runtimes = Vec::new();
    for (r, mut j) in runtimes_json {
        let to = Stats::of(&r.precision.timeout_overshoot);
        let ca = Stats::of(&r.precision.cancel_latency);
        let complete = |v: &Vec<f64>| v.len() == s.precision_runs;
        let to_ok = to.is_some_and(|x| x.max <= PRECISION_TARGET_MS)
            && complete(&r.precision.timeout_overshoot);
        let ca_ok = ca.is_some_and(|x| x.max <= PRECISION_TARGET_MS)
            && complete(&r.precision.cancel_latency);
        targets_met &= to_ok && ca_ok;
        let pair = |x: Option<Stats>| {
            x.map(|x| format!("{:.1} / {:.1}", x.median, x.max))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            t,
            "{:<7} {:>28} {:>28}  timeout {}, cancel {}",
            r.kind.name(),
            pair(to),
            pair(ca),
            pass(to_ok),
            pass(ca_ok)
        );
        j["timeout_overshoot"] = json!({
            "limit_ms": TIMEOUT_LIMIT_MS,
            "stats": to.map(|x| x.json()),
            "target_max_ms": PRECISION_TARGET_MS,
            "met": to_ok,
        });
        j["cancel_latency"] = json!({
            "stats": ca.map(|x| x.json()),
            "target_max_ms": PRECISION_TARGET_MS,
            "met": ca_ok,
        });
        out_runtimes.push(j);
    }
    let nfail = failures.count();
    let _ = writeln!(
        t,
        "\nfailed runs: {nfail}; timing targets: {} (reported, not asserted)\n",
        if targets_met {
            "all met"
        } else {
            "some missed"
        }
    );

    let json = json!({
        "benchmark": "bench-sandbox",
        "program": PROGRAM,
        "quick": args.quick,
        "settings": {"runs": s.runs, "runsc_runs": s.runsc_runs, "precision_runs": s.precision_runs, "warmup": s.warmup},
        "host": versions,
        "direct": {
            "runs": direct.p1.n,
            "failures": direct.p1.failed + direct.p2.failed,
            "latency_p1": base.map(|x| x.json()),
            "latency_p2": lat(&direct.p2).map(|x| x.json()),
            "runs_per_s_p1": round2(base_tput_p1),
            "runs_per_s_p2": round2(base_tput_p2),
        },
        "runtimes": out_runtimes,
        "failures": nfail,
        "targets_met": targets_met,
    });
    (t, json)
}
