//! End-to-end latency: `POST /v1/evaluations?wait=30` of `print('hello')`, one at a time,
//! interleaved run by run with the sandbox alone and with the other stores' servers so that all
//! of them see the same load.

use crate::baseline::{SandboxBatch, sandbox_once};
use crate::common::{Failures, ms, short};
use crate::node::Server;
use crate::programs::{HELLO, HELLO_OUT};
use assay_domain::Limits;
use assay_sandbox::Engine;
use serde_json::{Value, json};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Milliseconds since the epoch of an RFC 3339 field of an evaluation.
pub(crate) fn time_field(ev: &Value, field: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(ev[field].as_str()?).ok()?;
    Some(ms(t.duration_since(UNIX_EPOCH).ok()?))
}

/// One `POST /v1/evaluations?wait=30`, with the server's own timestamps.
pub(crate) struct E2eRun {
    id: String,
    pub(crate) total: f64,
    /// created → started: in the queue until a slot claimed it.
    pub(crate) queued: Option<f64>,
    /// started → finished: the sandbox run plus the worker's store writes.
    pub(crate) processing: Option<f64>,
    /// The engine's `wall_ms`: runtime process start to exit.
    pub(crate) inside: Option<f64>,
    /// total − (finished − created): HTTP, submission, waking the waiting request, response.
    pub(crate) rest: Option<f64>,
}

pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

/// `POST ?wait=30` of `code`; the evaluation when it succeeded with `expected` on stdout.
pub(crate) async fn submit_and_wait(
    s: &Server,
    c: &reqwest::Client,
    code: &str,
    expected: &str,
) -> Result<(Value, f64), String> {
    let t = Instant::now();
    let r = s
        .req(c, reqwest::Method::POST, "/v1/evaluations?wait=30")
        .json(&json!({"language": "python", "code": code}))
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
        || ev["result"]["stdout"] != expected
    {
        return Err(format!(
            "{status}, status {}, result {}",
            ev["status"], ev["result"]
        ));
    }
    Ok((ev, total))
}

async fn e2e_once(s: &Server, c: &reqwest::Client) -> Result<E2eRun, String> {
    let (ev, total) = submit_and_wait(s, c, HELLO, HELLO_OUT).await?;
    let (created, started, finished) = (
        time_field(&ev, "created_at"),
        time_field(&ev, "started_at"),
        time_field(&ev, "finished_at"),
    );
    Ok(E2eRun {
        id: ev["id"].as_str().unwrap_or_default().to_string(),
        total,
        queued: started.zip(created).map(|(s, c)| s - c),
        processing: finished.zip(started).map(|(f, s)| f - s),
        inside: ev["result"]["wall_ms"].as_f64(),
        rest: finished.zip(created).map(|(f, c)| total - (f - c)),
    })
}

pub(crate) struct E2e {
    pub(crate) runs: Vec<E2eRun>,
    pub(crate) failed: usize,
    pub(crate) n: usize,
    /// The sum of this server's runs (the others' are interleaved).
    pub(crate) wall: Duration,
    /// After each run, one `GET /v1/evaluations/{id}` of it, alone: the latency of one
    /// authenticated read, ms.
    pub(crate) get_one: Vec<f64>,
}

impl E2e {
    fn new(n: usize) -> E2e {
        E2e {
            runs: Vec::with_capacity(n),
            failed: 0,
            n,
            wall: Duration::ZERO,
            get_one: Vec::with_capacity(n),
        }
    }

    pub(crate) fn column(&self, f: impl Fn(&E2eRun) -> Option<f64>) -> Vec<f64> {
        self.runs.iter().filter_map(f).collect()
    }

    pub(crate) fn per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }

    async fn once(&mut self, s: &Server, c: &reqwest::Client, what: &str, failures: &Failures) {
        let t = Instant::now();
        let run = e2e_once(s, c).await;
        self.wall += t.elapsed();
        match run {
            Ok(r) => {
                let t = Instant::now();
                let path = format!("/v1/evaluations/{}", r.id);
                match s.req(c, reqwest::Method::GET, &path).send().await {
                    Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                        if resp.bytes().await.is_ok() {
                            self.get_one.push(ms(t.elapsed()));
                        }
                    }
                    Ok(resp) => failures.add(format!("{what}: GET {path}: {}", resp.status())),
                    Err(e) => failures.add(format!("{what}: GET {path}: {e}")),
                }
                self.runs.push(r);
            }
            Err(e) => {
                self.failed += 1;
                failures.add(format!("{what}: {e}"));
            }
        }
    }
}

/// `n` rounds, each with one sandbox-alone run of `print('hello')` and one end-to-end run on
/// each server, in an order that rotates from round to round.
pub(crate) async fn interleaved(
    engine: &Engine,
    limits: Limits,
    servers: &[(&str, &Server)],
    n: usize,
    warmup: usize,
    failures: &Failures,
) -> (SandboxBatch, Vec<E2e>) {
    eprintln!(
        "latency: {warmup} warm-up runs each, then {n} rounds of {HELLO}: the sandbox alone and \
         POST ?wait=30 on {}, interleaved",
        servers
            .iter()
            .map(|(l, _)| *l)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let c = client(Duration::from_secs(60));
    for i in 0..warmup {
        if let Err(e) = sandbox_once(engine, HELLO, HELLO_OUT, limits).await {
            failures.add(format!("sandbox warm-up run {i}: {e}"));
        }
        for (label, s) in servers {
            if let Err(e) = e2e_once(s, &c).await {
                failures.add(format!("{label}: end-to-end warm-up {i}: {e}"));
            }
        }
    }
    let mut sandbox = SandboxBatch::new(n, 1);
    let mut e2e: Vec<E2e> = servers.iter().map(|_| E2e::new(n)).collect();
    let sides = servers.len() + 1;
    for i in 0..n {
        for k in 0..sides {
            match (i + k) % sides {
                0 => {
                    let t = Instant::now();
                    match sandbox_once(engine, HELLO, HELLO_OUT, limits).await {
                        Ok(wall) => {
                            sandbox.latencies.push(ms(t.elapsed()));
                            sandbox.inside.push(wall as f64);
                        }
                        Err(e) => {
                            sandbox.failed += 1;
                            failures.add(format!("sandbox alone run {i}: {e}"));
                        }
                    }
                    sandbox.wall += t.elapsed();
                }
                j => {
                    let (label, s) = servers[j - 1];
                    let what = format!("{label}: end-to-end run {i}");
                    e2e[j - 1].once(s, &c, &what, failures).await;
                }
            }
        }
    }
    (sandbox, e2e)
}

/// `n` end-to-end runs on one server (after `warmup` unmeasured ones).
pub(crate) async fn end_to_end(
    label: &str,
    s: &Server,
    n: usize,
    warmup: usize,
    failures: &Failures,
) -> E2e {
    eprintln!("{label}: {warmup} warm-up submissions, then {n} of {HELLO} one at a time");
    let c = client(Duration::from_secs(60));
    for i in 0..warmup {
        if let Err(e) = e2e_once(s, &c).await {
            failures.add(format!("{label}: end-to-end warm-up {i}: {e}"));
        }
    }
    let mut out = E2e::new(n);
    for i in 0..n {
        let what = format!("{label}: end-to-end run {i}");
        out.once(s, &c, &what, failures).await;
    }
    out
}
