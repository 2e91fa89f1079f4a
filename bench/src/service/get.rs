//! Read throughput: `GET /v1/evaluations/{id}` of one finished evaluation over many keep-alive
//! connections, in short slices that alternate between the stores' servers so that each sees
//! the same load.

use crate::common::{Failures, ms, short};
use crate::latency::{client, submit_and_wait};
use crate::node::{Server, cpu_ms, postgres_cpu_ms};
use crate::programs::{TRIVIAL, TRIVIAL_OUT};
use anyhow::{Result, bail};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct GetReport {
    pub(crate) connections: usize,
    pub(crate) requests: usize,
    /// Non-200 answers and transport errors.
    pub(crate) bad: usize,
    pub(crate) latencies: Vec<f64>,
    /// The sum of the slices' durations.
    pub(crate) wall: Duration,
    /// CPU of the server and of this process during the slices, ms.
    pub(crate) server_cpu: Option<f64>,
    pub(crate) bench_cpu: Option<f64>,
    /// Own CPU of the store's PostgreSQL backends during the slices, ms.
    pub(crate) postgres_cpu: Option<f64>,
    first_error: Option<String>,
}

impl GetReport {
    pub(crate) fn per_s(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    /// CPU in % of one core during the load.
    pub(crate) fn server_cpu_pct(&self) -> Option<f64> {
        self.server_cpu.map(|c| c / ms(self.wall) * 100.0)
    }

    pub(crate) fn bench_cpu_pct(&self) -> Option<f64> {
        self.bench_cpu.map(|c| c / ms(self.wall) * 100.0)
    }

    pub(crate) fn postgres_cpu_pct(&self) -> Option<f64> {
        self.postgres_cpu.map(|c| c / ms(self.wall) * 100.0)
    }

    fn add(&mut self, slice: GetReport) {
        self.connections = slice.connections;
        self.requests += slice.requests;
        self.bad += slice.bad;
        self.latencies.extend(slice.latencies);
        let sum = |a: Option<f64>, b: Option<f64>, first: bool| {
            if first {
                b
            } else {
                a.zip(b).map(|(a, b)| a + b)
            }
        };
        let first = self.wall.is_zero();
        self.server_cpu = sum(self.server_cpu, slice.server_cpu, first);
        self.bench_cpu = sum(self.bench_cpu, slice.bench_cpu, first);
        self.postgres_cpu = sum(self.postgres_cpu, slice.postgres_cpu, first);
        self.wall += slice.wall;
        if self.first_error.is_none() {
            self.first_error = slice.first_error;
        }
    }
}

/// A finished, succeeded `print(1)` evaluation on `s`, whose id every GET reads.
pub(crate) async fn sample(s: &Server) -> Result<String> {
    let c = client(Duration::from_secs(60));
    let (ev, _) = submit_and_wait(s, &c, TRIVIAL, TRIVIAL_OUT)
        .await
        .map_err(anyhow::Error::msg)?;
    let id = ev["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no id in {}", short(&ev.to_string())))?
        .to_string();
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
    Ok(id)
}

/// A server to load, the evaluation it reads, and its PostgreSQL database (if any).
pub(crate) struct Target<'a> {
    pub(crate) label: &'a str,
    pub(crate) server: &'a Server,
    pub(crate) id: String,
    pub(crate) pg_db: Option<&'a str>,
}

/// One slice of load on one server.
async fn slice(target: &Target<'_>, connections: usize, time: Duration) -> GetReport {
    let (s, id) = (target.server, &target.id);
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
            let mut lat = Vec::with_capacity(4096);
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
    let pg0 = target.pg_db.and_then(postgres_cpu_ms);
    let start = Instant::now();
    let mut report = GetReport {
        connections,
        ..GetReport::default()
    };
    for t in tasks {
        let (lat, bad, err) = t.await.expect("a GET task panicked");
        report.requests += lat.len();
        report.latencies.extend(lat);
        report.bad += bad;
        if report.first_error.is_none() {
            report.first_error = err;
        }
    }
    report.wall = start.elapsed();
    let delta = |b: Option<(f64, f64)>, a: Option<(f64, f64)>| b.zip(a).map(|(b, a)| a.0 - b.0);
    report.server_cpu = delta(server0, cpu_ms(&pid));
    report.bench_cpu = delta(bench0, cpu_ms(&me));
    report.postgres_cpu = pg0
        .zip(target.pg_db.and_then(postgres_cpu_ms))
        .map(|(b, a)| a - b);
    report
}

/// `slices` slices of `time / slices` on each server, alternating (the order rotates).
pub(crate) async fn interleaved(
    targets: &[Target<'_>],
    connections: usize,
    time: Duration,
    slices: usize,
    failures: &Failures,
) -> Vec<GetReport> {
    let slices = slices.max(1);
    let each = time / u32::try_from(slices).unwrap_or(1);
    eprintln!(
        "GET: one evaluation over {connections} keep-alive connections, {slices} slices of \
         {:.2} s on each of {}, alternating",
        each.as_secs_f64(),
        targets
            .iter()
            .map(|t| t.label)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut out: Vec<GetReport> = targets.iter().map(|_| GetReport::default()).collect();
    for i in 0..slices {
        for k in 0..targets.len() {
            let j = (i + k) % targets.len();
            out[j].add(slice(&targets[j], connections, each).await);
        }
    }
    for (t, r) in targets.iter().zip(&out) {
        if r.bad > 0 {
            failures.add(format!(
                "{}: GET: {} responses were not 200 or failed (first: {})",
                t.label,
                r.bad,
                r.first_error.clone().unwrap_or_default()
            ));
        }
    }
    out
}
