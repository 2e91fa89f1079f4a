//! Helpers shared by the tests that run the real `assay` binary as a server (`service.rs`,
//! `tenants.rs`, `audit.rs`, `quotas.rs`, `jwt.rs`, `hygiene.rs`): start `assay serve` on a free
//! port, talk to it over HTTP, run the CLI against it.
// Each test file uses a different subset.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn runtime() -> &'static str {
    // crun is the fast runtime; fall back to runc where crun is missing (CI has both).
    if "crun"
        .parse::<assay_sandbox::RuntimeKind>()
        .unwrap()
        .find()
        .is_some()
    {
        "crun"
    } else {
        "runc"
    }
}

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The bootstrap admin key (tenant `default`).
    pub key: String,
    pub data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `assay` with `args` on the data folder `data` (the test runtime, its state under `data`),
/// without `ASSAY_URL` and `ASSAY_KEY`.
fn assay_command(args: &[&str], data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_assay"));
    cmd.args(args)
        .arg("--data")
        .arg(data)
        .arg("--runtime")
        .arg(runtime())
        .arg("--state-dir")
        .arg(data.join("state"))
        .env_remove("ASSAY_URL")
        .env_remove("ASSAY_KEY");
    cmd
}

pub fn spawn_assay(args: &[&str], data: &Path) -> Child {
    assay_command(args, data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("assay starts")
}

/// How [`serve_with`] starts the server, beyond [`serve`]'s arguments.
#[derive(Default)]
pub struct ServeOptions<'a> {
    /// Extra environment variables of the server process.
    pub env: &'a [(&'a str, &'a str)],
    /// Everything the server prints (stdout and stderr) is appended to this file.
    pub log: Option<&'a Path>,
    /// No bootstrap key is expected (an operator admin key is configured): `Server::key` is
    /// empty.
    pub no_bootstrap_key: bool,
}

/// [`serve`] with options: environment, output captured to a file (the hygiene tests grep it
/// for secrets), no bootstrap key.
pub fn serve_with(data: &Path, extra: &[&str], opts: ServeOptions<'_>) -> Server {
    use std::io::Write;
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let stderr = match opts.log {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap(),
        ),
        None => Stdio::null(),
    };
    let mut child = assay_command(&args, data)
        .envs(opts.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("assay starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let mut log = opts.log.map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    });
    if let Some(f) = log.as_mut() {
        f.write_all(line.as_bytes()).unwrap();
    }
    // The rest of stdout goes on to the log (or nowhere) until the server exits.
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{l}");
            }
        }
    });
    let url = line
        .trim()
        .strip_prefix("assay: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let key = if opts.no_bootstrap_key {
        String::new()
    } else {
        std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_string()
    };
    Server {
        child,
        url,
        key,
        data: data.to_path_buf(),
    }
}

/// Starts `assay serve` on a free port and waits for its "listening on" line.
pub fn serve(data: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = spawn_assay(&args, data);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("assay: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    Server {
        child,
        url,
        key,
        data: data.to_path_buf(),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

impl Server {
    pub fn req(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        c.request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key)
    }

    pub async fn submit(&self, c: &reqwest::Client, body: Value) -> Value {
        let r = self
            .req(c, reqwest::Method::POST, "/v1/evaluations")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    pub async fn get(&self, c: &reqwest::Client, id: &str) -> Value {
        let r = self
            .req(c, reqwest::Method::GET, &format!("/v1/evaluations/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Polls until every id is terminal (bounded).
    pub async fn wait_all(
        &self,
        c: &reqwest::Client,
        ids: &[String],
        limit: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut done: BTreeMap<String, Value> = BTreeMap::new();
        while done.len() < ids.len() {
            assert!(
                Instant::now() < deadline,
                "{} of {} finished in time",
                done.len(),
                ids.len()
            );
            for id in ids {
                if done.contains_key(id) {
                    continue;
                }
                let ev = self.get(c, id).await;
                if !matches!(ev["status"].as_str(), Some("queued" | "running")) {
                    done.insert(id.clone(), ev);
                }
            }
            if done.len() < ids.len() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        ids.iter().map(|id| done.remove(id).unwrap()).collect()
    }

    /// The whole SSE stream of a finished evaluation, parsed as (id, event, data).
    pub async fn events(
        &self,
        c: &reqwest::Client,
        id: &str,
        last_event_id: Option<i64>,
    ) -> Vec<(i64, String, String)> {
        let mut r = self.req(
            c,
            reqwest::Method::GET,
            &format!("/v1/evaluations/{id}/events"),
        );
        if let Some(l) = last_event_id {
            r = r.header("Last-Event-ID", l.to_string());
        }
        let text = r.send().await.unwrap().text().await.unwrap();
        parse_sse(&text)
    }
}

pub fn parse_sse(text: &str) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if let Some(id) = id {
            out.push((id, event, data));
        }
    }
    out
}

pub fn py(code: &str) -> Value {
    json!({"language": "python", "code": code})
}

/// A request to `path` on `s` with `key` (none: no Authorization header).
pub fn call(
    s: &Server,
    c: &reqwest::Client,
    key: Option<&str>,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let rb = c.request(method, format!("{}{path}", s.url));
    match key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

/// An answer: status, headers and the JSON body (Null if the body is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `Retry-After` header (seconds), if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get(reqwest::header::RETRY_AFTER).map(|v| {
            v.to_str()
                .unwrap()
                .parse::<u64>()
                .expect("Retry-After is seconds")
        })
    }

    /// The `X-Request-Id` header, which every answer has (checked for its shape).
    pub fn request_id(&self) -> String {
        let id = self
            .headers
            .get("x-request-id")
            .expect("every answer has an X-Request-Id")
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.starts_with("req_") && id.len() == 36, "{id}");
        id
    }
}

/// Sends; returns the whole [`Answer`].
pub async fn send(rb: reqwest::RequestBuilder) -> Answer {
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Sends; returns the status and the JSON body (Null if the body is not JSON).
pub async fn send_pair(rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let a = send(rb).await;
    (a.status, a.body)
}

/// A status and a JSON body: an [`Answer`] or a `(StatusCode, Value)` pair.
pub trait Reply {
    fn status(&self) -> StatusCode;
    fn body(&self) -> &Value;
}

impl Reply for Answer {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn body(&self) -> &Value {
        &self.body
    }
}

impl Reply for (StatusCode, Value) {
    fn status(&self) -> StatusCode {
        self.0
    }
    fn body(&self) -> &Value {
        &self.1
    }
}

/// Asserts an error answer: its status and stable code.
pub fn assert_error_code(got: &impl Reply, status: StatusCode, code: &str, what: &str) {
    assert_eq!(got.status(), status, "{what}: {}", got.body());
    assert_eq!(got.body()["error"]["code"], code, "{what}: {}", got.body());
}

/// Asserts an error answer: its status, stable code and a non-empty message.
pub fn assert_error(got: &impl Reply, status: StatusCode, code: &str, what: &str) {
    assert_error_code(got, status, code, what);
    assert!(
        !got.body()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{what}: an error has a message: {}",
        got.body()
    );
}

/// Runs the `assay` CLI; with a server, `ASSAY_URL` and `ASSAY_KEY` point at it (with `key`),
/// without, both are unset. `ASSAY_DATA` is always unset.
pub fn assay_cli(server: Option<(&Server, &str)>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_assay"));
    cmd.args(args);
    match server {
        Some((s, key)) => cmd.env("ASSAY_URL", &s.url).env("ASSAY_KEY", key),
        None => cmd.env_remove("ASSAY_URL").env_remove("ASSAY_KEY"),
    };
    cmd.env_remove("ASSAY_DATA").output().expect("assay runs")
}

/// Standard output of a CLI run, as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error of a CLI run, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `assay serve` (a free port, no slots) on the data folder `data` with `extra` arguments
/// and `env`, which must refuse to start: its standard error.
pub fn serve_refused(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_assay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--slots", "0"])
        .args(extra)
        .arg("--data")
        .arg(data)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    stderr(&out)
}
