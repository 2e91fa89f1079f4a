//! Batch throughput: thousands of `print(1)` through `POST /v1/evaluations/batch`, timed from
//! the first POST until `GET /v1/queue` shows them all finished, with the CPU each process of
//! the topology (and the PostgreSQL server, and the host as a whole) used meanwhile.

use crate::common::{Failures, median, ms, short};
use crate::latency::time_field;
use crate::node::{Server, busy_share, cpu_ms_sum, host_jiffies, postgres_cpu_ms};
use crate::programs::{CHUNK, TRIVIAL};
use crate::stores::BenchStore;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the batch phase asks `/v1/queue` whether everything finished.
const POLL: Duration = Duration::from_millis(100);
/// The batch phase gives up when no evaluation finished for this long.
const STALL: Duration = Duration::from_secs(60);

/// A group of processes whose CPU is reported together (the API node, the workers).
pub(crate) struct Group {
    pub(crate) what: &'static str,
    pub(crate) pids: Vec<String>,
}

pub(crate) struct GroupCpu {
    pub(crate) what: &'static str,
    /// ms: the processes' own, and their waited-for children's (runtimes, sandboxed programs).
    pub(crate) own: f64,
    pub(crate) children: f64,
}

pub(crate) struct BatchReport {
    pub(crate) n: usize,
    /// From the first batch POST until `/v1/queue` showed all of them finished.
    pub(crate) wall: Duration,
    /// Time spent in the batch POSTs (the workers already run meanwhile).
    pub(crate) submit: Duration,
    /// Evaluations that ended in each status (counts after − counts before).
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) cpu: Vec<GroupCpu>,
    /// Own CPU of the store's PostgreSQL backends during the phase, ms (PostgreSQL stores).
    pub(crate) postgres_cpu: Option<f64>,
    /// Transactions committed or rolled back in the store's database during the phase
    /// (PostgreSQL's statistics, flushed up to a second late: approximate).
    pub(crate) postgres_xacts: Option<i64>,
    /// The share of the host's CPUs that was busy during the phase.
    pub(crate) host_busy: Option<f64>,
    /// Where the slots' time went.
    pub(crate) phases: Option<Phases>,
}

/// Where the slots' time went during a batch, from the evaluations' own timestamps (1 ms
/// resolution).
pub(crate) struct Phases {
    /// started → finished, median ms: the sandbox run and the worker's store writes.
    pub(crate) busy: Option<f64>,
    /// Of which the runtime process (the result's `wall_ms`), median ms.
    pub(crate) inside: Option<f64>,
    /// The slots' time outside started → finished, per evaluation, ms: claims, waiting for
    /// work, the first claims and the last runs.
    pub(crate) between: f64,
}

impl BatchReport {
    pub(crate) fn runs_per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }

    pub(crate) fn succeeded(&self) -> u64 {
        self.statuses.get("succeeded").copied().unwrap_or(0)
    }

    pub(crate) fn all_succeeded(&self) -> bool {
        self.succeeded() == self.n as u64
    }

    pub(crate) fn json(&self) -> Value {
        let per = |x: f64| crate::common::round2(x / self.n as f64);
        json!({
            "evaluations": self.n,
            "chunk": CHUNK,
            "submit_s": crate::common::round2(self.submit.as_secs_f64()),
            "wall_s": crate::common::round2(self.wall.as_secs_f64()),
            "runs_per_s": crate::common::round2(self.runs_per_s()),
            "statuses": self.statuses,
            "cpu_ms_per_evaluation": self.cpu.iter().map(|g| (g.what.to_string(), json!({
                "own": per(g.own),
                "children": per(g.children),
            }))).collect::<serde_json::Map<String, Value>>(),
            "postgres_cpu_ms_per_evaluation": self.postgres_cpu.map(per),
            "postgres_transactions_per_evaluation": self.postgres_xacts.map(|x| per(x as f64)),
            "host_busy": self.host_busy.map(crate::common::round2),
            "slot_phases_ms": self.phases.as_ref().map(|p| json!({
                "started_to_finished_median": p.busy.map(crate::common::round2),
                "runtime_process_median": p.inside.map(crate::common::round2),
                "between_runs_per_evaluation": crate::common::round2(p.between),
            })),
        })
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

pub(crate) async fn batch_throughput(
    label: &str,
    api: &Server,
    groups: &[Group],
    store: &BenchStore,
    slots: usize,
    n: usize,
    failures: &Failures,
) -> Result<BatchReport> {
    eprintln!(
        "{label}: {n} evaluations of {TRIVIAL} in chunks of {CHUNK}, then wait until all finished"
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let before = api.counts(&c).await?;
    // A label of this batch's own, to list its evaluations afterwards.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let item = json!({"language": "python", "code": TRIVIAL, "labels": {"bench": tag}});
    let cpu_before: Vec<_> = groups.iter().map(|g| cpu_ms_sum(&g.pids)).collect();
    let pg_before = store.pg_name().and_then(postgres_cpu_ms);
    let xacts_before = store.pg_xacts().await;
    let host_before = host_jiffies();
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = CHUNK.min(n - sent);
        let body = json!({"items": vec![item.clone(); k]});
        let r = api
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
        sent += k;
    }
    let submit = start.elapsed();
    eprintln!(
        "{label}: {n} submitted in {:.1} s; waiting for them to finish",
        submit.as_secs_f64()
    );
    let target = finished(&before) + n as u64;
    let (mut last_done, mut last_progress) = (0, Instant::now());
    let mut errors = 0;
    let after = loop {
        tokio::time::sleep(POLL).await;
        let counts = match api.counts(&c).await {
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
                "{label}: no evaluation finished for {} s; counts {counts:?}",
                STALL.as_secs()
            ));
            break counts;
        }
    };
    let wall = start.elapsed();
    let cpu = groups
        .iter()
        .zip(cpu_before)
        .filter_map(|(g, b)| {
            let (b, a) = b.zip(cpu_ms_sum(&g.pids))?;
            Some(GroupCpu {
                what: g.what,
                own: a.0 - b.0,
                children: a.1 - b.1,
            })
        })
        .collect();
    let postgres_cpu = pg_before
        .zip(store.pg_name().and_then(postgres_cpu_ms))
        .map(|(b, a)| a - b);
    let postgres_xacts = xacts_before.zip(store.pg_xacts().await).map(|(b, a)| a - b);
    let host_busy = busy_share(host_before, host_jiffies());
    let statuses: BTreeMap<String, u64> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0).min(*v)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let phases = match phases(api, &c, &tag, slots, wall).await {
        Ok(p) => Some(p),
        Err(e) => {
            failures.add(format!("{label}: listing the batch's evaluations: {e:#}"));
            None
        }
    };
    let report = BatchReport {
        n,
        wall,
        submit,
        statuses,
        cpu,
        postgres_cpu,
        postgres_xacts,
        host_busy,
        phases,
    };
    if !report.all_succeeded() {
        failures.add(format!(
            "{label}: {} of {n} evaluations succeeded; new evaluations by status: {:?}",
            report.succeeded(),
            report.statuses
        ));
    }
    Ok(report)
}

/// Lists the batch's evaluations (`GET /v1/evaluations?label=bench=TAG`, page by page) and
/// splits the slots' time.
async fn phases(
    api: &Server,
    c: &reqwest::Client,
    tag: &str,
    slots: usize,
    wall: Duration,
) -> Result<Phases> {
    let (mut busy, mut inside) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/evaluations?label=bench%3D{tag}&limit=1000");
        if let Some(cur) = &cursor {
            path.push_str("&cursor=");
            path.push_str(cur);
        }
        let r = api.req(c, reqwest::Method::GET, &path).send().await?;
        let status = r.status();
        let page: Value = r.json().await?;
        if status != reqwest::StatusCode::OK {
            bail!("GET {path}: {status}: {}", short(&page.to_string()));
        }
        for ev in page["items"].as_array().into_iter().flatten() {
            let started = time_field(ev, "started_at");
            let finished = time_field(ev, "finished_at");
            if let Some((s, f)) = started.zip(finished) {
                busy.push(f - s);
            }
            if let Some(w) = ev["result"]["wall_ms"].as_f64() {
                inside.push(w);
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    if busy.is_empty() {
        bail!("no finished evaluation carries the batch's label");
    }
    let total: f64 = busy.iter().sum();
    Ok(Phases {
        busy: median(&busy),
        inside: median(&inside),
        between: (slots as f64 * ms(wall) - total) / busy.len() as f64,
    })
}
