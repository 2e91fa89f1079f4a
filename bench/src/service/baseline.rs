//! The baseline: the sandbox alone, [`Engine::run`] called directly with the same environment
//! and limits the server gives a submission.

use crate::common::{Failures, ms, short};
use crate::node::cpu_ms;
use anyhow::Result;
use assay_domain::{LimitOverrides, LimitPolicy, Limits, Program, RunStatus};
use assay_sandbox::{CancellationToken, Engine, RunRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The limits a submission without limits gets from the server.
pub(crate) fn default_limits() -> Result<Limits> {
    LimitPolicy::default()
        .resolve(&LimitOverrides::default())
        .map_err(|e| anyhow::anyhow!("default limits: {e}"))
}

/// N runs of one program through the engine with `parallel` runs in flight.
pub(crate) struct SandboxBatch {
    /// Latency of each successful `Engine::run`, ms.
    pub(crate) latencies: Vec<f64>,
    /// The engine's own `wall_ms` of each successful run (runtime start to exit).
    pub(crate) inside: Vec<f64>,
    pub(crate) failed: usize,
    /// The batch's duration (interleaved with other work: the sum of its own runs).
    pub(crate) wall: Duration,
    pub(crate) n: usize,
    pub(crate) parallel: usize,
    /// This process's CPU during the batch, ms: its own (the engine), and its waited-for
    /// children's (runtimes and sandboxed programs).
    pub(crate) cpu: Option<(f64, f64)>,
}

impl SandboxBatch {
    pub(crate) fn new(n: usize, parallel: usize) -> SandboxBatch {
        SandboxBatch {
            latencies: Vec::with_capacity(n),
            inside: Vec::with_capacity(n),
            failed: 0,
            wall: Duration::ZERO,
            n,
            parallel,
            cpu: None,
        }
    }

    pub(crate) fn runs_per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }
}

/// One run; the engine's `wall_ms` when it succeeded with the expected output.
pub(crate) async fn sandbox_once(
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
                output_budget: None,
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

/// `n` runs of `code`, `parallel` at a time.
pub(crate) struct Plan {
    pub(crate) code: &'static str,
    pub(crate) expected: &'static str,
    pub(crate) limits: Limits,
    pub(crate) n: usize,
    pub(crate) parallel: usize,
}

pub(crate) async fn sandbox_batch(
    label: &str,
    engine: &Engine,
    plan: &Plan,
    failures: &Failures,
) -> SandboxBatch {
    let (n, parallel) = (plan.n, plan.parallel);
    eprintln!("{label}: {n} runs of {}, {parallel} at a time", plan.code);
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
        let (code, expected, limits) = (plan.code, plan.expected, plan.limits);
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
    let mut b = SandboxBatch::new(n, parallel);
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
