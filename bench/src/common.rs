//! Helpers shared by the benchmark binaries (`bench-sandbox`, `bench-service`): failure
//! collection, order statistics and formatting. Each binary uses a subset.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Every run that did not end as expected, described for humans.
#[derive(Clone, Default)]
pub(crate) struct Failures(Arc<std::sync::Mutex<Vec<String>>>);

impl Failures {
    pub(crate) fn add(&self, what: String) {
        eprintln!("FAILURE: {what}");
        self.0.lock().expect("not poisoned").push(what);
    }

    pub(crate) fn count(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Order statistics of a sample, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Stats {
    pub(crate) fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Stats {
            n: v.len(),
            median: percentile(&v, 0.5),
            p90: percentile(&v, 0.9),
            p99: percentile(&v, 0.99),
            max: v[v.len() - 1],
        })
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "n": self.n,
            "median_ms": round2(self.median),
            "p90_ms": round2(self.p90),
            "p99_ms": round2(self.p99),
            "max_ms": round2(self.max),
        })
    }
}

/// Linear interpolation between closest ranks, on sorted values.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the position is in 0..=len-1: non-negative, and an index"
)]
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// At most 300 bytes of `s` (for messages), otherwise unchanged: trailing newlines matter.
pub(crate) fn short(s: &str) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

pub(crate) fn command_version(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

pub(crate) fn median(values: &[f64]) -> Option<f64> {
    Stats::of(values).map(|s| s.median)
}
