//! The client commands: talk to an Assay server over its HTTP API.
//!
//! `submit`, `logs`, `get`, `list`, `cancel`, `batch` and `keys` (in `crate::keys`). Where the
//! server is and which key to present come from [`Connection`]: a flag, then the environment
//! (both through clap), then the config file, then the defaults (`http://127.0.0.1:8080`, and
//! the admin key the server writes to `./assay-data/admin.key` on first start).
//!
//! Exit codes: 0 success; 1 the program (or a program of a batch) did not succeed; 2 a client
//! error (bad input, or a 4xx answer); 3 the platform failed (connection failure, 5xx, or an
//! evaluation that ended `errored` or `dead`).

use anyhow::{Context, Result, anyhow, bail};
use assay_domain::{
    EvaluationStatus, LimitPolicy, SubmitRequest, format_size, parse_duration, parse_size,
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// The server URL when neither a flag, the environment nor the config file names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Where `assay serve` (with its default data directory) writes the admin key on first start.
const ADMIN_KEY_FILE: &str = "assay-data/admin.key";
/// Most items `POST /v1/evaluations/batch` takes at once.
const BATCH_CHUNK: usize = 1000;
/// Largest page `GET /v1/evaluations` serves.
const MAX_PAGE: u32 = 1000;
/// How long one long-poll (`?wait=`) asks the server to hold the request.
const LONG_POLL_SECS: u64 = 30;
/// Time limit of an ordinary request (not a long-poll, not an event stream).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of one batch upload (up to 1000 programs).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// `logs` without `--follow` on a live evaluation: the history is over once the stream has been
/// quiet this long.
const LOGS_IDLE: Duration = Duration::from_secs(1);
/// Reconnections of an event stream in a row, without receiving anything, before giving up.
const MAX_RECONNECTS: u32 = 8;
const NO_KEY: &str =
    "no API key: pass --key, set ASSAY_KEY, or put key = \"...\" in the config file";

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Where the server is and how to authenticate.
#[derive(clap::Args, Clone, Default)]
pub struct Connection {
    /// Server URL [default: `url` in the config file, else http://127.0.0.1:8080]
    #[arg(long, env = "ASSAY_URL", global = true)]
    pub url: Option<String>,
    /// API key [default: `key` in the config file, else the admin key the server wrote to
    /// $ASSAY_DATA/admin.key or ./assay-data/admin.key]
    #[arg(long, env = "ASSAY_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// Config file [default: $XDG_CONFIG_HOME/assay/config.toml or ~/.config/assay/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Commands that talk to an Assay server.
#[derive(clap::Subcommand, Debug)]
// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ClientCommand {
    /// Submit a program to the server; print its id, or wait for (or follow) its result.
    Submit {
        /// A Python file, or a directory whose files all become the program (entrypoint main.py).
        path: PathBuf,
        /// Wait until the evaluation ends, then print its output and result like `assay run`.
        #[arg(long, conflicts_with = "follow")]
        wait: bool,
        /// Stream the output live until the evaluation ends, then print the result.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Label the evaluation (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// File whose content is the program's stdin.
        #[arg(long, value_name = "FILE")]
        stdin: Option<PathBuf>,
        /// Wall-clock limit, e.g. 3s or 500ms.
        #[arg(long)]
        timeout: Option<String>,
        /// CPU-time limit, e.g. 2s.
        #[arg(long)]
        cpu_time: Option<String>,
        /// Memory limit, e.g. 256MiB.
        #[arg(long)]
        memory: Option<String>,
        /// Output limit per stream, e.g. 1MiB.
        #[arg(long)]
        output: Option<String>,
        /// Maximum number of processes and threads.
        #[arg(long)]
        pids: Option<u32>,
        /// Priority, -100..=100 (higher runs first).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// For a directory: the file to run [default: main.py].
        #[arg(long, value_name = "PATH")]
        entrypoint: Option<String>,
        /// Submitting again with the same key returns the first evaluation instead of a new one.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Print the evaluation as JSON (with --wait or --follow: the final one, and no program
        /// output).
        #[arg(long)]
        json: bool,
    },
    /// Print an evaluation's output (stdout to stdout, stderr to stderr).
    Logs {
        /// Keep following until the evaluation ends.
        #[arg(long, short = 'f')]
        follow: bool,
        id: String,
    },
    /// Show one evaluation.
    Get {
        id: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// List evaluations, newest first.
    List {
        /// Only evaluations with this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<EvaluationStatus>,
        /// Only evaluations with this label.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
        label: Option<(String, String)>,
        /// Only evaluations created after this time (RFC 3339, or a duration ago such as 1h).
        #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
        created_after: Option<String>,
        /// Only evaluations created before this time (RFC 3339, or a duration ago such as 1h).
        #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
        created_before: Option<String>,
        /// Page size (1..=1000) [default: the server's].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Start at this cursor (from a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow the cursors to the last page.
        #[arg(long)]
        all: bool,
        /// Print the raw JSON (`{"items": [...], "next_cursor": ...}`).
        #[arg(long)]
        json: bool,
    },
    /// Cancel an evaluation (queued: at once; running: its sandbox is killed).
    Cancel {
        id: String,
        /// Print the evaluation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Submit many programs: every *.py file of a directory, or one submission per line of a
    /// JSONL file.
    Batch {
        /// A directory (each *.py file in it is one submission, labelled file=NAME) or a JSONL
        /// file (one submission object per line, as the body of POST /v1/evaluations).
        source: PathBuf,
        /// Wait until every evaluation has ended, then print a summary.
        #[arg(long)]
        wait: bool,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        concurrency: u32,
        /// Label every evaluation (repeatable; a batch=ID label is always added).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Wall-clock limit of each program that does not set its own, e.g. 3s.
        #[arg(long)]
        timeout: Option<String>,
        /// Memory limit of each program that does not set its own, e.g. 256MiB.
        #[arg(long)]
        memory: Option<String>,
        /// Priority of each program that does not set its own, -100..=100.
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Print JSON (`{"batch": ID, "items": [...]}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Manage API keys (needs an admin key): create, list, revoke.
    #[command(subcommand)]
    Keys(crate::keys::KeysCommand),
}

/// `KEY=VALUE`, as `--label` takes it.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("{s:?}: the key is empty"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_status(s: &str) -> Result<EvaluationStatus, String> {
    EvaluationStatus::parse(s).ok_or_else(|| {
        let all: Vec<&str> = EvaluationStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status {s:?} (one of: {})", all.join(", "))
    })
}

/// A time filter: RFC 3339 as given, or a duration (`1h`, `30m`) meaning that long ago.
fn parse_time_arg(s: &str) -> Result<String, String> {
    if let Ok(d) = parse_duration(s) {
        let t = SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?}: too long ago"))?;
        return Ok(humantime::format_rfc3339_seconds(t).to_string());
    }
    humantime::parse_rfc3339_weak(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?}: expected an RFC 3339 time or a duration such as 1h ({e})"))
}

// ---------------------------------------------------------------------------------------------
// Settings: flags, environment, config file, defaults
// ---------------------------------------------------------------------------------------------

/// What the config file may set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ConfigFile {
    url: Option<String>,
    key: Option<String>,
}

/// Parses the config file: `name = "value"` lines (TOML basic or literal strings), blank lines
/// and `#` comments. Known names: `url`, `key`.
fn parse_config(text: &str) -> Result<ConfigFile, String> {
    let mut cfg = ConfigFile::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: expected name = \"value\""))?;
        let name = name.trim();
        let value = parse_toml_string(rest.trim()).map_err(|e| format!("line {n}: {e}"))?;
        let slot = match name {
            "url" => &mut cfg.url,
            "key" => &mut cfg.key,
            other => {
                return Err(format!(
                    "line {n}: unknown setting {other:?} (known: url, key)"
                ));
            }
        };
        if slot.is_some() {
            return Err(format!("line {n}: {name} is set twice"));
        }
        *slot = Some(value);
    }
    Ok(cfg)
}

/// A TOML string value (`"basic"` with escapes, or `'literal'`), then an optional comment.
fn parse_toml_string(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let quote = chars.next();
    let mut out = String::new();
    let rest = match quote {
        Some('\'') => {
            let body = chars.as_str();
            let end = body.find('\'').ok_or("unterminated string")?;
            out.push_str(&body[..end]);
            &body[end + 1..]
        }
        Some('"') => {
            loop {
                match chars.next() {
                    None => return Err("unterminated string".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some(c @ ('u' | 'U')) => {
                            let len = if c == 'u' { 4 } else { 8 };
                            let hex: String = chars.by_ref().take(len).collect();
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == len)
                                .and_then(char::from_u32)
                                .ok_or_else(|| format!("invalid escape \\{c}{hex}"))?;
                            out.push(ch);
                        }
                        Some(c) => return Err(format!("invalid escape \\{c}")),
                        None => return Err("unterminated string".into()),
                    },
                    Some(c) => out.push(c),
                }
            }
            chars.as_str()
        }
        _ => return Err("expected a quoted string, e.g. url = \"http://127.0.0.1:8080\"".into()),
    };
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!("unexpected text after the value: {rest:?}"));
    }
    Ok(out)
}

/// `$XDG_CONFIG_HOME/assay/config.toml`, else `$HOME/.config/assay/config.toml`.
fn default_config_path(
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    match xdg_config_home.filter(|x| !x.is_empty()) {
        Some(x) => Some(PathBuf::from(x).join("assay/config.toml")),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".config/assay/config.toml")),
    }
}

fn load_config(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    parse_config(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
}

/// Where to connect, with which key.
#[derive(Clone, PartialEq, Eq)]
struct Settings {
    url: String,
    key: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        let key = format!("<{} characters>", self.key.len());
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("key", &key)
            .finish()
    }
}

/// Flag or environment (already merged by clap), then the config file (`--config`, which must
/// exist, else `default_config` if it exists), then the defaults.
fn resolve_settings(
    conn: &Connection,
    default_config: Option<PathBuf>,
    admin_key_file: &Path,
) -> Result<Settings> {
    let nonempty = |s: &Option<String>| {
        s.as_ref()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let file = match &conn.config {
        Some(path) => load_config(path)?,
        None => match default_config {
            Some(path) if path.exists() => load_config(&path)?,
            _ => ConfigFile::default(),
        },
    };
    let url = nonempty(&conn.url)
        .or_else(|| nonempty(&file.url))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let key = match nonempty(&conn.key).or_else(|| nonempty(&file.key)) {
        Some(k) => k,
        None if admin_key_file.is_file() => {
            let k = std::fs::read_to_string(admin_key_file)
                .with_context(|| format!("reading {}", admin_key_file.display()))?;
            let k = k.trim().to_string();
            if k.is_empty() {
                bail!("{} is empty; {NO_KEY}", admin_key_file.display());
            }
            k
        }
        None => bail!("{NO_KEY}"),
    };
    Ok(Settings { url, key })
}

// ---------------------------------------------------------------------------------------------
// The API: requests, errors, evaluations
// ---------------------------------------------------------------------------------------------

/// A failed API call.
#[derive(Debug)]
pub(crate) enum ApiFailure {
    /// The server answered with an error.
    Status {
        status: u16,
        code: String,
        message: String,
        details: Option<Value>,
    },
    /// The server could not be reached, or the connection broke.
    Connection { url: String, reason: String },
    /// The server answered something that is not what the API promises.
    BadResponse(String),
}

impl ApiFailure {
    /// 2 for a client error (4xx); 3 when the server or the connection failed.
    fn exit_code(&self) -> u8 {
        match self {
            ApiFailure::Status { status, .. } if (400..500).contains(status) => 2,
            _ => 3,
        }
    }

    fn from_reqwest(url: &str, e: &reqwest::Error) -> ApiFailure {
        ApiFailure::Connection {
            url: url.to_string(),
            reason: root_cause(e),
        }
    }

    /// The error line and what follows it.
    fn report(&self) -> String {
        let mut out = match self {
            ApiFailure::Status { code, message, .. } => format!("error: {message} ({code})"),
            ApiFailure::Connection { url, reason } => {
                format!("error: cannot reach the server at {url}: {reason} (connection_failed)")
            }
            ApiFailure::BadResponse(m) => {
                format!("error: unexpected answer from the server: {m} (bad_response)")
            }
        };
        if let ApiFailure::Status {
            details: Some(details),
            ..
        } = self
        {
            for line in describe_details(details) {
                out.push_str("\n  ");
                out.push_str(&line);
            }
        }
        out
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report())
    }
}

impl std::error::Error for ApiFailure {}

/// An error already printed: exit with this code and print nothing more.
#[derive(Debug)]
struct Reported(u8);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(reported, exit code {})", self.0)
    }
}

impl std::error::Error for Reported {}

/// Human lines for an error's `details`.
fn describe_details(details: &Value) -> Vec<String> {
    if details.is_null() {
        return Vec::new();
    }
    if let Some(errors) = details.get("errors").and_then(Value::as_array) {
        const SHOWN: usize = 20;
        let mut lines: Vec<String> = errors
            .iter()
            .take(SHOWN)
            .map(|e| {
                let mut line = String::new();
                if let Some(src) = e.get("source").and_then(Value::as_str) {
                    line.push_str(src);
                } else if let Some(i) = e.get("index").and_then(Value::as_u64) {
                    line.push_str(&format!("item {i}"));
                }
                if !line.is_empty() {
                    line.push_str(": ");
                }
                line.push_str(
                    e.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("invalid"),
                );
                if let Some(code) = e.get("code").and_then(Value::as_str) {
                    line.push_str(&format!(" ({code})"));
                }
                line
            })
            .collect();
        if errors.len() > SHOWN {
            lines.push(format!("… and {} more", errors.len() - SHOWN));
        }
        return lines;
    }
    if let (Some(file), Some(line)) = (
        details.get("file").and_then(Value::as_str),
        details.get("line").and_then(Value::as_u64),
    ) {
        let col = details.get("column").and_then(Value::as_u64);
        return vec![match col {
            Some(c) => format!("at {file}:{line}:{c}"),
            None => format!("at {file}:{line}"),
        }];
    }
    vec![format!("details: {details}")]
}

/// The innermost source of an error (`Connection refused (os error 111)` rather than reqwest's
/// and hyper's wrappers), or `timed out`.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The error of a non-2xx answer: the API's `{"error": {...}}`, or the HTTP status.
fn failure_from_body(status: u16, reason: Option<&str>, body: &str) -> ApiFailure {
    #[derive(Deserialize)]
    struct Body {
        error: Info,
    }
    #[derive(Deserialize)]
    struct Info {
        code: String,
        message: String,
        #[serde(default)]
        details: Option<Value>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) => ApiFailure::Status {
            status,
            code: b.error.code,
            message: b.error.message,
            details: b.error.details,
        },
        Err(_) => {
            let mut message = format!("HTTP {status}");
            if let Some(r) = reason {
                message.push(' ');
                message.push_str(r);
            }
            let snippet: String = body.trim().chars().take(200).collect();
            if !snippet.is_empty() {
                message.push_str(": ");
                message.push_str(&snippet);
            }
            ApiFailure::Status {
                status,
                code: format!("http_{status}"),
                message,
                details: None,
            }
        }
    }
}

/// An evaluation as the API shows it. Lenient: fields this client does not know are ignored
/// and missing ones default, so a newer server still works.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Evaluation {
    id: String,
    status: String,
    language: Option<String>,
    entrypoint: Option<String>,
    priority: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    limits: Option<Map<String, Value>>,
    attempts: Option<u32>,
    max_attempts: Option<u32>,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    result: Option<RunView>,
    error: Option<String>,
    worker_id: Option<String>,
    cancel_requested: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct RunView {
    status: String,
    exit_code: Option<i32>,
    signal: Option<i32>,
    wall_ms: u64,
    cpu_ms: u64,
    peak_memory_bytes: u64,
    stdout: String,
    stderr: String,
    stdout_truncated: bool,
    stderr_truncated: bool,
    runtime: String,
    error: Option<String>,
}

impl Evaluation {
    fn from_value(v: &Value) -> Result<Evaluation, ApiFailure> {
        let e: Evaluation = serde_json::from_value(v.clone())
            .map_err(|e| ApiFailure::BadResponse(format!("not an evaluation: {e}")))?;
        if e.id.is_empty() || e.status.is_empty() {
            return Err(ApiFailure::BadResponse(
                "an evaluation without id or status".into(),
            ));
        }
        Ok(e)
    }

    fn known_status(&self) -> Option<EvaluationStatus> {
        EvaluationStatus::parse(&self.status)
    }

    fn is_terminal(&self) -> bool {
        match self.known_status() {
            Some(s) => s.is_terminal(),
            // A status this client does not know: trust the timestamps.
            None => self.finished_at.is_some(),
        }
    }

    fn labels_text(&self) -> String {
        self.labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Exit code for a finished evaluation: 0 succeeded; 3 the platform failed (errored, dead);
/// 1 anything else.
fn exit_code_for(e: &Evaluation) -> u8 {
    match e.known_status() {
        Some(EvaluationStatus::Succeeded) => 0,
        Some(EvaluationStatus::Errored | EvaluationStatus::Dead) => 3,
        _ => 1,
    }
}

/// The line `assay run` prints after a run, from an evaluation.
fn summary_line(e: &Evaluation) -> String {
    let mut line = format!("── {}", e.status);
    if let Some(r) = &e.result {
        line.push_str(&format!(
            " · exit {} · wall {} ms · cpu {} ms · peak {}",
            r.exit_code.map_or("-".into(), |c| c.to_string()),
            r.wall_ms,
            r.cpu_ms,
            format_size(r.peak_memory_bytes),
        ));
        if !r.runtime.is_empty() {
            line.push_str(&format!(" · {}", r.runtime));
        }
        if let Some(sig) = r.signal {
            line.push_str(&format!(" · signal {sig}"));
        }
        if r.stdout_truncated || r.stderr_truncated {
            line.push_str(" · output truncated");
        }
    }
    if let Some(a) = e.attempts.filter(|a| *a > 1) {
        match e.max_attempts {
            Some(m) => line.push_str(&format!(" · attempt {a} of {m}")),
            None => line.push_str(&format!(" · attempt {a}")),
        }
    }
    line
}

/// The error of an evaluation worth showing: the run's platform error, else the evaluation's.
fn error_text(e: &Evaluation) -> Option<&str> {
    e.result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .or(e.error.as_deref())
        .filter(|s| !s.is_empty())
}

/// How long the client waits in all, across retries, for a busy server (429/503 with
/// `Retry-After`) before it reports the error.
const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// The wait a 429 or 503 asks for (`Retry-After` in seconds, at least one).
fn retry_after(resp: &Response) -> Option<Duration> {
    if !matches!(resp.status().as_u16(), 429 | 503) {
        return None;
    }
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.max(1)))
}

pub(crate) struct Api {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Api {
    fn new(settings: &Settings) -> Result<Api> {
        let base = Url::parse(&settings.url)
            .with_context(|| format!("invalid server URL {:?}", settings.url))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!(
                "invalid server URL {:?}: expected http://HOST[:PORT]",
                settings.url
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("assay-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the HTTP client")?;
        Ok(Api {
            http,
            base,
            key: settings.key.clone(),
        })
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked: the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// A request with the key; no time limit (callers add one, except for event streams).
    pub(crate) fn req(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http
            .request(method, self.endpoint(segments))
            .bearer_auth(&self.key)
    }

    /// Sends; any answer but 2xx is an error. A 429 or 503 with `Retry-After` (rate limit,
    /// quota, full queue: the server accepted nothing) is retried after the time it asks for,
    /// up to [`MAX_BACKOFF`] in all.
    async fn send(&self, rb: RequestBuilder) -> Result<Response, ApiFailure> {
        let mut rb = rb;
        let mut waited = Duration::ZERO;
        let resp = loop {
            let again = rb.try_clone();
            let resp = rb
                .send()
                .await
                .map_err(|e| ApiFailure::from_reqwest(self.base.as_str(), &e))?;
            let wait = retry_after(&resp).filter(|w| waited + *w <= MAX_BACKOFF);
            match (again, wait) {
                (Some(again), Some(wait)) => {
                    eprintln!(
                        "assay: server busy ({}); retrying in {} s",
                        resp.status(),
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    rb = again;
                }
                _ => break resp,
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(failure_from_body(
            status.as_u16(),
            status.canonical_reason(),
            &body,
        ))
    }

    pub(crate) async fn call(&self, rb: RequestBuilder) -> Result<Value, ApiFailure> {
        let resp = self.send(rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiFailure::from_reqwest(self.base.as_str(), &e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiFailure::BadResponse(format!("invalid JSON: {e}")))
    }

    pub(crate) async fn call_as<T: DeserializeOwned>(
        &self,
        rb: RequestBuilder,
    ) -> Result<(Value, T), ApiFailure> {
        let v = self.call(rb).await?;
        let t = serde_json::from_value(v.clone())
            .map_err(|e| ApiFailure::BadResponse(e.to_string()))?;
        Ok((v, t))
    }

    async fn evaluation(&self, rb: RequestBuilder) -> Result<(Value, Evaluation), ApiFailure> {
        let v = self.call(rb).await?;
        let e = Evaluation::from_value(&v)?;
        Ok((v, e))
    }

    async fn get(&self, id: &str) -> Result<(Value, Evaluation), ApiFailure> {
        self.evaluation(
            self.req(Method::GET, &["v1", "evaluations", id])
                .timeout(REQUEST_TIMEOUT),
        )
        .await
    }

    /// One page of `GET /v1/evaluations`.
    async fn list_page(
        &self,
        query: &[(&str, String)],
    ) -> Result<(Vec<Value>, Option<String>), ApiFailure> {
        #[derive(Deserialize)]
        struct Page {
            items: Vec<Value>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let (_, page): (_, Page) = self
            .call_as(
                self.req(Method::GET, &["v1", "evaluations"])
                    .query(query)
                    .timeout(REQUEST_TIMEOUT),
            )
            .await?;
        Ok((page.items, page.next_cursor.filter(|c| !c.is_empty())))
    }

    /// Every page of `GET /v1/evaluations` (largest pages).
    async fn list_all(&self, filter: &[(&str, String)]) -> Result<Vec<Value>, ApiFailure> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let mut q = filter.to_vec();
            q.push(("limit", MAX_PAGE.to_string()));
            if let Some(c) = cursor.take() {
                q.push(("cursor", c));
            }
            let (items, next) = self.list_page(&q).await?;
            out.extend(items);
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Polls until the evaluation is terminal (long-polls with `?wait=`; sleeps between polls
    /// if the server answers at once).
    async fn wait_terminal(
        &self,
        id: &str,
        mut current: (Value, Evaluation),
    ) -> Result<(Value, Evaluation), ApiFailure> {
        let mut pause = Duration::from_millis(200);
        while !current.1.is_terminal() {
            let started = Instant::now();
            current = self
                .evaluation(
                    self.req(Method::GET, &["v1", "evaluations", id])
                        .query(&[("wait", LONG_POLL_SECS)])
                        .timeout(Duration::from_secs(LONG_POLL_SECS) + REQUEST_TIMEOUT),
                )
                .await?;
            if !current.1.is_terminal() && started.elapsed() < Duration::from_secs(1) {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
        Ok(current)
    }
}

// ---------------------------------------------------------------------------------------------
// Submissions
// ---------------------------------------------------------------------------------------------

/// The options of `assay submit` that shape the submission.
#[derive(Clone, Debug, Default)]
struct SubmitOptions {
    labels: Vec<(String, String)>,
    stdin: Option<PathBuf>,
    timeout: Option<String>,
    cpu_time: Option<String>,
    memory: Option<String>,
    output: Option<String>,
    pids: Option<u32>,
    priority: Option<i32>,
    entrypoint: Option<String>,
}

/// `limits` from the flags: only what was given. The one parser of the limit flags, for
/// `assay submit`, `assay batch` and `assay run` alike.
pub(crate) fn limits_json(
    timeout: Option<&str>,
    cpu_time: Option<&str>,
    memory: Option<&str>,
    output: Option<&str>,
    pids: Option<u32>,
) -> Result<Map<String, Value>> {
    let ms = |flag: &str, s: &str| -> Result<Value> {
        let d = parse_duration(s).with_context(|| format!("--{flag}"))?;
        Ok(json!(d.as_millis() as u64))
    };
    let bytes = |flag: &str, s: &str| -> Result<Value> {
        Ok(json!(parse_size(s).with_context(|| format!("--{flag}"))?))
    };
    let mut m = Map::new();
    if let Some(t) = timeout {
        m.insert("wall_time_ms".into(), ms("timeout", t)?);
    }
    if let Some(t) = cpu_time {
        m.insert("cpu_time_ms".into(), ms("cpu-time", t)?);
    }
    if let Some(s) = memory {
        m.insert("memory_bytes".into(), bytes("memory", s)?);
    }
    if let Some(s) = output {
        m.insert("output_bytes".into(), bytes("output", s)?);
    }
    if let Some(p) = pids {
        m.insert("pids".into(), json!(p));
    }
    Ok(m)
}

/// Every file under `dir`, relative paths with `/`, sorted. Hidden entries, `__pycache__` and
/// `*.pyc` are skipped; symbolic links to directories are not followed.
fn read_program_dir(dir: &Path) -> Result<Vec<(String, String)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "__pycache__" || name.ends_with(".pyc") {
                continue;
            }
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            if !path.is_file() {
                continue; // a link to a directory, a socket, a dangling link…
            }
            let rel = path
                .strip_prefix(root)
                .expect("walked from root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let content = String::from_utf8(bytes).map_err(|_| {
                anyhow!(
                    "{} is not UTF-8 text (only text files can be submitted)",
                    path.display()
                )
            })?;
            out.push((rel, content));
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// The body of `POST /v1/evaluations` for a file (`code`) or a directory (`files`).
fn build_submission(path: &Path, opts: &SubmitOptions) -> Result<Value> {
    let mut body = Map::new();
    body.insert("language".into(), json!("python"));
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        let files = read_program_dir(path)?;
        if files.is_empty() {
            bail!("{} has no files", path.display());
        }
        let entry = opts.entrypoint.clone().unwrap_or_else(|| "main.py".into());
        if !files.iter().any(|(p, _)| *p == entry) {
            bail!(
                "{} has no {entry}: name the file to run with --entrypoint",
                path.display()
            );
        }
        let files: Vec<Value> = files
            .into_iter()
            .map(|(p, c)| json!({"path": p, "content": c}))
            .collect();
        body.insert("files".into(), Value::Array(files));
        body.insert("entrypoint".into(), json!(entry));
    } else {
        if opts.entrypoint.is_some() {
            bail!("--entrypoint applies to a directory only");
        }
        let code =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        body.insert("code".into(), json!(code));
    }
    if let Some(p) = &opts.stdin {
        let stdin = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let stdin = String::from_utf8(stdin)
            .map_err(|_| anyhow!("{}: stdin must be UTF-8 text", p.display()))?;
        body.insert("stdin".into(), json!(stdin));
    }
    let limits = limits_json(
        opts.timeout.as_deref(),
        opts.cpu_time.as_deref(),
        opts.memory.as_deref(),
        opts.output.as_deref(),
        opts.pids,
    )?;
    if !limits.is_empty() {
        body.insert("limits".into(), Value::Object(limits));
    }
    if let Some(p) = opts.priority {
        body.insert("priority".into(), json!(p));
    }
    if !opts.labels.is_empty() {
        let labels: Map<String, Value> = opts
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        body.insert("labels".into(), Value::Object(labels));
    }
    Ok(Value::Object(body))
}

/// One submission of a batch, and where it came from (`a.py`, `line 7`).
#[derive(Clone, Debug, PartialEq)]
struct BatchItem {
    source: String,
    body: Map<String, Value>,
}

/// One submission per `*.py` file of `dir` (not recursive), labelled `file=NAME`.
fn batch_from_dir(dir: &Path) -> Result<Vec<BatchItem>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") && !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        bail!("{} has no *.py files", dir.display());
    }
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let code = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut body = Map::new();
            body.insert("language".into(), json!("python"));
            body.insert("code".into(), json!(code));
            body.insert("labels".into(), json!({"file": name}));
            Ok(BatchItem { source: name, body })
        })
        .collect()
}

/// One submission object per line; blank lines are skipped; `language` defaults to python.
/// Errors name the line.
fn batch_from_jsonl(text: &str) -> Result<Vec<BatchItem>, String> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("line {n}: invalid JSON: {e}"))?;
        let Value::Object(mut body) = value else {
            return Err(format!(
                "line {n}: expected a JSON object (one submission per line)"
            ));
        };
        body.entry("language").or_insert_with(|| json!("python"));
        serde_json::from_value::<SubmitRequest>(Value::Object(body.clone()))
            .map_err(|e| format!("line {n}: not a submission: {e}"))?;
        items.push(BatchItem {
            source: format!("line {n}"),
            body,
        });
    }
    if items.is_empty() {
        return Err("no submissions (the file is empty)".into());
    }
    Ok(items)
}

/// Adds labels and default limits/priority to every item (an item's own values win, except
/// the `batch` label, which is the client's).
fn apply_batch_defaults(
    items: &mut [BatchItem],
    labels: &[(String, String)],
    batch_id: &str,
    limits: &Map<String, Value>,
    priority: Option<i32>,
) {
    for item in items {
        let l = item.body.entry("labels").or_insert_with(|| json!({}));
        if !l.is_object() {
            *l = json!({});
        }
        let l = l.as_object_mut().expect("an object");
        for (k, v) in labels {
            l.entry(k.clone()).or_insert_with(|| json!(v));
        }
        l.insert("batch".into(), json!(batch_id));
        if !limits.is_empty() {
            let m = item.body.entry("limits").or_insert_with(|| json!({}));
            if let Some(m) = m.as_object_mut() {
                for (k, v) in limits {
                    m.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        if let Some(p) = priority {
            item.body.entry("priority").or_insert_with(|| json!(p));
        }
    }
}

/// Checks what does not depend on the server's policy (shape, syntax, labels, priority, stdin),
/// so that a large batch is not half-submitted before one bad item is found. Limits are left to
/// the server, whose maxima this client does not know.
fn precheck(items: &[BatchItem]) -> Vec<String> {
    let policy = LimitPolicy::default();
    let mut errors = Vec::new();
    for item in items {
        let req = match serde_json::from_value::<SubmitRequest>(Value::Object(item.body.clone())) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{}: {e} (invalid_request)", item.source));
                continue;
            }
        };
        if let Err(e) = req.validate(&policy)
            && !matches!(e.code(), "limit_exceeded" | "invalid_limit")
        {
            errors.push(format!("{}: {e} ({})", item.source, e.code()));
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

pub(crate) fn out_write(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

pub(crate) fn err_write(bytes: &[u8]) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(bytes)?;
    err.flush()
}

pub(crate) fn print_json(v: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    out_write(s.as_bytes())?;
    Ok(())
}

/// Like `assay run`: the program's stdout and stderr, then the summary (and error) on stderr.
fn print_result(e: &Evaluation, with_output: bool) -> Result<()> {
    if with_output && let Some(r) = &e.result {
        out_write(r.stdout.as_bytes())?;
        err_write(r.stderr.as_bytes())?;
    }
    let mut s = summary_line(e);
    s.push('\n');
    if let Some(err) = error_text(e) {
        s.push_str(&format!("   error: {err}\n"));
    }
    err_write(s.as_bytes())?;
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

/// Limits in the order of `assay_domain::Limits` (JSON maps here are sorted), then any others.
fn format_limits(limits: &Map<String, Value>) -> String {
    const ORDER: [&str; 9] = [
        "wall_time_ms",
        "cpu_time_ms",
        "memory_bytes",
        "pids",
        "output_bytes",
        "tmpfs_bytes",
        "open_files",
        "file_size_bytes",
        "cpu_millicores",
    ];
    let known = ORDER.iter().filter_map(|k| limits.get_key_value(*k));
    let others = limits.iter().filter(|(k, _)| !ORDER.contains(&k.as_str()));
    known
        .chain(others)
        .map(|(k, v)| {
            let n = v.as_u64();
            match (k.strip_suffix("_ms"), k.strip_suffix("_bytes"), n) {
                (Some(name), _, Some(n)) => format!("{name} {}", format_ms(n)),
                (_, Some(name), Some(n)) => format!("{name} {}", format_size(n)),
                (_, _, Some(n)) if k == "cpu_millicores" => format!("cpu {n}m"),
                _ => format!("{k} {v}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// An API time for a table: `2025-01-02 03:04:05` (UTC), or as given if it does not parse.
pub(crate) fn short_time(s: &str) -> String {
    match parse_time(s) {
        Some(t) => humantime::format_rfc3339_seconds(t)
            .to_string()
            .trim_end_matches('Z')
            .replace('T', " "),
        None => s.to_string(),
    }
}

fn millis_between(a: &str, b: &str) -> Option<u128> {
    let (a, b) = (parse_time(a)?, parse_time(b)?);
    b.duration_since(a).ok().map(|d| d.as_millis())
}

/// The first `max` lines of `text`, and how many lines were left out.
fn excerpt(text: &str, max: usize) -> (Vec<&str>, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let shown = lines.len().min(max);
    (lines[..shown].to_vec(), lines.len() - shown)
}

/// `assay get`: a readable view.
fn render_evaluation(e: &Evaluation) -> String {
    fn row(s: &mut String, name: &str, value: String) {
        s.push_str(&format!("{name:<10} {value}\n"));
    }
    let mut s = String::new();
    row(&mut s, "id", e.id.clone());
    let mut status = e.status.clone();
    if e.cancel_requested == Some(true) && !e.is_terminal() {
        status.push_str(" (cancel requested)");
    }
    row(&mut s, "status", status);
    let mut program = e.language.clone().unwrap_or_else(|| "?".into());
    if let Some(ep) = &e.entrypoint {
        program.push_str(&format!(" · entrypoint {ep}"));
    }
    row(&mut s, "program", program);
    if let Some(p) = e.priority {
        row(&mut s, "priority", p.to_string());
    }
    let labels = e.labels_text();
    if !labels.is_empty() {
        row(&mut s, "labels", labels);
    }
    if let Some(c) = &e.created_at {
        row(&mut s, "created", short_time(c));
    }
    if let Some(st) = &e.started_at {
        let waited = e
            .created_at
            .as_deref()
            .and_then(|c| millis_between(c, st))
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
    if let Some(a) = e.attempts {
        let mut v = a.to_string();
        if let Some(m) = e.max_attempts {
            v.push_str(&format!(" of {m}"));
        }
        if let Some(w) = &e.worker_id {
            v.push_str(&format!(" · worker {w}"));
        }
        row(&mut s, "attempts", v);
    }
    if let Some(l) = &e.limits {
        row(&mut s, "limits", format_limits(l));
    }
    if let Some(r) = &e.result {
        let mut v = format!(
            "{} · exit {} · wall {} ms · cpu {} ms · peak {}",
            r.status,
            r.exit_code.map_or("-".into(), |c| c.to_string()),
            r.wall_ms,
            r.cpu_ms,
            format_size(r.peak_memory_bytes)
        );
        if !r.runtime.is_empty() {
            v.push_str(&format!(" · {}", r.runtime));
        }
        if let Some(sig) = r.signal {
            v.push_str(&format!(" · signal {sig}"));
        }
        row(&mut s, "result", v);
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

/// `assay list`: a table.
fn render_table(items: &[Evaluation]) -> String {
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                e.status.clone(),
                e.created_at.as_deref().map(short_time).unwrap_or_default(),
                e.result
                    .as_ref()
                    .map_or("-".into(), |r| r.wall_ms.to_string()),
                e.labels_text(),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "CREATED (UTC)", "WALL MS", "LABELS"];
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    let mut s = line(header);
    for r in &rows {
        s.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    s
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
fn render_batch_summary(finals: &[(String, Evaluation)]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, e) in finals {
        *counts.entry(e.status.as_str()).or_default() += 1;
    }
    // Known statuses in lifecycle order, then any other.
    let mut order: Vec<&str> = EvaluationStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| counts.contains_key(s))
        .collect();
    for k in counts.keys() {
        if !order.contains(k) {
            order.push(k);
        }
    }
    let mut s = String::new();
    s.push_str(&format!("{:<16} {:>7}\n", "STATUS", "COUNT"));
    for k in order {
        s.push_str(&format!("{k:<16} {:>7}\n", counts[k]));
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
    let failed: Vec<&(String, Evaluation)> = finals
        .iter()
        .filter(|(_, e)| e.known_status() != Some(EvaluationStatus::Succeeded))
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

// ---------------------------------------------------------------------------------------------
// Event streams
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamMode {
    /// Until the `result` event, reconnecting with `Last-Event-ID` when the connection drops.
    UntilResult,
    /// Until the `result` event or until the stream has been quiet this long.
    UntilIdle(Duration),
}

#[derive(Default)]
struct StreamOutcome {
    /// The final evaluation, from the `result` event.
    result: Option<(Value, Evaluation)>,
    /// Whether any output event arrived.
    saw_output: bool,
}

/// Reads `GET /v1/evaluations/{id}/events`, writing output chunks as they come (unless
/// `print` is false).
async fn stream_events(
    api: &Api,
    id: &str,
    mode: StreamMode,
    print: bool,
) -> Result<StreamOutcome> {
    let mut outcome = StreamOutcome::default();
    let mut last_id: Option<String> = None;
    let mut failures = 0u32;
    let mut attempt_seen = 0u64;
    let mut last_failure: Option<ApiFailure> = None;
    loop {
        if failures > 0 {
            if failures > MAX_RECONNECTS {
                return Err(last_failure
                    .unwrap_or_else(|| {
                        ApiFailure::BadResponse("the event stream keeps ending".into())
                    })
                    .into());
            }
            let pause = Duration::from_millis(200 * (1 << failures.min(5)));
            tokio::time::sleep(pause).await;
        }
        let mut rb = api
            .req(Method::GET, &["v1", "evaluations", id, "events"])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(l) = &last_id {
            rb = rb.header("Last-Event-ID", l);
        }
        let resp = match api.send(rb).await {
            Ok(r) => r,
            Err(f @ ApiFailure::Status { status, .. }) if status < 500 => return Err(f.into()),
            Err(f) => {
                failures += 1;
                last_failure = Some(f);
                continue;
            }
        };
        let mut events = resp.bytes_stream().eventsource();
        loop {
            let next = match mode {
                StreamMode::UntilResult => events.next().await,
                StreamMode::UntilIdle(idle) => {
                    match tokio::time::timeout(idle, events.next()).await {
                        Ok(n) => n,
                        Err(_) => return Ok(outcome),
                    }
                }
            };
            let ev = match next {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    last_failure = Some(ApiFailure::Connection {
                        url: api.base.to_string(),
                        reason: format!("the event stream broke: {e}"),
                    });
                    break;
                }
                None => {
                    last_failure = Some(ApiFailure::BadResponse(
                        "the event stream ended before the result".into(),
                    ));
                    break;
                }
            };
            failures = 0;
            if !ev.id.is_empty() {
                last_id = Some(ev.id.clone());
            }
            match ev.event.as_str() {
                "stdout" | "stderr" => {
                    outcome.saw_output = true;
                    if print {
                        let text = serde_json::from_str::<String>(&ev.data).unwrap_or(ev.data);
                        if ev.event == "stdout" {
                            out_write(text.as_bytes())?;
                        } else {
                            err_write(text.as_bytes())?;
                        }
                    }
                }
                "status" => {
                    let attempt = serde_json::from_str::<Value>(&ev.data)
                        .ok()
                        .and_then(|v| v.get("attempt").and_then(Value::as_u64))
                        .unwrap_or(0);
                    if print && attempt > 1 && attempt > attempt_seen {
                        let note = format!(
                            "── attempt {attempt}: the platform failed; the program starts again\n"
                        );
                        err_write(note.as_bytes())?;
                    }
                    attempt_seen = attempt_seen.max(attempt);
                }
                "result" => {
                    let v: Value = serde_json::from_str(&ev.data)
                        .map_err(|e| ApiFailure::BadResponse(format!("result event: {e}")))?;
                    let e = Evaluation::from_value(&v)?;
                    outcome.result = Some((v, e));
                    return Ok(outcome);
                }
                _ => {}
            }
        }
        if mode != StreamMode::UntilResult {
            return Err(last_failure
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow!("the event stream ended")));
        }
        failures += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// Runs one client command. API failures are printed (`error: <message> (<code>)`) and become
/// exit code 2 (4xx) or 3 (connection failure, 5xx); local errors (bad files, flags, config)
/// are returned.
pub async fn run(cmd: ClientCommand, conn: &Connection) -> Result<ExitCode> {
    let api = connect(conn)?;
    report(dispatch(cmd, &api).await)
}

/// The API client of the client commands: URL and key from the flags, the environment, the
/// config file, or the admin key file of the data folder.
pub(crate) fn connect(conn: &Connection) -> Result<Api> {
    let default_config = default_config_path(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    );
    // The server's data directory: `--data`/`ASSAY_DATA` of `assay serve`, default ./assay-data.
    let admin_key = std::env::var_os("ASSAY_DATA")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("admin.key"))
        .unwrap_or_else(|| PathBuf::from(ADMIN_KEY_FILE));
    let settings = resolve_settings(conn, default_config, &admin_key)?;
    Api::new(&settings)
}

/// A client command's exit status: API failures are reported (and give their exit code) like
/// every client command's.
pub(crate) fn report(outcome: Result<u8>) -> Result<ExitCode> {
    match outcome {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            if let Some(Reported(code)) = e.downcast_ref::<Reported>() {
                return Ok(ExitCode::from(*code));
            }
            if let Some(f) = e.downcast_ref::<ApiFailure>() {
                eprintln!("{}", f.report());
                return Ok(ExitCode::from(f.exit_code()));
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                // Our reader went away (`| head`): nothing more to say.
                return Ok(ExitCode::SUCCESS);
            }
            Err(e)
        }
    }
}

async fn dispatch(cmd: ClientCommand, api: &Api) -> Result<u8> {
    match cmd {
        ClientCommand::Submit {
            path,
            wait,
            follow,
            labels,
            stdin,
            timeout,
            cpu_time,
            memory,
            output,
            pids,
            priority,
            entrypoint,
            idempotency_key,
            json,
        } => {
            let opts = SubmitOptions {
                labels,
                stdin,
                timeout,
                cpu_time,
                memory,
                output,
                pids,
                priority,
                entrypoint,
            };
            let body = build_submission(&path, &opts)?;
            submit(api, &body, idempotency_key.as_deref(), wait, follow, json).await
        }
        ClientCommand::Logs { follow, id } => logs(api, &id, follow).await,
        ClientCommand::Keys(cmd) => crate::keys::run(cmd, api).await,
        ClientCommand::Get { id, json } => {
            let (raw, e) = api.get(&id).await?;
            if json {
                print_json(&raw)?;
            } else {
                out_write(render_evaluation(&e).as_bytes())?;
            }
            Ok(0)
        }
        ClientCommand::List {
            status,
            label,
            created_after,
            created_before,
            limit,
            cursor,
            all,
            json,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(s) = status {
                q.push(("status", s.as_str().to_string()));
            }
            if let Some((k, v)) = label {
                q.push(("label", format!("{k}={v}")));
            }
            if let Some(t) = created_after {
                q.push(("created_after", t));
            }
            if let Some(t) = created_before {
                q.push(("created_before", t));
            }
            list(api, q, limit, cursor, all, json).await
        }
        ClientCommand::Cancel { id, json } => {
            let (raw, e) = api
                .evaluation(
                    api.req(Method::POST, &["v1", "evaluations", &id, "cancel"])
                        .timeout(REQUEST_TIMEOUT),
                )
                .await?;
            if json {
                print_json(&raw)?;
            } else if e.is_terminal() {
                out_write(format!("{}: {}\n", e.id, e.status).as_bytes())?;
            } else {
                out_write(format!("{}: cancel requested ({} now)\n", e.id, e.status).as_bytes())?;
            }
            Ok(0)
        }
        ClientCommand::Batch {
            source,
            wait,
            concurrency,
            labels,
            timeout,
            memory,
            priority,
            json,
        } => {
            let mut items = if source.is_dir() {
                batch_from_dir(&source)?
            } else {
                let text = std::fs::read_to_string(&source)
                    .with_context(|| format!("reading {}", source.display()))?;
                batch_from_jsonl(&text).map_err(|e| anyhow!("{}: {e}", source.display()))?
            };
            let limits = limits_json(timeout.as_deref(), None, memory.as_deref(), None, None)?;
            let batch_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
            apply_batch_defaults(&mut items, &labels, &batch_id, &limits, priority);
            let errors = precheck(&items);
            if !errors.is_empty() {
                let mut msg = format!(
                    "{} of {} submissions are invalid; nothing was sent:",
                    errors.len(),
                    items.len()
                );
                for e in errors.iter().take(20) {
                    msg.push_str(&format!("\n  {e}"));
                }
                if errors.len() > 20 {
                    msg.push_str(&format!("\n  … and {} more", errors.len() - 20));
                }
                bail!("{msg}");
            }
            batch(api, &items, &batch_id, wait, concurrency as usize, json).await
        }
    }
}

async fn submit(
    api: &Api,
    body: &Value,
    idempotency_key: Option<&str>,
    wait: bool,
    follow: bool,
    json: bool,
) -> Result<u8> {
    let mut rb = api.req(Method::POST, &["v1", "evaluations"]).json(body);
    rb = if wait {
        rb.query(&[("wait", LONG_POLL_SECS)])
            .timeout(Duration::from_secs(LONG_POLL_SECS) + REQUEST_TIMEOUT)
    } else {
        rb.timeout(REQUEST_TIMEOUT)
    };
    if let Some(k) = idempotency_key {
        rb = rb.header("Idempotency-Key", k);
    }
    let (raw, e) = api.evaluation(rb).await?;
    if !wait && !follow {
        if json {
            print_json(&raw)?;
        } else {
            out_write(format!("{}\n", e.id).as_bytes())?;
        }
        return Ok(0);
    }
    let id = e.id.clone();
    let (raw, e) = if wait {
        api.wait_terminal(&id, (raw, e)).await?
    } else {
        let outcome = stream_events(api, &id, StreamMode::UntilResult, !json).await?;
        outcome
            .result
            .ok_or_else(|| anyhow!("the event stream ended without a result"))?
    };
    if json {
        print_json(&raw)?;
    } else {
        print_result(&e, wait)?;
    }
    Ok(exit_code_for(&e))
}

async fn logs(api: &Api, id: &str, follow: bool) -> Result<u8> {
    if follow {
        stream_events(api, id, StreamMode::UntilResult, true).await?;
        return Ok(0);
    }
    let (_, e) = api.get(id).await?;
    let terminal = e.is_terminal();
    let mode = if terminal {
        StreamMode::UntilResult
    } else {
        StreamMode::UntilIdle(LOGS_IDLE)
    };
    let outcome = stream_events(api, id, mode, true).await?;
    if terminal && !outcome.saw_output {
        // A server that keeps no event history: the result still has the output.
        let final_eval = outcome.result.map(|(_, e)| e).unwrap_or(e);
        if let Some(r) = &final_eval.result {
            out_write(r.stdout.as_bytes())?;
            err_write(r.stderr.as_bytes())?;
        }
    }
    Ok(0)
}

async fn list(
    api: &Api,
    filter: Vec<(&str, String)>,
    limit: Option<u32>,
    cursor: Option<String>,
    all: bool,
    json: bool,
) -> Result<u8> {
    let mut items = Vec::new();
    let mut cursor = cursor;
    let next = loop {
        let mut q = filter.clone();
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor.take() {
            q.push(("cursor", c));
        }
        let (page, next) = api.list_page(&q).await?;
        items.extend(page);
        match next {
            Some(c) if all => cursor = Some(c),
            other => break other,
        }
    };
    if json {
        print_json(&json!({"items": items, "next_cursor": next}))?;
        return Ok(0);
    }
    let evals = items
        .iter()
        .map(Evaluation::from_value)
        .collect::<Result<Vec<_>, _>>()?;
    if evals.is_empty() {
        err_write(b"no evaluations\n")?;
    } else {
        out_write(render_table(&evals).as_bytes())?;
    }
    if let Some(c) = next {
        err_write(format!("more: --cursor {c}, or --all\n").as_bytes())?;
    }
    Ok(0)
}

fn progress_bar(total: usize) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(total as u64), target);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}

async fn batch(
    api: &Api,
    items: &[BatchItem],
    batch_id: &str,
    wait: bool,
    concurrency: usize,
    json: bool,
) -> Result<u8> {
    let pb = progress_bar(items.len());
    pb.set_prefix("submitting");
    pb.enable_steady_tick(Duration::from_millis(250));
    let chunks: Vec<(usize, &[BatchItem])> = items
        .chunks(BATCH_CHUNK)
        .enumerate()
        .map(|(i, c)| (i * BATCH_CHUNK, c))
        .collect();
    let pb_ref = &pb;
    let results: Vec<(usize, usize, Result<Vec<Value>, ApiFailure>)> =
        futures::stream::iter(chunks)
            .map(|(start, chunk)| async move {
                let bodies: Vec<Value> = chunk
                    .iter()
                    .map(|it| Value::Object(it.body.clone()))
                    .collect();
                let body = json!({ "items": bodies });
                let r = api
                    .call(
                        api.req(Method::POST, &["v1", "evaluations", "batch"])
                            .json(&body)
                            .timeout(UPLOAD_TIMEOUT),
                    )
                    .await
                    .and_then(|v| match v.get("items").and_then(Value::as_array) {
                        Some(a) if a.len() == chunk.len() => Ok(a.clone()),
                        Some(a) => Err(ApiFailure::BadResponse(format!(
                            "sent {} items, got {} back",
                            chunk.len(),
                            a.len()
                        ))),
                        None => Err(ApiFailure::BadResponse(
                            "no items in the batch answer".into(),
                        )),
                    });
                if r.is_ok() {
                    pb_ref.inc(chunk.len() as u64);
                }
                (start, chunk.len(), r)
            })
            .buffered(concurrency)
            .collect()
            .await;

    let mut submitted: Vec<(usize, Value)> = Vec::new();
    let mut failures = Vec::new();
    for (start, len, r) in results {
        match r {
            Ok(evals) => {
                submitted.extend(evals.into_iter().enumerate().map(|(i, v)| (start + i, v)))
            }
            Err(f) => failures.push((start, len, f)),
        }
    }
    if !failures.is_empty() {
        pb.finish_and_clear();
        let mut code = 0;
        for (start, len, mut f) in failures {
            // Item indices are relative to the chunk: name the items instead.
            if let ApiFailure::Status {
                details: Some(d), ..
            } = &mut f
                && let Some(errors) = d.get_mut("errors").and_then(Value::as_array_mut)
            {
                for e in errors {
                    if let Some(i) = e.get("index").and_then(Value::as_u64)
                        && let Some(item) = items.get(start + i as usize)
                    {
                        e["source"] = json!(item.source);
                    }
                }
            }
            if items.len() > BATCH_CHUNK {
                eprintln!(
                    "items {} to {} ({} … {}) were refused:",
                    start + 1,
                    start + len,
                    items[start].source,
                    items[start + len - 1].source
                );
            }
            eprintln!("{}", f.report());
            code = code.max(f.exit_code());
        }
        eprintln!(
            "{} of {} evaluations were submitted (label batch={batch_id})",
            submitted.len(),
            items.len()
        );
        return Err(Reported(code).into());
    }

    let ids: Vec<String> = submitted
        .iter()
        .map(|(_, v)| Evaluation::from_value(v).map(|e| e.id))
        .collect::<Result<_, _>>()?;
    if !wait {
        pb.finish_and_clear();
        if json {
            let items: Vec<&Value> = submitted.iter().map(|(_, v)| v).collect();
            print_json(&json!({"batch": batch_id, "items": items}))?;
        } else {
            let mut s = String::new();
            for (id, item) in ids.iter().zip(items) {
                s.push_str(&format!("{id}\t{}\n", item.source));
            }
            out_write(s.as_bytes())?;
            let note = format!(
                "submitted {} evaluations · label batch={batch_id} \
                 · see: assay list --label batch={batch_id}\n",
                ids.len()
            );
            err_write(note.as_bytes())?;
        }
        return Ok(0);
    }

    pb.reset();
    pb.set_prefix("running");
    let finals = poll_batch(api, &ids, batch_id, concurrency, &pb).await;
    pb.finish_and_clear();
    let finals = finals?;
    let with_sources: Vec<(String, Evaluation)> = items
        .iter()
        .zip(&finals)
        .map(|(item, (_, e))| (item.source.clone(), e.clone()))
        .collect();
    if json {
        let raws: Vec<&Value> = finals.iter().map(|(v, _)| v).collect();
        print_json(&json!({"batch": batch_id, "items": raws}))?;
    } else {
        out_write(render_batch_summary(&with_sources).as_bytes())?;
    }
    let all_ok = finals
        .iter()
        .all(|(_, e)| e.known_status() == Some(EvaluationStatus::Succeeded));
    Ok(if all_ok { 0 } else { 1 })
}

/// Waits until every evaluation of the batch is terminal and returns them in `ids` order.
/// Counts the batch's queued and running evaluations (by its label) until there are none, then
/// lists them all once; any the list misses are fetched one by one.
async fn poll_batch(
    api: &Api,
    ids: &[String],
    batch_id: &str,
    concurrency: usize,
    pb: &ProgressBar,
) -> Result<Vec<(Value, Evaluation)>> {
    let label = ("label", format!("batch={batch_id}"));
    let total = ids.len();
    let mut pause = Duration::from_millis(250);
    loop {
        let queued = api
            .list_all(&[label.clone(), ("status", "queued".into())])
            .await?
            .len();
        let running = api
            .list_all(&[label.clone(), ("status", "running".into())])
            .await?
            .len();
        let pending = queued + running;
        pb.set_position(total.saturating_sub(pending) as u64);
        pb.set_message(format!("queued {queued} · running {running}"));
        if pending == 0 {
            let mut by_id: BTreeMap<String, (Value, Evaluation)> = BTreeMap::new();
            for v in api.list_all(std::slice::from_ref(&label)).await? {
                let e = Evaluation::from_value(&v)?;
                by_id.insert(e.id.clone(), (v, e));
            }
            let missing: Vec<&String> = ids.iter().filter(|id| !by_id.contains_key(*id)).collect();
            let fetched: Vec<Result<(Value, Evaluation), ApiFailure>> =
                futures::stream::iter(missing)
                    .map(|id| api.get(id))
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
            for r in fetched {
                let (v, e) = r?;
                by_id.insert(e.id.clone(), (v, e));
            }
            let finals: Vec<(Value, Evaluation)> =
                ids.iter().filter_map(|id| by_id.get(id).cloned()).collect();
            if finals.len() == total && finals.iter().all(|(_, e)| e.is_terminal()) {
                pb.set_position(total as u64);
                return Ok(finals);
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    fn parse(args: &[&str]) -> TestCli {
        TestCli::try_parse_from(std::iter::once("assay").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = parse(&[
            "submit",
            "x.py",
            "--wait",
            "--label",
            "a=b",
            "--label=c=d=e",
            "--priority",
            "-5",
            "--timeout",
            "3s",
            "--key",
            "k1",
        ]);
        assert_eq!(cli.conn.key.as_deref(), Some("k1"));
        match cli.cmd {
            ClientCommand::Submit {
                wait,
                follow,
                labels,
                priority,
                ..
            } => {
                assert!(wait && !follow);
                assert_eq!(
                    labels,
                    vec![("a".into(), "b".into()), ("c".into(), "d=e".into())]
                );
                assert_eq!(priority, Some(-5));
            }
            _ => panic!("not submit"),
        }
        assert!(
            TestCli::try_parse_from(["assay", "submit", "x.py", "--wait", "--follow"]).is_err()
        );
        assert!(TestCli::try_parse_from(["assay", "submit", "x.py", "--label", "nokey"]).is_err());
        assert!(TestCli::try_parse_from(["assay", "list", "--status", "bogus"]).is_err());
        match parse(&["list", "--status", "timed_out", "--label", "k=v", "--all"]).cmd {
            ClientCommand::List {
                status, label, all, ..
            } => {
                assert_eq!(status, Some(EvaluationStatus::TimedOut));
                assert_eq!(label, Some(("k".into(), "v".into())));
                assert!(all);
            }
            _ => panic!("not list"),
        }
        match parse(&["logs", "-f", "ev1"]).cmd {
            ClientCommand::Logs { follow, id } => assert!(follow && id == "ev1"),
            _ => panic!("not logs"),
        }
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("k=v"), Ok(("k".into(), "v".into())));
        assert_eq!(parse_label("k="), Ok(("k".into(), "".into())));
        assert_eq!(parse_label("k=a=b"), Ok(("k".into(), "a=b".into())));
        let err = parse_label("novalue").unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
        assert!(parse_label("=v").unwrap_err().contains("empty"));
    }

    #[test]
    fn time_arguments() {
        assert_eq!(
            parse_time_arg("2025-01-02T03:04:05Z").unwrap(),
            "2025-01-02T03:04:05Z"
        );
        let ago = parse_time_arg("1h").unwrap();
        let t = humantime::parse_rfc3339(&ago).unwrap();
        let age = SystemTime::now().duration_since(t).unwrap();
        assert!(age >= Duration::from_secs(3599) && age < Duration::from_secs(3700));
        assert!(parse_time_arg("yesterday").is_err());
    }

    #[test]
    fn config_file_syntax() {
        let cfg = parse_config(
            "# Assay\n\nurl = \"http://10.0.0.1:9000\"  # the lab server\nkey='k-\\1'\n",
        )
        .unwrap();
        assert_eq!(cfg.url.as_deref(), Some("http://10.0.0.1:9000"));
        assert_eq!(cfg.key.as_deref(), Some("k-\\1"));
        let cfg = parse_config("key = \"a\\\"b\\u00e9\"").unwrap();
        assert_eq!(cfg.key.as_deref(), Some("a\"bé"));
        assert_eq!(parse_config("").unwrap(), ConfigFile::default());

        let err = parse_config("url = \"x\"\nurl = \"y\"").unwrap_err();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
        let err = parse_config("\nport = \"1\"").unwrap_err();
        assert!(err.contains("line 2") && err.contains("unknown"), "{err}");
        let err = parse_config("url = http://x").unwrap_err();
        assert!(err.contains("line 1") && err.contains("quoted"), "{err}");
        let err = parse_config("url = \"x").unwrap_err();
        assert!(err.contains("unterminated"), "{err}");
        let err = parse_config("url = \"x\" y").unwrap_err();
        assert!(err.contains("after the value"), "{err}");
        let err = parse_config("just words").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn config_path_prefers_xdg() {
        assert_eq!(
            default_config_path(Some("/x".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/assay/config.toml"))
        );
        assert_eq!(
            default_config_path(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.config/assay/config.toml"))
        );
        assert_eq!(default_config_path(None, None), None);
    }

    fn conn(url: Option<&str>, key: Option<&str>, config: Option<&Path>) -> Connection {
        Connection {
            url: url.map(String::from),
            key: key.map(String::from),
            config: config.map(Path::to_path_buf),
        }
    }

    #[test]
    fn settings_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "url = \"http://cfg:1\"\nkey = \"cfg-key\"\n").unwrap();
        let admin = dir.path().join("admin.key");
        std::fs::write(&admin, "admin-key\n").unwrap();
        let missing = dir.path().join("missing");

        // Flags (or the environment, which clap folds in) beat the config file.
        let s = resolve_settings(
            &conn(Some("http://flag:2"), Some("flag-key"), None),
            Some(cfg.clone()),
            &admin,
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                url: "http://flag:2".into(),
                key: "flag-key".into()
            }
        );
        // The default config file, when it exists, beats the defaults.
        let s = resolve_settings(&conn(None, None, None), Some(cfg.clone()), &admin).unwrap();
        assert_eq!(
            s,
            Settings {
                url: "http://cfg:1".into(),
                key: "cfg-key".into()
            }
        );
        // --config names the file; mixing with a flag.
        let s = resolve_settings(&conn(None, Some("flag-key"), Some(&cfg)), None, &admin).unwrap();
        assert_eq!(
            s,
            Settings {
                url: "http://cfg:1".into(),
                key: "flag-key".into()
            }
        );
        // No config: the default URL, and the server's admin key file.
        let s = resolve_settings(&conn(None, None, None), Some(missing.clone()), &admin).unwrap();
        assert_eq!(
            s,
            Settings {
                url: DEFAULT_URL.into(),
                key: "admin-key".into()
            }
        );
        // An empty value counts as absent.
        let s = resolve_settings(&conn(Some(""), Some(" "), None), None, &admin).unwrap();
        assert_eq!(
            s,
            Settings {
                url: DEFAULT_URL.into(),
                key: "admin-key".into()
            }
        );
        // Nothing at all.
        let err = resolve_settings(&conn(None, None, None), None, &missing).unwrap_err();
        assert!(err.to_string().contains("no API key: pass --key"), "{err}");
        // A --config that does not exist is an error (a missing default one is not).
        let err =
            resolve_settings(&conn(None, Some("k"), Some(&missing)), None, &admin).unwrap_err();
        assert!(format!("{err:#}").contains("config file"), "{err:#}");
        // A bad config file names itself and the line.
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "url = \"x\"\nkey = oops\n").unwrap();
        let err = resolve_settings(&conn(None, None, Some(&bad)), None, &admin).unwrap_err();
        assert!(err.to_string().contains("bad.toml: line 2"), "{err}");
    }

    #[test]
    fn submission_from_a_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prog.py");
        std::fs::write(&file, "print(input())\n").unwrap();
        let stdin = dir.path().join("in.txt");
        std::fs::write(&stdin, "hello\n").unwrap();
        let opts = SubmitOptions {
            labels: vec![("team".into(), "a".into()), ("run".into(), "7".into())],
            stdin: Some(stdin),
            timeout: Some("3s".into()),
            memory: Some("256MiB".into()),
            cpu_time: Some("500ms".into()),
            pids: Some(8),
            priority: Some(-3),
            ..Default::default()
        };
        let body = build_submission(&file, &opts).unwrap();
        assert_eq!(
            body,
            json!({
                "language": "python",
                "code": "print(input())\n",
                "stdin": "hello\n",
                "limits": {"wall_time_ms": 3000, "cpu_time_ms": 500, "memory_bytes": 268435456u64, "pids": 8},
                "priority": -3,
                "labels": {"team": "a", "run": "7"},
            })
        );
        // The body is what the server deserialises.
        serde_json::from_value::<SubmitRequest>(body).unwrap();

        let plain = build_submission(&file, &SubmitOptions::default()).unwrap();
        assert_eq!(
            plain,
            json!({"language": "python", "code": "print(input())\n"})
        );

        let err = build_submission(
            &file,
            &SubmitOptions {
                timeout: Some("3".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("--timeout"), "{err:#}");
        let err = build_submission(
            &file,
            &SubmitOptions {
                entrypoint: Some("a.py".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        assert!(build_submission(&dir.path().join("nope.py"), &SubmitOptions::default()).is_err());
    }

    #[test]
    fn submission_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("main.py"), "import util.helpers\n").unwrap();
        std::fs::create_dir_all(root.join("util/__pycache__")).unwrap();
        std::fs::write(root.join("util/helpers.py"), "X = 1\n").unwrap();
        std::fs::write(
            root.join("util/__pycache__/helpers.cpython-312.pyc"),
            [0u8, 159, 146],
        )
        .unwrap();
        std::fs::write(root.join("data.txt"), "abc").unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();

        let body = build_submission(root, &SubmitOptions::default()).unwrap();
        assert_eq!(
            body,
            json!({
                "language": "python",
                "files": [
                    {"path": "data.txt", "content": "abc"},
                    {"path": "main.py", "content": "import util.helpers\n"},
                    {"path": "util/helpers.py", "content": "X = 1\n"},
                ],
                "entrypoint": "main.py",
            })
        );
        serde_json::from_value::<SubmitRequest>(body.clone()).unwrap();

        let body = build_submission(
            root,
            &SubmitOptions {
                entrypoint: Some("util/helpers.py".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(body["entrypoint"], "util/helpers.py");

        let err = build_submission(
            root,
            &SubmitOptions {
                entrypoint: Some("run.py".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no run.py") && err.to_string().contains("--entrypoint"),
            "{err}"
        );

        std::fs::write(root.join("blob.bin"), [0xffu8, 0xfe]).unwrap();
        let err = build_submission(root, &SubmitOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("blob.bin") && err.to_string().contains("UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_batches() {
        let text = "{\"code\": \"print(1)\"}\n\n{\"language\": \"python\", \"files\": [{\"path\": \"main.py\", \"content\": \"x=1\"}], \"entrypoint\": \"main.py\", \"labels\": {\"k\": \"v\"}}\n";
        let items = batch_from_jsonl(text).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].source, "line 1");
        assert_eq!(items[1].source, "line 3");
        assert_eq!(items[0].body["language"], "python");

        let err = batch_from_jsonl("{\"code\": \"1\"}\n{\"code\": \"2\"\n").unwrap_err();
        assert!(err.starts_with("line 2: invalid JSON"), "{err}");
        let err = batch_from_jsonl("{\"code\": \"1\"}\n[1, 2]\n").unwrap_err();
        assert!(err.starts_with("line 2: expected a JSON object"), "{err}");
        let err = batch_from_jsonl("\n\n{\"code\": \"1\", \"colour\": \"red\"}\n").unwrap_err();
        assert!(
            err.starts_with("line 3: not a submission") && err.contains("colour"),
            "{err}"
        );
        let err = batch_from_jsonl("{\"code\": 5}\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        assert!(
            batch_from_jsonl("\n  \n")
                .unwrap_err()
                .contains("no submissions")
        );
    }

    #[test]
    fn directory_batches_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.py"), "print(2)\n").unwrap();
        std::fs::write(dir.path().join("a.py"), "print(1)\n").unwrap();
        std::fs::write(dir.path().join("notes.md"), "# no").unwrap();
        std::fs::create_dir(dir.path().join("sub.py")).unwrap();
        let mut items = batch_from_dir(dir.path()).unwrap();
        assert_eq!(
            items.iter().map(|i| i.source.as_str()).collect::<Vec<_>>(),
            ["a.py", "b.py"]
        );
        items[1]
            .body
            .insert("limits".into(), json!({"wall_time_ms": 10}));
        let limits = limits_json(Some("2s"), None, Some("64MiB"), None, None).unwrap();
        apply_batch_defaults(
            &mut items,
            &[("team".into(), "x".into())],
            "abc123",
            &limits,
            Some(5),
        );
        assert_eq!(
            Value::Object(items[0].body.clone()),
            json!({
                "language": "python",
                "code": "print(1)\n",
                "labels": {"file": "a.py", "team": "x", "batch": "abc123"},
                "limits": {"wall_time_ms": 2000, "memory_bytes": 67108864},
                "priority": 5,
            })
        );
        // An item's own limit wins over the default.
        assert_eq!(items[1].body["limits"]["wall_time_ms"], 10);
        assert_eq!(items[1].body["limits"]["memory_bytes"], 67108864);
        assert!(precheck(&items).is_empty());

        let empty = tempfile::tempdir().unwrap();
        assert!(
            batch_from_dir(empty.path())
                .unwrap_err()
                .to_string()
                .contains("no *.py")
        );
    }

    #[test]
    fn precheck_names_bad_items_but_leaves_limits_to_the_server() {
        let mut items = batch_from_jsonl(
            "{\"code\": \"print(1)\"}\n{\"code\": \"def f(:\\n\"}\n{\"code\": \"print(1)\", \"limits\": {\"memory_bytes\": 1099511627776}}\n{\"code\": \"x\", \"priority\": 1000}\n",
        )
        .unwrap();
        apply_batch_defaults(&mut items, &[], "b", &Map::new(), None);
        let errors = precheck(&items);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("line 2:") && errors[0].ends_with("(syntax_error)"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("line 4:") && errors[1].ends_with("(invalid_priority)"),
            "{errors:?}"
        );
    }

    fn eval(v: Value) -> Evaluation {
        Evaluation::from_value(&v).unwrap()
    }

    fn finished(status: &str, wall: u64) -> Value {
        json!({
            "id": "ev_1", "status": status, "language": "python", "entrypoint": "main.py",
            "priority": 0, "labels": {"file": "a.py"}, "limits": {"wall_time_ms": 5000, "memory_bytes": 268435456, "pids": 64},
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

    #[test]
    fn summaries_and_exit_codes() {
        let e = eval(finished("succeeded", 27));
        assert_eq!(
            summary_line(&e),
            "── succeeded · exit 0 · wall 27 ms · cpu 13 ms · peak 3560KiB · crun"
        );
        assert!(e.is_terminal());
        assert_eq!(exit_code_for(&e), 0);
        assert_eq!(exit_code_for(&eval(finished("timed_out", 1))), 1);
        assert_eq!(exit_code_for(&eval(finished("errored", 1))), 3);
        let dead = eval(
            json!({"id": "ev_2", "status": "dead", "attempts": 3, "max_attempts": 3, "result": null, "error": "runtime crashed (attempt 3 of 3)"}),
        );
        assert_eq!(exit_code_for(&dead), 3);
        assert_eq!(summary_line(&dead), "── dead · attempt 3 of 3");
        assert_eq!(error_text(&dead), Some("runtime crashed (attempt 3 of 3)"));
        let queued = eval(json!({"id": "ev_3", "status": "queued"}));
        assert!(!queued.is_terminal());
        assert!(Evaluation::from_value(&json!({"status": "queued"})).is_err());
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
        assert!(
            view.contains("wall_time 5s · memory 256MiB · pids 64"),
            "{view}"
        );
        assert!(view.contains("  │ hi"), "{view}");
        assert!(view.contains("stderr     (empty)"), "{view}");
        let table = render_table(&[
            e.clone(),
            eval(
                json!({"id": "ev_long_id", "status": "queued", "created_at": "2025-01-02T03:04:05.000Z"}),
            ),
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
            ("a.py".to_string(), eval(finished("succeeded", 10))),
            ("b.py".to_string(), eval(finished("succeeded", 30))),
            ("c.py".to_string(), eval(finished("failed", 20))),
            (
                "d.py".to_string(),
                eval(json!({"id": "ev_9", "status": "cancelled"})),
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
    fn api_errors() {
        let f = failure_from_body(
            422,
            Some("Unprocessable Entity"),
            r#"{"error": {"code": "syntax_error", "message": "syntax error at main.py:1:7", "details": {"file": "main.py", "line": 1, "column": 7}}}"#,
        );
        assert_eq!(f.exit_code(), 2);
        assert_eq!(
            f.report(),
            "error: syntax error at main.py:1:7 (syntax_error)\n  at main.py:1:7"
        );

        let f = failure_from_body(
            422,
            None,
            r#"{"error": {"code": "invalid_batch", "message": "2 items are invalid", "details": {"errors": [{"index": 3, "code": "syntax_error", "message": "bad"}, {"index": 5, "source": "line 9", "code": "empty_code", "message": "the program is empty"}]}}}"#,
        );
        assert_eq!(
            f.report(),
            "error: 2 items are invalid (invalid_batch)\n  item 3: bad (syntax_error)\n  line 9: the program is empty (empty_code)"
        );

        let f = failure_from_body(502, Some("Bad Gateway"), "<html>oops</html>");
        assert_eq!(f.exit_code(), 3);
        assert_eq!(
            f.report(),
            "error: HTTP 502 Bad Gateway: <html>oops</html> (http_502)"
        );

        let f = failure_from_body(
            404,
            None,
            r#"{"error": {"code": "not_found", "message": "evaluation not found"}}"#,
        );
        assert_eq!(f.report(), "error: evaluation not found (not_found)");
        assert_eq!(f.exit_code(), 2);

        let f = ApiFailure::Connection {
            url: "http://127.0.0.1:1/".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(f.exit_code(), 3);
        assert!(
            f.report()
                .contains("cannot reach the server at http://127.0.0.1:1/")
        );
    }

    #[test]
    fn endpoints_escape_ids_and_keep_a_base_path() {
        let api = Api::new(&Settings {
            url: "http://127.0.0.1:8080/assay/".into(),
            key: "k".into(),
        })
        .unwrap();
        assert_eq!(
            api.endpoint(&["v1", "evaluations", "a/b c", "events"])
                .as_str(),
            "http://127.0.0.1:8080/assay/v1/evaluations/a%2Fb%20c/events"
        );
        assert!(
            Api::new(&Settings {
                url: "ftp://x".into(),
                key: "k".into()
            })
            .is_err()
        );
        assert!(
            Api::new(&Settings {
                url: "not a url".into(),
                key: "k".into()
            })
            .is_err()
        );
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
    }
}
