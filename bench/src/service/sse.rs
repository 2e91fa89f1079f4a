//! Live-output delay: an SSE client on an API node (`GET /v1/evaluations/{id}/events`) follows
//! evaluations whose program prints the wall-clock time (`time.time_ns()`) several times with
//! small pauses; each line's delay is the time the client received it minus the time printed in
//! it (same machine, same clock). The program may run in the API node's own workers or in
//! another process (another node): the stream then crosses the store.

use crate::common::{Failures, Stats, short};
use crate::node::Server;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines each evaluation prints, and the pause after each.
pub(crate) const LINES_PER_EVALUATION: usize = 25;
const PAUSE_S: f64 = 0.02;

fn program(lines: usize) -> String {
    // A pause first, so that the client is following before the first line; one write per line.
    format!(
        "import sys, time\ntime.sleep(0.1)\nfor _ in range({lines}):\n    \
         sys.stdout.write('%d\\n' % time.time_ns())\n    sys.stdout.flush()\n    \
         time.sleep({PAUSE_S})\n"
    )
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

#[derive(Default)]
pub(crate) struct SseReport {
    /// Delay of each line printed after the client was following, ms.
    pub(crate) delays: Vec<f64>,
    /// Lines printed before the stream was open (replayed from the history: not counted).
    pub(crate) replayed: usize,
    pub(crate) evaluations: usize,
    pub(crate) failed: usize,
}

impl SseReport {
    pub(crate) fn stats(&self) -> Option<Stats> {
        Stats::of(&self.delays)
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "evaluations": self.evaluations,
            "lines": self.delays.len(),
            "replayed": self.replayed,
            "failed": self.failed,
            "delay": self.stats().map(|s| s.json()),
        })
    }
}

/// Follows evaluations on `api` until about `lines` lines were timed.
pub(crate) async fn delays(
    label: &str,
    api: &Server,
    lines: usize,
    failures: &Failures,
) -> SseReport {
    let evaluations = lines.div_ceil(LINES_PER_EVALUATION).max(1);
    let per = lines.div_ceil(evaluations).max(1);
    eprintln!(
        "{label}: {evaluations} evaluations printing {per} timed lines each, followed over SSE"
    );
    let code = program(per);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");
    let mut out = SseReport {
        evaluations,
        ..SseReport::default()
    };
    for i in 0..evaluations {
        if let Err(e) = follow(api, &c, &code, per, &mut out).await {
            out.failed += 1;
            failures.add(format!("{label}: SSE evaluation {i}: {e}"));
        }
    }
    out
}

/// Submits one evaluation and reads its stream to the end.
async fn follow(
    api: &Server,
    c: &reqwest::Client,
    code: &str,
    lines: usize,
    out: &mut SseReport,
) -> Result<(), String> {
    let r = api
        .req(c, reqwest::Method::POST, "/v1/evaluations")
        .json(&json!({"language": "python", "code": code}))
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let status = r.status();
    let ev: Value = r.json().await.map_err(|e| format!("POST: body: {e}"))?;
    let id = match ev["id"].as_str() {
        Some(id) if status.is_success() => id.to_string(),
        _ => return Err(format!("POST: {status}: {}", short(&ev.to_string()))),
    };
    let mut r = api
        .req(
            c,
            reqwest::Method::GET,
            &format!("/v1/evaluations/{id}/events"),
        )
        .send()
        .await
        .map_err(|e| format!("GET events: {e}"))?;
    let open = now_ns();
    if r.status() != reqwest::StatusCode::OK {
        return Err(format!("GET events: {}", r.status()));
    }
    let (mut buf, mut text) = (String::new(), String::new());
    let (mut seen, mut result) = (0, None);
    while let Some(chunk) = r.chunk().await.map_err(|e| format!("GET events: {e}"))? {
        let received = now_ns();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = ("", String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            match event {
                "stdout" => {
                    let chunk: String = serde_json::from_str(&data)
                        .map_err(|e| format!("stdout event {data:?}: {e}"))?;
                    text.push_str(&chunk);
                    while let Some(nl) = text.find('\n') {
                        let line: String = text.drain(..=nl).collect();
                        let printed: i128 = line
                            .trim()
                            .parse()
                            .map_err(|e| format!("line {line:?}: {e}"))?;
                        seen += 1;
                        if printed < open {
                            out.replayed += 1;
                        } else {
                            out.delays.push((received - printed) as f64 / 1e6);
                        }
                    }
                }
                "result" => {
                    let v: Value =
                        serde_json::from_str(&data).map_err(|e| format!("result event: {e}"))?;
                    result = Some(v["status"].as_str().unwrap_or("?").to_string());
                }
                _ => {}
            }
        }
    }
    match result.as_deref() {
        Some("succeeded") if seen == lines => Ok(()),
        Some("succeeded") => Err(format!("{seen} of {lines} lines arrived")),
        Some(other) => Err(format!("ended {other}")),
        None => Err("the stream ended without a result".into()),
    }
}
