//! What the commands print: summary lines, the readable view of one evaluation, tables, the
//! batch summary, the note about a new key, and the exit status an evaluation's end means.
//! Pure functions of the API's types (tested as such), plus the writers they print through.

use anyhow::Result;
use assay_api::evaluation::{EvaluationSummary, EvaluationView, LimitsView, RunResultView};
use assay_api::keys::NewKeyView;
use assay_api::time::{parse_time, rfc3339};
use assay_domain::{EvaluationStatus, format_size};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

pub fn out_write(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

pub fn err_write(bytes: &[u8]) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(bytes)?;
    err.flush()
}

/// Pretty JSON and a newline on stdout.
pub fn print_json(v: &impl Serialize) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    out_write(s.as_bytes())?;
    Ok(())
}

/// One JSON object on one line of stdout (JSON Lines, `assay run --json`).
pub fn print_json_line(v: &impl Serialize) -> Result<()> {
    let mut s = serde_json::to_string(v)?;
    s.push('\n');
    out_write(s.as_bytes())?;
    Ok(())
}

/// Exit status for a finished evaluation: 0 succeeded; 3 the platform failed (errored, dead);
/// 1 anything else.
pub fn exit_code_for(status: EvaluationStatus) -> u8 {
    match status {
        EvaluationStatus::Succeeded => 0,
        EvaluationStatus::Errored | EvaluationStatus::Dead => 3,
        _ => 1,
    }
}

/// ` · exit 0 · wall 27 ms · cpu 13 ms · peak 3560KiB · crun`, and the signal if one ended it.
fn run_figures(r: &RunResultView) -> String {
    let mut s = format!(
        " · exit {} · wall {} ms · cpu {} ms · peak {}",
        r.exit_code.map_or("-".into(), |c| c.to_string()),
        r.wall_ms,
        r.cpu_ms,
        format_size(r.peak_memory_bytes),
    );
    if !r.runtime.is_empty() {
        s.push_str(&format!(" · {}", r.runtime));
    }
    if let Some(sig) = r.signal {
        s.push_str(&format!(" · signal {sig}"));
    }
    s
}

/// The line `assay run` prints after a run: `── STATUS` and the run's figures.
pub fn summary_line(status: &str, r: Option<&RunResultView>) -> String {
    let mut line = format!("── {status}");
    if let Some(r) = r {
        line.push_str(&run_figures(r));
        if r.stdout_truncated || r.stderr_truncated {
            line.push_str(" · output truncated");
        }
    }
    line
}

/// [`summary_line`] of an evaluation, with its attempts when there was more than one.
pub fn evaluation_summary(e: &EvaluationView) -> String {
    let mut line = summary_line(e.status.as_str(), e.result.as_ref());
    if e.attempts > 1 {
        line.push_str(&format!(" · attempt {} of {}", e.attempts, e.max_attempts));
    }
    line
}

/// The error of an evaluation worth showing: the run's platform error, else the evaluation's.
pub fn error_text(e: &EvaluationView) -> Option<&str> {
    e.result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .or(e.error.as_deref())
        .filter(|s| !s.is_empty())
}

/// A summary line and, under it, the error if there is one (stderr).
pub fn print_footer(summary: &str, error: Option<&str>) -> Result<()> {
    let mut s = format!("{summary}\n");
    if let Some(err) = error {
        s.push_str(&format!("   error: {err}\n"));
    }
    err_write(s.as_bytes())?;
    Ok(())
}

/// Like `assay run`: the program's stdout and stderr, then the summary (and error) on stderr.
pub fn print_result(e: &EvaluationView, with_output: bool) -> Result<()> {
    if with_output && let Some(r) = &e.result {
        out_write(r.stdout.as_bytes())?;
        err_write(r.stderr.as_bytes())?;
    }
    print_footer(&evaluation_summary(e), error_text(e))
}

/// The new key alone on stdout; what it is, and that it is shown only now, on stderr.
pub fn announce_key(k: &NewKeyView) -> Result<()> {
    out_write(format!("{}\n", k.key).as_bytes())?;
    let expires = k
        .expires_at
        .as_deref()
        .map_or("never".to_string(), |t| format!("{} UTC", short_time(t)));
    err_write(
        format!(
            "created key {} for tenant {} (role {}, name {:?}, expires {expires})\n\
             This is the only time the key is shown: it is stored hashed and cannot be \
             retrieved later. Keep it somewhere safe.\n",
            k.id, k.tenant, k.role, k.name
        )
        .as_bytes(),
    )?;
    Ok(())
}

/// Millisecond durations as `3s` or `250ms`.
fn format_ms(ms: u64) -> String {
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn format_limits(l: &LimitsView) -> String {
    [
        format!("wall_time {}", format_ms(l.wall_time_ms)),
        format!("cpu_time {}", format_ms(l.cpu_time_ms)),
        format!("memory {}", format_size(l.memory_bytes)),
        format!("pids {}", l.pids),
        format!("output {}", format_size(l.output_bytes)),
        format!("tmpfs {}", format_size(l.tmpfs_bytes)),
        format!("open_files {}", l.open_files),
        format!("file_size {}", format_size(l.file_size_bytes)),
        format!("cpu {}m", l.cpu_millicores),
    ]
    .join(" · ")
}

/// An API time for a table: `2025-01-02 03:04:05` (UTC), or as given if it does not parse.
pub fn short_time(s: &str) -> String {
    parse_time(s)
        .map(rfc3339)
        .and_then(|t| t.get(..19).map(|t| t.replace('T', " ")))
        .unwrap_or_else(|| s.to_string())
}

fn millis_between(a: &str, b: &str) -> Option<i64> {
    let d = parse_time(b)? - parse_time(a)?;
    (d >= 0).then_some(d)
}

/// The first `max` lines of `text`, and how many lines were left out.
fn excerpt(text: &str, max: usize) -> (Vec<&str>, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let shown = lines.len().min(max);
    (lines[..shown].to_vec(), lines.len() - shown)
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `assay get`: a readable view.
pub fn render_evaluation(e: &EvaluationView) -> String {
    fn row(s: &mut String, name: &str, value: String) {
        s.push_str(&format!("{name:<10} {value}\n"));
    }
    let mut s = String::new();
    row(&mut s, "id", e.id.clone());
    let mut status = e.status.to_string();
    if e.cancel_requested && !e.status.is_terminal() {
        status.push_str(" (cancel requested)");
    }
    row(&mut s, "status", status);
    row(
        &mut s,
        "program",
        format!("{} · entrypoint {}", e.language.as_str(), e.entrypoint),
    );
    row(&mut s, "priority", e.priority.to_string());
    if !e.labels.is_empty() {
        row(&mut s, "labels", labels_text(&e.labels));
    }
    row(&mut s, "created", short_time(&e.created_at));
    if let Some(st) = &e.started_at {
        let waited = millis_between(&e.created_at, st)
            .map(|ms| format!("  (queued {ms} ms)"))
            .unwrap_or_default();
        row(&mut s, "started", format!("{}{waited}", short_time(st)));
    }
    if let Some(f) = &e.finished_at {
        let took = e
            .started_at
            .as_deref()
            .and_then(|st| millis_between(st, f))
            .map(|ms| format!("  (ran {ms} ms)"))
            .unwrap_or_default();
        row(&mut s, "finished", format!("{}{took}", short_time(f)));
    }
    let mut attempts = format!("{} of {}", e.attempts, e.max_attempts);
    if let Some(w) = &e.worker_id {
        attempts.push_str(&format!(" · worker {w}"));
    }
    row(&mut s, "attempts", attempts);
    row(&mut s, "limits", format_limits(&e.limits));
    if let Some(r) = &e.result {
        row(&mut s, "result", format!("{}{}", r.status, run_figures(r)));
    }
    if let Some(err) = error_text(e) {
        row(&mut s, "error", err.to_string());
    }
    if let Some(r) = &e.result {
        for (name, text, truncated) in [
            ("stdout", &r.stdout, r.stdout_truncated),
            ("stderr", &r.stderr, r.stderr_truncated),
        ] {
            if text.is_empty() {
                row(&mut s, name, "(empty)".into());
                continue;
            }
            let mut head = format!("{} bytes", text.len());
            if truncated {
                head.push_str(" (truncated by the output limit)");
            }
            row(&mut s, name, head);
            let (lines, more) = excerpt(text, 10);
            for l in lines {
                s.push_str(&format!("  │ {l}\n"));
            }
            if more > 0 {
                s.push_str(&format!("  │ … {more} more lines (assay logs {})\n", e.id));
            }
        }
    }
    s
}

/// Rows under a header, each column as wide as its widest cell, the last one not padded.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut width = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < N {
                s.push_str(&" ".repeat(width[i].saturating_sub(c.chars().count()) + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(header);
    for r in rows {
        s.push_str(&line(r.each_ref().map(String::as_str)));
    }
    s
}

/// `assay list`: a table.
pub fn render_table(items: &[EvaluationSummary]) -> String {
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|e| {
            let wall = e
                .result
                .as_ref()
                .map_or("-".into(), |r| r.wall_ms.to_string());
            [
                e.id.clone(),
                e.status.to_string(),
                short_time(&e.created_at),
                wall,
                labels_text(&e.labels),
            ]
        })
        .collect();
    // Numbers align right, the header above them too.
    let wall_head = "WALL MS";
    let w = rows
        .iter()
        .map(|r| r[3].len())
        .chain([wall_head.len()])
        .max()
        .unwrap_or(0);
    let wall_head = format!("{wall_head:>w$}");
    let header = ["ID", "STATUS", "CREATED (UTC)", &wall_head, "LABELS"];
    let rows: Vec<[String; 5]> = rows
        .into_iter()
        .map(|[id, status, created, wall, labels]| {
            [id, status, created, format!("{wall:>w$}"), labels]
        })
        .collect();
    table(header, &rows)
}

fn median(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2
    })
}

/// `assay batch --wait`: count per status, wall time, and the items that did not succeed.
pub fn render_batch_summary(finals: &[(String, EvaluationSummary)]) -> String {
    let mut counts: HashMap<EvaluationStatus, usize> = HashMap::new();
    for (_, e) in finals {
        *counts.entry(e.status).or_default() += 1;
    }
    let mut s = String::new();
    s.push_str(&format!("{:<16} {:>7}\n", "STATUS", "COUNT"));
    // In lifecycle order.
    for status in EvaluationStatus::ALL {
        if let Some(n) = counts.get(&status) {
            s.push_str(&format!("{:<16} {n:>7}\n", status.as_str()));
        }
    }
    s.push_str(&format!("{:<16} {:>7}\n", "total", finals.len()));
    let mut walls: Vec<u64> = finals
        .iter()
        .filter_map(|(_, e)| e.result.as_ref().map(|r| r.wall_ms))
        .collect();
    let total: u64 = walls.iter().sum();
    if let Some(m) = median(&mut walls) {
        s.push_str(&format!("wall ms: total {total} · median {m}\n"));
    }
    let failed: Vec<&(String, EvaluationSummary)> = finals
        .iter()
        .filter(|(_, e)| e.status != EvaluationStatus::Succeeded)
        .collect();
    if !failed.is_empty() {
        s.push_str("\nnot succeeded:\n");
        const SHOWN: usize = 20;
        for (source, e) in failed.iter().take(SHOWN) {
            let exit = e
                .result
                .as_ref()
                .and_then(|r| r.exit_code)
                .map(|c| format!(" · exit {c}"))
                .unwrap_or_default();
            s.push_str(&format!("  {source}  {}  {}{exit}\n", e.id, e.status));
        }
        if failed.len() > SHOWN {
            s.push_str(&format!("  … and {} more\n", failed.len() - SHOWN));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A finished evaluation as the API shows it, with a field this client does not know.
    fn finished(status: &str, wall: u64) -> Value {
        json!({
            "id": "ev_1", "tenant": "default", "status": status, "language": "python",
            "entrypoint": "main.py", "priority": 0, "labels": {"file": "a.py"},
            "limits": {"wall_time_ms": 5000, "cpu_time_ms": 10000, "memory_bytes": 268435456,
                "pids": 64, "output_bytes": 1048576, "tmpfs_bytes": 67108864, "open_files": 256,
                "file_size_bytes": 16777216, "cpu_millicores": 1000},
            "attempts": 1, "max_attempts": 3,
            "created_at": "2025-01-02T03:04:05.000Z", "started_at": "2025-01-02T03:04:05.250Z",
            "finished_at": "2025-01-02T03:04:06.000Z",
            "result": {"status": status, "exit_code": 0, "signal": null, "wall_ms": wall, "cpu_ms": 13,
                "peak_memory_bytes": 3645440, "stdout": "hi\n", "stderr": "", "stdout_truncated": false,
                "stderr_truncated": false, "runtime": "crun"},
            "error": null, "worker_id": "w1", "cancel_requested": false,
            "some_future_field": [1, 2]
        })
    }

    /// `v` with `changes` (top-level fields) applied.
    fn with(mut v: Value, changes: Value) -> Value {
        for (k, c) in changes.as_object().unwrap() {
            v[k] = c.clone();
        }
        v
    }

    fn eval(v: Value) -> EvaluationView {
        serde_json::from_value(v).unwrap()
    }

    fn summary(v: Value) -> EvaluationSummary {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn summaries_and_exit_codes() {
        let e = eval(finished("succeeded", 27));
        assert_eq!(
            evaluation_summary(&e),
            "── succeeded · exit 0 · wall 27 ms · cpu 13 ms · peak 3560KiB · crun"
        );
        assert!(e.status.is_terminal());
        assert_eq!(exit_code_for(e.status), 0);
        assert_eq!(exit_code_for(eval(finished("timed_out", 1)).status), 1);
        assert_eq!(exit_code_for(eval(finished("errored", 1)).status), 3);
        let dead = eval(with(
            finished("dead", 0),
            json!({"id": "ev_2", "attempts": 3, "result": null, "error": "runtime crashed (attempt 3 of 3)"}),
        ));
        assert_eq!(exit_code_for(dead.status), 3);
        assert_eq!(evaluation_summary(&dead), "── dead · attempt 3 of 3");
        assert_eq!(error_text(&dead), Some("runtime crashed (attempt 3 of 3)"));
        let queued = eval(with(finished("queued", 0), json!({"result": null})));
        assert!(!queued.status.is_terminal());
        assert!(serde_json::from_value::<EvaluationView>(json!({"status": "queued"})).is_err());
        let run = summary_line("failed", e.result.as_ref());
        assert_eq!(
            run,
            "── failed · exit 0 · wall 27 ms · cpu 13 ms · peak 3560KiB · crun"
        );
    }

    #[test]
    fn readable_views() {
        let e = eval(finished("succeeded", 27));
        let view = render_evaluation(&e);
        assert!(view.contains("status     succeeded"), "{view}");
        assert!(
            view.contains("(queued 250 ms)") && view.contains("(ran 750 ms)"),
            "{view}"
        );
        // Limits in the order of `assay_domain::Limits`.
        assert!(
            view.contains("wall_time 5s · cpu_time 10s · memory 256MiB · pids 64"),
            "{view}"
        );
        assert!(view.contains("  │ hi"), "{view}");
        assert!(view.contains("stderr     (empty)"), "{view}");
        let table = render_table(&[
            summary(finished("succeeded", 27)),
            summary(with(
                finished("queued", 0),
                json!({"id": "ev_long_id", "labels": {}, "result": null}),
            )),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "ID          STATUS     CREATED (UTC)        WALL MS  LABELS"
        );
        assert_eq!(
            lines[1],
            "ev_1        succeeded  2025-01-02 03:04:05       27  file=a.py"
        );
        assert_eq!(
            lines[2],
            "ev_long_id  queued     2025-01-02 03:04:05        -"
        );

        let finals = vec![
            ("a.py".to_string(), summary(finished("succeeded", 10))),
            ("b.py".to_string(), summary(finished("succeeded", 30))),
            ("c.py".to_string(), summary(finished("failed", 20))),
            (
                "d.py".to_string(),
                summary(with(
                    finished("cancelled", 0),
                    json!({"id": "ev_9", "result": null}),
                )),
            ),
        ];
        let summary = render_batch_summary(&finals);
        assert!(summary.contains("succeeded              2"), "{summary}");
        assert!(summary.contains("total                  4"), "{summary}");
        assert!(
            summary.contains("wall ms: total 60 · median 20"),
            "{summary}"
        );
        assert!(
            summary.contains("  c.py  ev_1  failed · exit 0")
                && summary.contains("  d.py  ev_9  cancelled"),
            "{summary}"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5]), Some(5));
        assert_eq!(median(&mut [9, 1, 5]), Some(5));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
    }

    #[test]
    fn small_formatters() {
        assert_eq!(format_ms(3000), "3s");
        assert_eq!(format_ms(1500), "1500ms");
        assert_eq!(
            short_time("2025-01-02T03:04:05.123Z"),
            "2025-01-02 03:04:05"
        );
        assert_eq!(short_time("garbage"), "garbage");
        assert_eq!(excerpt("a\nb\nc\n", 2), (vec!["a", "b"], 1));
        assert_eq!(
            table(["A", "BB"], &[["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1\n"
        );
    }
}
