//! Several nodes on one installation (issue 9): PostgreSQL, an S3 server (s3s-fs), two API
//! processes (`assay serve --slots 0`) and three workers (`assay worker`), all on loopback, all
//! real processes. A thousand evaluations go alternately to both APIs (some with several MiB of
//! output, some to stderr, some failing), from three tenants, one of them under a running cap.
//! Mid-run, once work has finished and a long evaluation is running, the worker running it and
//! one API process are SIGKILLed; submissions go on against the surviving API (a submission
//! that failed on one API is retried on the other under the same `Idempotency-Key`), then both
//! are restarted with the same flags.
//!
//! Then: every accepted evaluation ended, exactly once (its event log and the database agree);
//! none is lost or doubled; every output, read back through the API process the evaluation was
//! NOT submitted to, is byte for byte what the program wrote (sha256), a `Range` included; the
//! capped tenant never ran more than its cap at once (from the database's event times, and as
//! `GET /v1/queue` showed it while running); the audit chain verifies.
//!
//! Nothing waits on a fixed sleep: every wait polls an observed state with a deadline.

mod common;

use assay_blob::testing::S3Server;
use assay_store_postgres::testing::TestDatabase;
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

/// Evaluations submitted.
const TOTAL: usize = 1000;
/// The capped tenant's running cap (`[quotas.tenants.capped] max_running`).
const CAP: usize = 2;
/// The tenant under the running cap (every fifth submission; `alpha` and `beta` share the rest).
const CAPPED: &str = "capped";
/// The bucket of whole output streams.
const BUCKET: &str = "assay-multinode";
/// Submissions in flight at once.
const IN_FLIGHT: usize = 8;
/// Submissions pause while more than this many evaluations are queued (so that submitting goes
/// on while workers run, and across the outage).
const MAX_BACKLOG: u64 = 120;
/// Longest the whole run (submissions and every evaluation ending) may take.
const RUN_DEADLINE: Duration = Duration::from_secs(300);
/// Longest one process may take to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh database, dropped with the value.

/// A fresh database of the test's PostgreSQL server.
async fn fresh_database() -> TestDatabase {
    TestDatabase::create("assay_mn").await
}

/// A connection to `db`.
async fn connect(db: &TestDatabase) -> PgConnection {
    PgConnection::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", db.url))
}

// ---------------------------------------------------------------------------------------------
// Nodes: `assay serve` and `assay worker` processes, restartable, killed when dropped.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Api,
    Worker,
}

/// One node: its command line, its log (stdout and stderr of every start), its process.
struct Node {
    name: String,
    kind: Kind,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// An API's URL, a worker's id (as the process printed them).
    ident: String,
    starts: u32,
}

/// What a node prints once it is up: an API its URL, a worker its id.
fn ident_in(kind: Kind, line: &str) -> Option<String> {
    match kind {
        Kind::Api => line
            .strip_prefix("assay: listening on ")
            .map(|u| u.trim().to_string()),
        Kind::Worker => line
            .strip_prefix("assay: worker ")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string),
    }
}

/// Copies a pipe's lines to the log; sends the node's identity when it sees it.
fn copy_to_log(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<std::fs::File>>,
    kind: Kind,
    found: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(ident) = ident_in(kind, &line) {
                let _ = found.send(ident);
            }
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
}

impl Node {
    fn new(
        name: &str,
        kind: Kind,
        args: Vec<OsString>,
        env: &[(String, String)],
        log: PathBuf,
    ) -> Node {
        Node {
            name: name.to_string(),
            kind,
            args,
            env: env.to_vec(),
            log,
            child: None,
            ident: String::new(),
            starts: 0,
        }
    }

    /// Starts the process (same flags every time) and waits until it says it is up.
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(file, "---- {} start {}", self.name, self.starts + 1).unwrap();
        let file = Arc::new(Mutex::new(file));
        let mut child = Command::new(env!("CARGO_BIN_EXE_assay"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("ASSAY_URL")
            .env_remove("ASSAY_KEY")
            .env_remove("ASSAY_DATA")
            .env_remove("ASSAY_STORE")
            .env_remove("ASSAY_BLOB")
            .env_remove("ASSAY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("assay starts");
        let (tx, rx) = mpsc::channel();
        copy_to_log(
            child.stdout.take().unwrap(),
            file.clone(),
            self.kind,
            tx.clone(),
        );
        copy_to_log(child.stderr.take().unwrap(), file, self.kind, tx);
        self.starts += 1;
        match rx.recv_timeout(START_DEADLINE) {
            Ok(ident) => self.ident = ident,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not come up ({e}); its log:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
        }
        self.child = Some(child);
    }

    fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("running");
        Pid::from_raw(i32::try_from(child.id()).unwrap())
    }

    /// SIGKILL, and reap it.
    fn sigkill(&mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(!status.success(), "{} was killed: {status:?}", self.name);
    }

    /// SIGTERM, and wait (bounded) for a clean exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not stop within 30 s of SIGTERM:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    /// A test that fails midway leaves no process behind: a worker is asked to stop first (so
    /// that it removes its sandboxes), then killed.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.kind == Kind::Worker
                && let Ok(pid) = i32::try_from(child.id())
                && kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok()
            {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every node; on a failing test, their logs' tails are printed.
struct Cluster {
    apis: Vec<Node>,
    workers: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in self.apis.iter().chain(&self.workers) {
                eprintln!(
                    "==== {} ({}), last lines of {}:\n{}",
                    n.name,
                    n.ident,
                    n.log.display(),
                    n.log_tail(25)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Talking to both APIs: each request goes to one, and on a transport error or a 5xx to the other.

#[derive(Clone)]
struct Apis {
    urls: Arc<RwLock<[String; 2]>>,
    c: reqwest::Client,
    /// Requests sent again to the other API (transport error or 5xx).
    failovers: Arc<AtomicUsize>,
    /// 500 answers (a bug, whatever else happens): reported, and the test fails.
    internal_errors: Arc<Mutex<Vec<String>>>,
}

impl Apis {
    fn url(&self, i: usize) -> String {
        self.urls.read().unwrap()[i].clone()
    }

    /// Sends what `build` makes (given an API's base URL) to API `first`, else the other;
    /// returns which API answered, and its answer (anything but a 5xx).
    async fn send(
        &self,
        first: usize,
        what: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> (usize, reqwest::Response) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last;
        for k in 0.. {
            let i = (first + k) % 2;
            match build(&self.url(i)).send().await {
                Ok(r) if !r.status().is_server_error() => return (i, r),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    if status == StatusCode::INTERNAL_SERVER_ERROR {
                        self.internal_errors
                            .lock()
                            .unwrap()
                            .push(format!("{what} on API {i}: {body}"));
                    }
                    last = format!("{status}: {body}");
                }
                Err(e) => last = format!("{e}"),
            }
            self.failovers.fetch_add(1, Ordering::Relaxed);
            assert!(
                Instant::now() < deadline,
                "{what}: no API answered for 60 s (last: {last})"
            );
            if k % 2 == 1 {
                // Both refused: give a restarting process a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!()
    }

    /// A GET with `key` to API `first` (else the other): the JSON answer, which must be 200.
    async fn get_json(&self, first: usize, key: &str, path: &str) -> Value {
        let (i, r) = self
            .send(first, path, |u| {
                self.c.get(format!("{u}{path}")).bearer_auth(key)
            })
            .await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path} on API {i}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// A GET to one API exactly (no failover): status, headers, body.
async fn get_exact(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    path: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rb = c.get(format!("{url}{path}")).bearer_auth(key);
    if let Some(r) = range {
        rb = rb.header(reqwest::header::RANGE, r);
    }
    let r = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {url}: {e}"));
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap().to_vec();
    (status, headers, body)
}

// ---------------------------------------------------------------------------------------------
// The workload: what each evaluation runs, and what it must print.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Job {
    /// A few lines (some to stderr, some exit 3); the capped tenant's take a little longer.
    Small,
    /// Several MiB of stdout: `lines` sha256 hex digests, one a line.
    Big { lines: usize },
    /// Runs 1.5 s: what is running when a worker is killed.
    Slow,
}

struct Spec {
    i: usize,
    tenant: &'static str,
    job: Job,
    /// The API it is first sent to.
    api: usize,
}

impl Spec {
    fn new(i: usize) -> Spec {
        let tenant = match i % 5 {
            0 => CAPPED,
            1 | 3 => "alpha",
            _ => "beta",
        };
        let job = match i % 50 {
            // beta: 20 of them, 3.1 to 6.2 MB each.
            7 => Job::Big {
                lines: 48_000 + (i * 7919) % 48_000,
            },
            // alpha: 20 of them.
            26 => Job::Slow,
            _ => Job::Small,
        };
        Spec {
            i,
            tenant,
            job,
            api: i % 2,
        }
    }

    fn fails(&self) -> bool {
        self.job == Job::Small && self.i % 25 == 11
    }

    fn writes_stderr(&self) -> bool {
        self.job == Job::Small && self.i % 7 == 3
    }

    fn kind(&self) -> &'static str {
        match self.job {
            Job::Small => "small",
            Job::Big { .. } => "big",
            Job::Slow => "slow",
        }
    }

    fn code(&self) -> String {
        let i = self.i;
        match self.job {
            Job::Small => {
                let mut code = format!(
                    "import sys, time\nprint('job {i} {}')\nprint(sum(range({i})))\n",
                    self.tenant
                );
                if self.tenant == CAPPED {
                    code.push_str("time.sleep(0.15)\n");
                }
                if self.writes_stderr() {
                    code.push_str(&format!("print('warn {i}', file=sys.stderr)\n"));
                }
                if self.fails() {
                    code.push_str("sys.exit(3)\n");
                }
                code
            }
            Job::Big { lines } => format!(
                "import hashlib, sys\n\
                 buf = []\n\
                 for k in range({lines}):\n    \
                     buf.append(hashlib.sha256(b'mn:%d:%d' % ({i}, k)).hexdigest())\n    \
                     if len(buf) == 2048:\n        \
                         sys.stdout.write('\\n'.join(buf) + '\\n')\n        \
                         buf = []\n\
                 if buf:\n    \
                     sys.stdout.write('\\n'.join(buf) + '\\n')\n\
                 sys.stdout.flush()\n\
                 print('big {i} done', file=sys.stderr)\n"
            ),
            Job::Slow => format!(
                "import time\nprint('slow {i} start', flush=True)\ntime.sleep(1.5)\n\
                 print('slow {i} end')\n"
            ),
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "language": "python",
            "code": self.code(),
            "labels": {"mn_i": self.i.to_string(), "kind": self.kind()},
        });
        if let Job::Big { .. } = self.job {
            body["limits"] = json!({"output_bytes": 16u64 << 20});
        }
        body
    }

    fn stdout(&self) -> Vec<u8> {
        let i = self.i;
        match self.job {
            Job::Small => {
                format!("job {i} {}\n{}\n", self.tenant, i * i.saturating_sub(1) / 2).into_bytes()
            }
            Job::Big { lines } => {
                let mut out = Vec::with_capacity(lines * 65);
                for k in 0..lines {
                    let d = Sha256::digest(format!("mn:{i}:{k}").as_bytes());
                    out.extend_from_slice(format!("{d:x}\n").as_bytes());
                }
                out
            }
            Job::Slow => format!("slow {i} start\nslow {i} end\n").into_bytes(),
        }
    }

    fn stderr(&self) -> Vec<u8> {
        match self.job {
            Job::Small if self.writes_stderr() => format!("warn {}\n", self.i).into_bytes(),
            Job::Small | Job::Slow => Vec::new(),
            Job::Big { .. } => format!("big {} done\n", self.i).into_bytes(),
        }
    }

    fn status(&self) -> &'static str {
        if self.fails() { "failed" } else { "succeeded" }
    }
}

/// An accepted submission.
#[derive(Clone, Debug)]
struct Accepted {
    i: usize,
    id: String,
    /// The API whose 202 the client got.
    api: usize,
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// Where two byte strings first differ (for failure messages).
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

// ---------------------------------------------------------------------------------------------
// What the poller saw while the run went on.

#[derive(Default)]
struct Observed {
    queued: AtomicU64,
    running: AtomicU64,
    /// Terminal evaluations (every tenant).
    finished: AtomicU64,
    /// The most the capped tenant's `GET /v1/queue` ever showed running.
    capped_running_max: AtomicU64,
    samples: AtomicU64,
}

const TERMINAL: [&str; 8] = [
    "succeeded",
    "failed",
    "timed_out",
    "memory_exceeded",
    "output_exceeded",
    "errored",
    "cancelled",
    "dead",
];

fn count(q: &Value, status: &str) -> u64 {
    q["counts"][status].as_u64().unwrap_or(0)
}

async fn poll_queue(apis: Apis, admin: String, capped_key: String, seen: Arc<Observed>) {
    let mut n = 0usize;
    loop {
        n += 1;
        let q = apis.get_json(n % 2, &admin, "/v1/queue").await;
        seen.queued.store(count(&q, "queued"), Ordering::SeqCst);
        seen.running.store(count(&q, "running"), Ordering::SeqCst);
        let finished = TERMINAL.iter().map(|s| count(&q, s)).sum();
        seen.finished.store(finished, Ordering::SeqCst);
        let mine = apis.get_json(n % 2, &capped_key, "/v1/queue").await;
        seen.capped_running_max
            .fetch_max(count(&mine, "running"), Ordering::SeqCst);
        seen.samples.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits `spec` (to its API first, then alternately) until one API answers 202.
async fn submit(
    apis: &Apis,
    keys: &HashMap<&'static str, String>,
    spec: &Spec,
    seen: &Observed,
) -> Accepted {
    // Pace: not too far ahead of the workers (observed through the poller).
    let deadline = Instant::now() + RUN_DEADLINE;
    while seen.queued.load(Ordering::SeqCst) > MAX_BACKLOG {
        assert!(Instant::now() < deadline, "the backlog never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = spec.body();
    let key = &keys[spec.tenant];
    let idem = format!("multinode-{}", spec.i);
    let (api, r) = apis
        .send(spec.api, &format!("submission {}", spec.i), |u| {
            apis.c
                .post(format!("{u}/v1/evaluations"))
                .bearer_auth(key)
                .header("Idempotency-Key", &idem)
                .json(&body)
        })
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "submission {} on API {api}: {v}",
        spec.i
    );
    Accepted {
        i: spec.i,
        id: v["id"].as_str().unwrap().to_string(),
        api,
    }
}

/// A member key of `tenant`, made with the admin key.
async fn member_key(apis: &Apis, admin: &str, tenant: &str) -> String {
    let (_, r) = apis
        .send(0, "POST /v1/keys", |u| {
            apis.c.post(format!("{u}/v1/keys")).bearer_auth(admin).json(
                &json!({"tenant": tenant, "role": "member", "name": format!("{tenant} member")}),
            )
        })
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["key"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Checks of one finished evaluation, through the API it was not submitted to.

#[derive(Default, Debug)]
struct Checked {
    attempts: u64,
    worker: String,
    status: String,
    output_bytes: usize,
    /// What was not as it should be (every check runs; the test fails on any).
    problems: Vec<String>,
}

/// Records a problem when `cond` is false.
macro_rules! expect {
    ($problems:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $problems.push(format!($($fmt)+));
        }
    };
}

async fn check_one(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    spec: &Spec,
    acc: &Accepted,
) -> Checked {
    let id = &acc.id;
    let what = format!("evaluation {} ({id}, {:?})", spec.i, spec.job);
    let mut p = Vec::new();
    let (st, _, body) = get_exact(c, url, key, &format!("/v1/evaluations/{id}"), None).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "{what}: {}",
        String::from_utf8_lossy(&body)
    );
    let ev: Value = serde_json::from_slice(&body).unwrap();
    expect!(
        p,
        ev["status"] == spec.status(),
        "{what}: status {}",
        ev["status"]
    );
    expect!(
        p,
        ev["tenant"] == spec.tenant,
        "{what}: tenant {}",
        ev["tenant"]
    );
    let result = &ev["result"];
    let exit = if spec.fails() { 3 } else { 0 };
    expect!(
        p,
        result["exit_code"] == exit,
        "{what}: exit code {}",
        result["exit_code"]
    );
    let attempts = ev["attempts"].as_u64().unwrap_or(0);
    expect!(p, attempts >= 1, "{what}: attempts {attempts}");
    let stdout = spec.stdout();
    let stderr = spec.stderr();

    // The event log: every event once, one result (the last), one terminal status, one
    // `running` per attempt; the last attempt's output is what the program wrote.
    let (st, _, sse) = get_exact(c, url, key, &format!("/v1/evaluations/{id}/events"), None).await;
    assert_eq!(st, StatusCode::OK, "{what}");
    let events = common::parse_sse(&String::from_utf8(sse).unwrap());
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    let want: Vec<i64> = (1..=i64::try_from(events.len()).unwrap()).collect();
    expect!(
        p,
        seqs == want,
        "{what}: event ids with gaps or repeats: {seqs:?}"
    );
    let results = events.iter().filter(|e| e.1 == "result").count();
    expect!(p, results == 1, "{what}: {results} result events");
    expect!(
        p,
        events.last().is_some_and(|e| e.1 == "result"),
        "{what}: the result is not the last event"
    );
    let statuses: Vec<(usize, String)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.1 == "status")
        .map(|(n, e)| {
            let d: Value = serde_json::from_str(&e.2).unwrap();
            (n, d["status"].as_str().unwrap().to_string())
        })
        .collect();
    let terminal: Vec<&str> = statuses
        .iter()
        .map(|(_, s)| s.as_str())
        .filter(|s| TERMINAL.contains(s))
        .collect();
    expect!(
        p,
        terminal == [spec.status()],
        "{what}: terminal statuses {terminal:?}"
    );
    let runs = u64::try_from(statuses.iter().filter(|(_, s)| s == "running").count()).unwrap();
    expect!(
        p,
        runs == attempts,
        "{what}: {runs} running statuses, {attempts} attempts: {statuses:?}"
    );
    let last_run = statuses
        .iter()
        .rev()
        .find(|(_, s)| s == "running")
        .map_or(0, |r| r.0);
    let streamed = |name: &str| -> Vec<u8> {
        events[last_run..]
            .iter()
            .filter(|e| e.1 == name)
            .flat_map(|e| serde_json::from_str::<String>(&e.2).unwrap().into_bytes())
            .collect()
    };
    let (live_out, live_err) = (streamed("stdout"), streamed("stderr"));
    let shown = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
    match spec.job {
        Job::Big { .. } => expect!(
            p,
            !live_out.is_empty() && stdout.starts_with(&live_out),
            "{what}: the last attempt's streamed stdout ({} bytes) is not a prefix of the whole",
            live_out.len()
        ),
        _ => expect!(
            p,
            live_out == stdout,
            "{what}: the last attempt's streamed stdout is {:?}, the program wrote {:?}",
            shown(&live_out),
            shown(&stdout)
        ),
    }
    expect!(
        p,
        live_err == stderr,
        "{what}: the last attempt's streamed stderr is {:?}, the program wrote {:?}",
        shown(&live_err),
        shown(&stderr)
    );

    // The result's preview: what the program wrote (a prefix of it when the stream is big).
    let preview = result["stdout"].as_str().unwrap_or_default().as_bytes();
    match spec.job {
        Job::Big { .. } => expect!(
            p,
            !preview.is_empty() && stdout.starts_with(preview),
            "{what}: the result's stdout ({} bytes) is not a prefix of the whole (attempts: \
             {attempts}; first difference at byte {})",
            preview.len(),
            first_difference(preview, &stdout)
        ),
        _ => expect!(
            p,
            preview == stdout,
            "{what}: the result's stdout is {:?}, the program wrote {:?} (attempts: {attempts})",
            shown(preview),
            shown(&stdout)
        ),
    }
    let preview_err = result["stderr"].as_str().unwrap_or_default().as_bytes();
    expect!(
        p,
        preview_err == stderr,
        "{what}: the result's stderr is {:?}, the program wrote {:?} (attempts: {attempts})",
        shown(preview_err),
        shown(&stderr)
    );

    // The whole streams, byte for byte (checksums), from the other API process.
    let mut output_bytes = 0;
    for (stream, expected) in [("stdout", &stdout), ("stderr", &stderr)] {
        let path = format!("/v1/evaluations/{id}/output/{stream}");
        let (st, headers, body) = get_exact(c, url, key, &path, None).await;
        if st != StatusCode::OK {
            p.push(format!("{what}: GET {path}: {st} {}", shown(&body)));
            continue;
        }
        let ct = headers
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        expect!(p, ct.starts_with("text/plain"), "{what}: {path}: {ct}");
        expect!(
            p,
            body.len() == expected.len() && sha(&body) == sha(expected),
            "{what}: {path}: {} bytes (sha256 {}), expected {} (sha256 {}); first difference \
             at byte {}{}",
            body.len(),
            sha(&body),
            expected.len(),
            sha(expected),
            first_difference(&body, expected),
            if body.len() < 300 {
                format!(
                    ": {:?}, the program wrote {:?}",
                    shown(&body),
                    shown(expected)
                )
            } else {
                String::new()
            }
        );
        output_bytes += body.len();
    }
    Checked {
        attempts,
        worker: ev["worker_id"].as_str().unwrap_or_default().to_string(),
        status: ev["status"].as_str().unwrap_or_default().to_string(),
        output_bytes,
        problems: p,
    }
}

// ---------------------------------------------------------------------------------------------
// The running cap, from the database's event times.

/// The most runs of `tenant` the store counted as running at one instant: each attempt runs from
/// its `running` event to the next status event (a retry's `queued`, or the end), both stamped
/// by the database's clock in the transaction that made the change.
async fn most_running_at_once(db: &mut PgConnection, tenant: &str) -> (usize, usize) {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ev.evaluation_id, ev.data, ev.at FROM events ev \
         JOIN evaluations e ON e.id = ev.evaluation_id \
         WHERE e.tenant = $1 AND ev.kind = 'status' ORDER BY ev.evaluation_id, ev.seq",
    )
    .bind(tenant)
    .fetch_all(db)
    .await
    .unwrap();
    let mut edges: Vec<(i64, i32)> = Vec::new();
    let mut open: HashMap<String, i64> = HashMap::new();
    let mut runs = 0;
    for (id, data, at) in rows {
        let d: Value = serde_json::from_str(&data).unwrap();
        if let Some(start) = open.remove(&id) {
            edges.push((start, 1));
            edges.push((at, -1));
        }
        if d["status"] == "running" {
            open.insert(id, at);
            runs += 1;
        }
    }
    assert!(open.is_empty(), "runs that never ended: {open:?}");
    // At one instant, an end comes before a start (a claim counts only finishes committed
    // before it, whose times cannot be later than its own).
    edges.sort();
    let (mut now, mut most) = (0i64, 0i64);
    for (_, d) in edges {
        now += i64::from(d);
        most = most.max(now);
    }
    (usize::try_from(most).unwrap(), runs)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apis_three_workers_a_thousand_evaluations_and_kills() {
    let t0 = Instant::now();
    let db = fresh_database().await;
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let s3_env = s3.env();
    let env: Vec<(String, String)> = [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .iter()
    .map(|k| (k.to_string(), s3_env(k).expect("S3 settings")))
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("assay.toml");
    std::fs::write(
        &settings,
        format!("[quotas.tenants.{CAPPED}]\nmax_running = {CAP}\n"),
    )
    .unwrap();

    // Flags every node shares; then each kind's own.
    let node_args = |kind: Kind, data: &Path| -> Vec<OsString> {
        let mut a: Vec<OsString> = match kind {
            Kind::Api => vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()],
            Kind::Worker => vec!["worker".into()],
        };
        a.extend([
            "--data".into(),
            data.into(),
            "--runtime".into(),
            common::runtime().into(),
            "--state-dir".into(),
            data.join("state").into(),
            "--store".into(),
            db.url.clone().into(),
            "--blob".into(),
            format!("s3://{BUCKET}").into(),
            "--config".into(),
            settings.clone().into(),
        ]);
        match kind {
            Kind::Api => a.extend(["--slots".into(), "0".into()]),
            Kind::Worker => a.extend([
                "--slots".into(),
                "2".into(),
                "--lease".into(),
                "3s".into(),
                "--grace".into(),
                "1s".into(),
            ]),
        }
        a
    };
    let node = |name: &str, kind: Kind| {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        Node::new(
            name,
            kind,
            node_args(kind, &data),
            &env,
            dir.path().join(format!("{name}.log")),
        )
    };
    let mut cluster = Cluster {
        apis: vec![node("api-a", Kind::Api), node("api-b", Kind::Api)],
        workers: vec![
            node("worker-1", Kind::Worker),
            node("worker-2", Kind::Worker),
            node("worker-3", Kind::Worker),
        ],
    };
    // A first: it migrates the schema and writes the bootstrap admin key; B finds both.
    cluster.apis[0].start();
    cluster.apis[1].start();
    for w in &mut cluster.workers {
        w.start();
    }
    let admin = std::fs::read_to_string(dir.path().join("api-a/admin.key"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        !dir.path().join("api-b/admin.key").exists(),
        "one bootstrap key for the installation"
    );
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let apis = Apis {
        urls: Arc::new(RwLock::new([
            cluster.apis[0].ident.clone(),
            cluster.apis[1].ident.clone(),
        ])),
        c: c.clone(),
        failovers: Arc::new(AtomicUsize::new(0)),
        internal_errors: Arc::new(Mutex::new(Vec::new())),
    };
    let started = t0.elapsed();

    // Tenants' keys, made on A, work on B (they live in the shared store).
    let mut keys: HashMap<&'static str, String> = HashMap::new();
    for t in [CAPPED, "alpha", "beta"] {
        keys.insert(t, member_key(&apis, &admin, t).await);
    }
    for (t, k) in &keys {
        let (st, _, body) = get_exact(&c, &apis.url(1), k, "/v1/me", None).await;
        assert_eq!(st, StatusCode::OK, "{t}'s key on B: {body:?}");
    }

    let seen = Arc::new(Observed::default());
    let poller = tokio::spawn(poll_queue(
        apis.clone(),
        admin.clone(),
        keys[CAPPED].clone(),
        seen.clone(),
    ));
    let specs: Arc<Vec<Spec>> = Arc::new((0..TOTAL).map(Spec::new).collect());
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let submitter = {
        let (apis, keys, seen, specs, n) = (
            apis.clone(),
            keys.clone(),
            seen.clone(),
            specs.clone(),
            accepted_so_far.clone(),
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let accepted: Vec<Accepted> = futures::stream::iter(0..TOTAL)
                .map(|i| {
                    let (apis, keys, seen, specs, n) = (
                        apis.clone(),
                        keys.clone(),
                        seen.clone(),
                        specs.clone(),
                        n.clone(),
                    );
                    async move {
                        let a = submit(&apis, &keys, &specs[i], &seen).await;
                        n.fetch_add(1, Ordering::SeqCst);
                        a
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            (accepted, t.elapsed())
        })
    };

    // Mid-run: work has finished, a slow evaluation is running. Kill its worker and API B.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (victim_eval, victim_worker) = loop {
        assert!(
            Instant::now() < deadline,
            "never saw 100 finished and a slow evaluation running (finished {})",
            seen.finished.load(Ordering::SeqCst)
        );
        if seen.finished.load(Ordering::SeqCst) >= 100 && seen.running.load(Ordering::SeqCst) > 0 {
            let page = apis
                .get_json(
                    0,
                    &admin,
                    "/v1/evaluations?status=running&label=kind%3Dslow&limit=100",
                )
                .await;
            // Lists show no worker: each running one's own view does.
            let mut hit = None;
            for e in page["items"].as_array().unwrap() {
                let id = e["id"].as_str().unwrap();
                let v = apis
                    .get_json(0, &keys["alpha"], &format!("/v1/evaluations/{id}"))
                    .await;
                let worker = v["worker_id"].as_str().unwrap_or_default();
                if v["status"] == "running"
                    && let Some(n) = cluster.workers.iter().position(|n| n.ident == worker)
                {
                    hit = Some((id.to_string(), n));
                    break;
                }
            }
            if let Some(hit) = hit {
                break hit;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_at = t0.elapsed();
    let accepted_at_kill = accepted_so_far.load(Ordering::SeqCst);
    let finished_at_kill = seen.finished.load(Ordering::SeqCst);
    let killed_worker_id = cluster.workers[victim_worker].ident.clone();
    cluster.workers[victim_worker].sigkill();
    cluster.apis[1].sigkill();
    let dead_b = apis.url(1);
    eprintln!(
        "multinode: SIGKILLed {} ({killed_worker_id}, running {victim_eval}) and api-b at {:.1?} \
         ({accepted_at_kill} accepted, {finished_at_kill} finished)",
        cluster.workers[victim_worker].name, killed_at
    );

    // The evaluation the dead worker ran has no whole output yet: 409 (its lease outlives the
    // worker by up to 3 s; if it was already taken over and finished, nothing to check).
    let a_url = apis.url(0);
    let v = apis
        .get_json(0, &admin, &format!("/v1/evaluations/{victim_eval}"))
        .await;
    if matches!(v["status"].as_str(), Some("running" | "queued")) {
        let alpha = &keys["alpha"];
        let path = format!("/v1/evaluations/{victim_eval}/output/stdout");
        let (st, _, body) = get_exact(&c, &a_url, alpha, &path, None).await;
        assert_eq!(
            st,
            StatusCode::CONFLICT,
            "GET {path} while not finished: {}",
            String::from_utf8_lossy(&body)
        );
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "not_finished", "{e}");
    }
    // B is down: nothing answers on its address.
    assert!(
        c.get(format!("{dead_b}/healthz")).send().await.is_err(),
        "the killed API still answers"
    );

    // The outage: another worker takes the dead one's evaluation over once its lease expires,
    // and submissions go on against A alone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = apis
            .get_json(0, &admin, &format!("/v1/evaluations/{victim_eval}"))
            .await;
        let taken_over = v["attempts"].as_u64().unwrap_or(0) >= 2;
        let submitted_meanwhile =
            accepted_so_far.load(Ordering::SeqCst) >= (accepted_at_kill + 50).min(TOTAL);
        if taken_over && submitted_meanwhile {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "during the outage: taken over {taken_over}, submitted {} since the kill: {v}",
            accepted_so_far.load(Ordering::SeqCst) - accepted_at_kill
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outage_accepted = accepted_so_far.load(Ordering::SeqCst) - accepted_at_kill;
    cluster.workers[victim_worker].start();
    cluster.apis[1].start();
    let restarted_worker_id = cluster.workers[victim_worker].ident.clone();
    apis.urls.write().unwrap()[1] = cluster.apis[1].ident.clone();
    let restarted_at = t0.elapsed();
    eprintln!(
        "multinode: restarted {} (now {restarted_worker_id}) and api-b at {:.1?} ({outage_accepted} \
         accepted during the outage)",
        cluster.workers[victim_worker].name, restarted_at
    );
    let (st, _, _) = get_exact(&c, &apis.url(1), &keys["beta"], "/v1/me", None).await;
    assert_eq!(st, StatusCode::OK, "the restarted B knows the keys");

    // Every submission accepted; then every evaluation ends.
    let (accepted, submit_time) = submitter.await.unwrap();
    assert_eq!(accepted.len(), TOTAL);
    let ids: BTreeSet<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), TOTAL, "{TOTAL} distinct evaluations");
    let deadline = t0 + RUN_DEADLINE;
    loop {
        let q = apis.get_json(0, &admin, "/v1/queue").await;
        let finished: u64 = TERMINAL.iter().map(|s| count(&q, s)).sum();
        let total: u64 = q["counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        if count(&q, "queued") == 0 && count(&q, "running") == 0 {
            assert_eq!(
                total, TOTAL as u64,
                "evaluations in the queue's counts: {q}"
            );
            assert_eq!(finished, TOTAL as u64, "{q}");
            break;
        }
        assert!(Instant::now() < deadline, "not all ended in time: {q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run_time = t0.elapsed();
    poller.abort();
    let _ = poller.await;

    // The database agrees: one row per accepted submission (a retried one made none), one
    // `result` event each.
    let mut pg = connect(&db).await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM evaluations")
        .fetch_all(&mut pg)
        .await
        .unwrap();
    let stored: BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        stored, ids,
        "the stored evaluations are exactly the accepted ones"
    );
    let results: Vec<(String, i64)> = sqlx::query_as(
        "SELECT evaluation_id, count(*) FROM events WHERE kind = 'result' GROUP BY evaluation_id",
    )
    .fetch_all(&mut pg)
    .await
    .unwrap();
    let twice: Vec<&(String, i64)> = results.iter().filter(|r| r.1 != 1).collect();
    assert!(twice.is_empty(), "finished more than once: {twice:?}");
    assert_eq!(
        results.len(),
        TOTAL,
        "every evaluation has its result event"
    );

    // Each evaluation, through the API process it was not submitted to.
    let verify_start = Instant::now();
    let urls = apis.urls.read().unwrap().clone();
    let checked: Vec<(usize, Checked)> = futures::stream::iter(accepted.iter())
        .map(|acc| {
            let spec = &specs[acc.i];
            let (c, url, key) = (&c, &urls[1 - acc.api], &keys[spec.tenant]);
            async move { (acc.i, check_one(c, url, key, spec, acc).await) }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let checked: BTreeMap<usize, Checked> = checked.into_iter().collect();
    let mut problems: Vec<String> = checked
        .values()
        .flat_map(|c| c.problems.iter().cloned())
        .collect();

    // Ranges of a big stream, from each API.
    let big = accepted
        .iter()
        .find(|a| matches!(specs[a.i].job, Job::Big { .. }))
        .unwrap();
    let whole = specs[big.i].stdout();
    let path = format!("/v1/evaluations/{}/output/stdout", big.id);
    let key = &keys[specs[big.i].tenant];
    for (api, from, to) in [(0, 1_000_003, 1_004_098), (1, 4096, whole.len() - 1)] {
        let range = format!("bytes={from}-{to}");
        let (st, headers, body) = get_exact(&c, &urls[api], key, &path, Some(&range)).await;
        if st != StatusCode::PARTIAL_CONTENT {
            problems.push(format!(
                "GET {path} with Range: {range} on API {api}: {st} ({} bytes)",
                body.len()
            ));
            continue;
        }
        expect!(
            problems,
            body == whole[from..=to],
            "{path} {range} on API {api}: {} bytes, first difference at {}",
            body.len(),
            first_difference(&body, &whole[from..=to])
        );
        if let Some(cr) = headers.get(reqwest::header::CONTENT_RANGE) {
            let want = format!("bytes {from}-{to}/{}", whole.len());
            expect!(
                problems,
                cr.to_str().unwrap() == want,
                "{path} {range}: Content-Range {cr:?}, expected {want}"
            );
        }
    }
    let verify_time = verify_start.elapsed();

    // The killed worker's evaluation ran again elsewhere and shows it; the restarted worker
    // took work.
    let victim = accepted.iter().find(|a| a.id == victim_eval).unwrap();
    expect!(
        problems,
        checked[&victim.i].attempts >= 2,
        "the killed worker's evaluation {victim:?}: {:?}",
        checked[&victim.i]
    );
    let workers_used: BTreeSet<&str> = checked.values().map(|c| c.worker.as_str()).collect();
    expect!(
        problems,
        workers_used.contains(restarted_worker_id.as_str()),
        "the restarted worker {restarted_worker_id} ran nothing: {workers_used:?}"
    );

    // The running cap held across the workers (and the API showed no more either).
    let (most, capped_runs) = most_running_at_once(&mut pg, CAPPED).await;
    expect!(
        problems,
        most <= CAP,
        "{CAPPED} had {most} running at once (cap {CAP})"
    );
    expect!(
        problems,
        most == CAP,
        "the cap was never reached ({most}): the check above checked nothing"
    );
    let sampled = seen.capped_running_max.load(Ordering::SeqCst);
    expect!(
        problems,
        sampled <= CAP as u64,
        "GET /v1/queue showed {sampled} running for {CAPPED} (cap {CAP})"
    );
    pg.close().await.ok();

    // No answer was a 500.
    for e in apis.internal_errors.lock().unwrap().iter() {
        problems.push(format!("500: {e}"));
    }

    // The audit chain, written by both APIs (one of them killed), verifies.
    let out = Command::new(env!("CARGO_BIN_EXE_assay"))
        .args(["audit", "verify", "--json", "--store", &db.url])
        .env_remove("ASSAY_DATA")
        .env_remove("ASSAY_STORE")
        .output()
        .unwrap();
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let entries = audit["entries"].as_u64().unwrap_or(0);
    expect!(
        problems,
        out.status.success() && entries >= TOTAL as u64,
        "audit verify: {out:?}"
    );

    // A clean stop of every node.
    for n in cluster.apis.iter_mut().chain(cluster.workers.iter_mut()) {
        let status = n.stop();
        expect!(problems, status.success(), "{} stopped: {status:?}", n.name);
    }

    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for c in checked.values() {
        *by_status.entry(c.status.as_str()).or_default() += 1;
    }
    let retried = checked.values().filter(|c| c.attempts > 1).count();
    let bytes: usize = checked.values().map(|c| c.output_bytes).sum();
    let per_api = [0, 1].map(|a| accepted.iter().filter(|x| x.api == a).count());
    let moved = accepted.iter().filter(|a| a.api != specs[a.i].api).count();
    eprintln!(
        "multinode: {TOTAL} evaluations ({by_status:?}); accepted by A {}, by B {} ({moved} submissions \
         accepted by the API they were not first sent to); {} requests sent again to the other \
         API; {retried} ran more than once; restarts: 1 worker, 1 API; \
         {capped_runs} runs of {CAPPED}, at most {most} at once (cap {CAP}; {sampled} in {} \
         samples of GET /v1/queue); {:.1} MB of output checked; audit: {entries} entries; \
         nodes up in {started:.1?}, submitting {submit_time:.1?}, all ended at {run_time:.1?}, \
         checks {verify_time:.1?}, total {:.1?}",
        per_api[0],
        per_api[1],
        apis.failovers.load(Ordering::SeqCst),
        seen.samples.load(Ordering::SeqCst),
        f64::from(u32::try_from(bytes).unwrap()) / 1e6,
        t0.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
