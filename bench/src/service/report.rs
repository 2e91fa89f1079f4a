//! The report: a table for people and one line of JSON, each figure with its baseline and its
//! target. Targets are reported, never asserted.

use crate::common::{Failures, Stats, fmt_opt, median, pass, round2};
use crate::latency::{E2e, E2eRun};
use crate::measured::{Batch, Measured, Settings, StoreResult};
use crate::programs::{CHUNK, HELLO, SLOTS, TRIVIAL};
use assay_sandbox::RuntimeKind;
use serde_json::{Value, json};
use std::fmt::Write;

/// Targets: SQLite's end-to-end median at most this much above the sandbox-alone median, ...
const E2E_MARGIN_MS: f64 = 15.0;
/// ... PostgreSQL's at most this much above SQLite's, ...
const PG_E2E_MARGIN_MS: f64 = 5.0;
/// ... SQLite's one-process batch at least this share of the sandbox alone at parallel 2, ...
const BATCH_SHARE: f64 = 0.8;
/// ... PostgreSQL's batch on worker processes at least this share, ...
const PG_BATCH_SHARE: f64 = 0.9;
/// ... SQLite's GETs at least this many per second, ...
const GET_RPS: f64 = 5000.0;
/// ... and PostgreSQL's at least this share of SQLite's.
const PG_GET_SHARE: f64 = 0.8;
/// When the sandbox-alone throughput measured around the batches varies by more than this
/// share, the load changed during the run and the table says so.
const MAX_DRIFT: f64 = 0.2;

const WHAT: usize = 46;

/// One row of the main table.
struct Row<'a> {
    what: String,
    n: usize,
    fail: usize,
    latency: Option<Stats>,
    rate: f64,
    baseline: String,
    vs: String,
    target: &'a str,
    /// `None`: no target (a reference figure).
    result: Option<bool>,
}

fn write_row(t: &mut String, r: &Row) {
    let line = format!(
        "{:<WHAT$} {:>6} {:>4} {:>9} {:>7} {:>7} {:>10.1} {:>20} {:>9}  {:<36} {}",
        r.what,
        r.n,
        r.fail,
        fmt_opt(r.latency.map(|x| x.median), 2),
        fmt_opt(r.latency.map(|x| x.p90), 2),
        fmt_opt(r.latency.map(|x| x.p99), 2),
        r.rate,
        r.baseline,
        r.vs,
        r.target,
        r.result.map_or("", pass)
    );
    let _ = writeln!(t, "{}", line.trim_end());
}

/// A batch's share of the sandbox alone (the mean of the measurements around it).
fn share(m: &Measured, b: &Batch) -> (f64, f64) {
    let base = (m.baselines[b.before].1.runs_per_s() + m.baselines[b.after].1.runs_per_s()) / 2.0;
    (base, b.report.runs_per_s() / base)
}

struct Verdicts {
    all: bool,
    json: Vec<Value>,
}

impl Verdicts {
    fn add(&mut self, what: String, met: bool, figure: Option<f64>, target: String) {
        self.all &= met;
        self.json.push(json!({
            "what": what, "figure": figure.map(round2), "target": target, "met": met,
        }));
    }
}

/// Builds the table and the JSON document.
pub(crate) fn report(
    m: &Measured,
    s: &Settings,
    quick: bool,
    runtime: RuntimeKind,
    failures: &Failures,
    host: Value,
) -> (String, Value) {
    let mut v = Verdicts {
        all: true,
        json: Vec::new(),
    };
    let hello = Stats::of(&m.hello.latencies);
    let base_median = hello.map(|x| x.median);
    let sqlite = &m.stores[0];
    let sqlite_e2e = Stats::of(&sqlite.e2e.column(|r| Some(r.total)));
    let sqlite_get = sqlite.get.as_ref().map(|g| g.per_s());

    let mut t = String::new();
    let _ = writeln!(
        t,
        "Assay service benchmark: the service against the sandbox alone, PostgreSQL against SQLite ({runtime}, {} CPUs, {}, {})",
        host["cpus"],
        host["python"].as_str().unwrap_or(""),
        if quick { "quick" } else { "full" }
    );
    for st in &m.stores {
        let _ = writeln!(t, "  {}: {}", st.label, st.shown);
    }
    let _ = writeln!(
        t,
        "{} runs per latency batch (warm-up {}), {} evaluations per batch in chunks of {CHUNK}, {} GET connections for {:.0} s per store ({} slices each, alternating)",
        s.runs,
        s.warmup,
        s.evaluations,
        s.connections,
        s.get_time.as_secs_f64(),
        s.get_slices
    );
    let _ = writeln!(
        t,
        "load average (1 min): {} at the start, {} at the end\n",
        fmt_opt(m.load_start, 2),
        fmt_opt(m.load_end, 2)
    );
    let header = format!(
        "{:<WHAT$} {:>6} {:>4} {:>9} {:>7} {:>7} {:>10} {:>20} {:>9}  {:<36} {}",
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

    // The baselines.
    write_row(
        &mut t,
        &Row {
            what: format!("sandbox alone @1 {HELLO}"),
            n: m.hello.n,
            fail: m.hello.failed,
            latency: hello,
            rate: m.hello.runs_per_s(),
            baseline: "-".into(),
            vs: "-".into(),
            target: "(baseline: latency, interleaved)",
            result: None,
        },
    );
    for (i, (when, b)) in m.baselines.iter().enumerate() {
        write_row(
            &mut t,
            &Row {
                what: format!("sandbox alone @{SLOTS} {TRIVIAL} #{}", i + 1),
                n: b.n,
                fail: b.failed,
                latency: Stats::of(&b.latencies),
                rate: b.runs_per_s(),
                baseline: "-".into(),
                vs: "-".into(),
                target: &format!("(baseline: throughput, {when})"),
                result: None,
            },
        );
    }

    // End to end, one process.
    for st in &m.stores {
        let e2e = Stats::of(&st.e2e.column(|r| Some(r.total)));
        let (reference, margin, base_label) = if st.postgres {
            (sqlite_e2e.map(|x| x.median), PG_E2E_MARGIN_MS, "sqlite")
        } else {
            (base_median, E2E_MARGIN_MS, "sandbox")
        };
        let diff = e2e.zip(reference).map(|(e, b)| e.median - b);
        let ok = st.e2e.failed == 0 && diff.is_some_and(|d| d <= margin);
        let target = format!("median <= {base_label} + {margin:.0} ms");
        v.add(
            format!("{}: end to end", st.label),
            ok,
            diff,
            target.clone(),
        );
        write_row(
            &mut t,
            &Row {
                what: format!("{}: end to end POST ?wait=30", st.label),
                n: st.e2e.n,
                fail: st.e2e.failed,
                latency: e2e,
                rate: st.e2e.per_s(),
                baseline: format!("{base_label} {} ms", fmt_opt(reference, 2)),
                vs: diff.map_or_else(|| "-".into(), |d| format!("{d:+.2} ms")),
                target: &target,
                result: Some(ok),
            },
        );
    }
    // GET.
    for st in &m.stores {
        let Some(g) = &st.get else {
            let _ = writeln!(
                t,
                "{}: GET /v1/evaluations/{{id}}: not measured (see failures)",
                st.label
            );
            v.add(format!("{}: GET", st.label), false, None, "measured".into());
            continue;
        };
        let rate = g.per_s();
        let (ok, baseline, vs, target) = if st.postgres {
            let ratio = sqlite_get.map(|b| rate / b);
            (
                g.bad == 0 && ratio.is_some_and(|r| r >= PG_GET_SHARE),
                format!("sqlite {}/s", fmt_opt(sqlite_get, 0)),
                ratio.map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0)),
                format!(">= {:.0}% of sqlite's req/s", PG_GET_SHARE * 100.0),
            )
        } else {
            (
                g.bad == 0 && rate >= GET_RPS,
                "-".into(),
                "-".into(),
                format!(">= {GET_RPS:.0} req/s"),
            )
        };
        v.add(format!("{}: GET", st.label), ok, Some(rate), target.clone());
        write_row(
            &mut t,
            &Row {
                what: format!("{}: GET /v1/evaluations/{{id}}", st.label),
                n: g.requests,
                fail: g.bad,
                latency: Stats::of(&g.latencies),
                rate,
                baseline,
                vs,
                target: &target,
                result: Some(ok),
            },
        );
    }
    // Batches.
    let batches: Vec<(&StoreResult, &Batch)> = m
        .stores
        .iter()
        .flat_map(|st| {
            st.batch_local
                .iter()
                .chain(st.batch_workers.iter())
                .map(move |b| (st, b))
        })
        .collect();
    for (st, b) in &batches {
        let (base, sh) = share(m, b);
        let local = b.topology.starts_with("serve");
        let target_share = match (st.postgres, local) {
            (true, _) => Some(PG_BATCH_SHARE),
            (false, true) => Some(BATCH_SHARE),
            (false, false) => None,
        };
        let all = b.report.all_succeeded();
        let ok = target_share.map(|x| all && sh >= x);
        let target = target_share.map_or_else(
            || "(reference)".to_string(),
            |x| format!(">= {:.0}% of sandbox runs/s @{SLOTS}", x * 100.0),
        );
        if let Some(ok) = ok {
            v.add(
                format!("{}: batch, {}", st.label, b.topology),
                ok,
                Some(sh),
                target.clone(),
            );
        }
        let n = b.report.n;
        write_row(
            &mut t,
            &Row {
                what: format!("{}: batch {n}, {}", st.label, b.topology),
                n,
                fail: n - usize::try_from(b.report.succeeded()).map_or(n, |x| x.min(n)),
                latency: None,
                rate: b.report.runs_per_s(),
                baseline: format!("{base:.1}/s @{SLOTS}"),
                vs: format!("{:.0}%", sh * 100.0),
                target: &target,
                result: ok,
            },
        );
    }
    // End to end across nodes.
    for st in &m.stores {
        let Some(e) = &st.e2e_workers else { continue };
        let stats = Stats::of(&e.column(|r| Some(r.total)));
        let one = Stats::of(&st.e2e.column(|r| Some(r.total))).map(|x| x.median);
        let diff = stats.zip(one).map(|(a, b)| a.median - b);
        write_row(
            &mut t,
            &Row {
                what: format!("{}: end to end, API node + workers", st.label),
                n: e.n,
                fail: e.failed,
                latency: stats,
                rate: e.per_s(),
                baseline: format!("1 process {} ms", fmt_opt(one, 2)),
                vs: diff.map_or_else(|| "-".into(), |d| format!("{d:+.2} ms")),
                target: "(reported)",
                result: None,
            },
        );
    }

    // Live output.
    let _ = writeln!(
        t,
        "\nlive output: delay from print (time.time_ns() in the sandbox) to the SSE client on the API node, ms (reported)"
    );
    let head = format!(
        "  {:<44} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "store, topology", "lines", "replayed", "p50", "p90", "p99", "max"
    );
    let _ = writeln!(t, "{head}");
    for st in &m.stores {
        let rows = [
            (
                format!("{}, one process (serve --slots {SLOTS})", st.label),
                Some(&st.sse_local),
            ),
            (
                format!(
                    "{}, API node + workers ({})",
                    st.label,
                    if st.postgres {
                        "LISTEN/NOTIFY"
                    } else {
                        "polls"
                    }
                ),
                st.sse_workers.as_ref(),
            ),
        ];
        for (what, r) in rows {
            let Some(r) = r else { continue };
            let x = r.stats();
            let _ = writeln!(
                t,
                "  {what:<44} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
                r.delays.len(),
                r.replayed,
                fmt_opt(x.map(|x| x.median), 2),
                fmt_opt(x.map(|x| x.p90), 2),
                fmt_opt(x.map(|x| x.p99), 2),
                fmt_opt(x.map(|x| x.max), 2),
            );
        }
    }

    // Where the end-to-end time goes.
    let mut cols: Vec<(String, &E2e)> = Vec::new();
    for st in &m.stores {
        cols.push((st.label.clone(), &st.e2e));
    }
    for st in &m.stores {
        if let Some(e) = &st.e2e_workers {
            cols.push((format!("{} API+w", st.label), e));
        }
    }
    let _ = writeln!(
        t,
        "\nwhere the end-to-end time goes (medians, ms; server timestamps have 1 ms resolution):"
    );
    let mut head = format!("  {:<62} {:>10}", "", "sandbox");
    for (label, _) in &cols {
        let _ = write!(head, " {label:>16}");
    }
    let _ = writeln!(t, "{head}");
    let line = |t: &mut String, what: &str, sandbox: Option<f64>, f: fn(&E2eRun) -> Option<f64>| {
        let mut l = format!("  {what:<62} {:>10}", fmt_opt(sandbox, 2));
        for (_, e) in &cols {
            let _ = write!(l, " {:>16}", fmt_opt(median(&e.column(f)), 2));
        }
        let _ = writeln!(t, "{l}");
    };
    line(
        &mut t,
        "client: POST ?wait=30 until read (sandbox: Engine::run)",
        base_median,
        |r| Some(r.total),
    );
    line(&mut t, "  created -> started (queue, claim)", None, |r| {
        r.queued
    });
    line(
        &mut t,
        "  started -> finished (sandbox run + worker's store writes)",
        None,
        |r| r.processing,
    );
    line(
        &mut t,
        "    of which the runtime process (result wall_ms)",
        median(&m.hello.inside),
        |r| r.inside,
    );
    line(
        &mut t,
        "  the rest: HTTP, insert, waking the waiting request, response",
        None,
        |r| r.rest,
    );
    let mut l = format!(
        "  {:<62} {:>10}",
        "then GET /v1/evaluations/{id} of it, alone (auth + one read)", "-"
    );
    for (_, e) in &cols {
        let _ = write!(l, " {:>16}", fmt_opt(median(&e.get_one), 2));
    }
    let _ = writeln!(t, "{l}");
    for st in m.stores.iter().filter(|st| st.postgres) {
        let _ = writeln!(
            t,
            "  {}: CPU of its PostgreSQL backends per end-to-end run (idle polling included): {} ms",
            st.label,
            fmt_opt(st.e2e_pg_cpu, 2)
        );
    }

    // Batch details.
    let _ = writeln!(t);
    for (st, b) in &batches {
        let r = &b.report;
        let others: Vec<String> = r
            .statuses
            .iter()
            .filter(|(k, _)| k.as_str() != "succeeded")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let per = |x: f64| x / r.n as f64;
        let mut cpu: Vec<String> = r
            .cpu
            .iter()
            .map(|g| format!("{} {:.2} + {:.2}", g.what, per(g.own), per(g.children)))
            .collect();
        if let Some(p) = r.postgres_cpu {
            cpu.push(format!("postgres backends {:.2}", per(p)));
        }
        if let Some(x) = r.postgres_xacts {
            cpu.push(format!("(~{:.1} transactions)", per(x as f64)));
        }
        let phases = r.phases.as_ref().map_or_else(String::new, |p| {
            format!(
                "\n    slots, ms: started -> finished {} (median; runtime process {}), between runs {:.2} per evaluation (claims, waiting, ramp-up and tail)",
                fmt_opt(p.busy, 2),
                fmt_opt(p.inside, 2),
                p.between
            )
        });
        let _ = writeln!(
            t,
            "batch {}, {}: {} submitted in {:.2} s, all finished after {:.2} s; succeeded {}{}\n    CPU ms per evaluation (own + runtimes and sandboxes): {}; host CPUs busy {}%{phases}",
            st.label,
            b.topology,
            r.n,
            r.submit.as_secs_f64(),
            r.wall.as_secs_f64(),
            r.succeeded(),
            if others.is_empty() {
                String::new()
            } else {
                format!(", {}", others.join(", "))
            },
            cpu.join(", "),
            fmt_opt(r.host_busy.map(|x| x * 100.0), 0)
        );
    }
    for (i, (_, b)) in m.baselines.iter().enumerate() {
        let _ = writeln!(
            t,
            "sandbox alone @{SLOTS} #{}: CPU ms per run (own + runtimes and sandboxes) {}; Engine::run median {} ms (runtime process {})",
            i + 1,
            b.cpu
                .map(|(o, c)| format!("engine {:.2} + {:.2}", o / b.n as f64, c / b.n as f64))
                .unwrap_or_else(|| "-".into()),
            fmt_opt(median(&b.latencies), 2),
            fmt_opt(median(&b.inside), 2),
        );
    }
    for st in &m.stores {
        if let Some(g) = &st.get {
            let _ = writeln!(
                t,
                "GET {}: {} connections, {:.2} s, {} requests; CPU: server {}%, benchmark client {}%{} (of one core)",
                st.label,
                g.connections,
                g.wall.as_secs_f64(),
                g.requests,
                fmt_opt(g.server_cpu_pct(), 0),
                fmt_opt(g.bench_cpu_pct(), 0),
                g.postgres_cpu_pct()
                    .map(|p| format!(", PostgreSQL backends {p:.0}%"))
                    .unwrap_or_default()
            );
        }
    }
    let rates: Vec<f64> = m.baselines.iter().map(|(_, b)| b.runs_per_s()).collect();
    let (lo, hi) = rates.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    let drift = if lo > 0.0 { hi / lo - 1.0 } else { 0.0 };
    let noisy = drift > MAX_DRIFT;
    let _ = writeln!(
        t,
        "baseline drift: sandbox alone @{SLOTS} {} runs/s (max/min {:+.0}%){}",
        rates
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
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
        if v.all { "all met" } else { "some missed" }
    );

    let json = json!({
        "benchmark": "bench-service",
        "quick": quick,
        "runtime": runtime.name(),
        "slots": SLOTS,
        "settings": {
            "runs": s.runs,
            "warmup": s.warmup,
            "evaluations": s.evaluations,
            "get_s": s.get_time.as_secs_f64(),
            "get_slices": s.get_slices,
            "connections": s.connections,
            "sse_lines": s.sse_lines,
            "remote_runs": s.remote_runs,
            "workers": s.workers,
            "worker_slots": s.worker_slots,
        },
        "host": host,
        "sandbox": {
            "hello_p1": {
                "runs": m.hello.n,
                "failures": m.hello.failed,
                "latency": hello.map(|x| x.json()),
                "inside_wall_median_ms": median(&m.hello.inside).map(round2),
            },
            "trivial_p2": m.baselines.iter().map(|(when, b)| json!({
                "when": when,
                "runs": b.n,
                "parallel": b.parallel,
                "failures": b.failed,
                "runs_per_s": round2(b.runs_per_s()),
                "cpu_ms_per_run": b.cpu.map(|(o, _)| round2(o / b.n as f64)),
                "children_cpu_ms_per_run": b.cpu.map(|(_, c)| round2(c / b.n as f64)),
            })).collect::<Vec<_>>(),
        },
        "stores": m.stores.iter().map(|st| store_json(m, st)).collect::<Vec<_>>(),
        "targets": v.json,
        "baseline_drift": round2(drift),
        "noisy": noisy,
        "failures": nfail,
        "targets_met": v.all,
    });
    (t, json)
}

fn e2e_json(e: &E2e) -> Value {
    json!({
        "runs": e.n,
        "get_alone_after_each": Stats::of(&e.get_one).map(|x| x.json()),
        "failures": e.failed,
        "latency": Stats::of(&e.column(|r| Some(r.total))).map(|x| x.json()),
        "breakdown_median_ms": {
            "queued": median(&e.column(|r| r.queued)).map(round2),
            "processing": median(&e.column(|r| r.processing)).map(round2),
            "inside_wall": median(&e.column(|r| r.inside)).map(round2),
            "rest": median(&e.column(|r| r.rest)).map(round2),
        },
    })
}

fn store_json(m: &Measured, st: &StoreResult) -> Value {
    let batch = |b: &Batch| {
        let (base, sh) = share(m, b);
        let mut v = b.report.json();
        v["topology"] = json!(b.topology);
        v["sandbox_p2_runs_per_s"] = json!(round2(base));
        v["share_of_sandbox_p2"] = json!(round2(sh));
        v
    };
    json!({
        "store": st.label,
        "url": st.shown,
        "end_to_end": e2e_json(&st.e2e),
        "end_to_end_postgres_cpu_ms_per_run": st.e2e_pg_cpu.map(round2),
        "get": st.get.as_ref().map(|g| json!({
            "connections": g.connections,
            "wall_s": round2(g.wall.as_secs_f64()),
            "requests": g.requests,
            "bad": g.bad,
            "requests_per_s": round2(g.per_s()),
            "latency": Stats::of(&g.latencies).map(|x| x.json()),
            "server_cpu_pct": g.server_cpu_pct().map(round2),
            "bench_cpu_pct": g.bench_cpu_pct().map(round2),
            "postgres_cpu_pct": g.postgres_cpu_pct().map(round2),
        })),
        "sse_one_process": st.sse_local.json(),
        "batch_one_process": st.batch_local.as_ref().map(batch),
        "batch_workers": st.batch_workers.as_ref().map(batch),
        "end_to_end_workers": st.e2e_workers.as_ref().map(e2e_json),
        "sse_workers": st.sse_workers.as_ref().map(|r| r.json()),
    })
}
