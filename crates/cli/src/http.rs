//! The HTTP client of the client commands: requests with the key, answers decoded into the
//! API's types (`assay-api`), refusals into [`ApiFailure`], and patience with a busy server (a
//! 429 or 503 with `Retry-After` is waited out, up to two minutes in all, saying so on stderr).
//!
//! Exit codes of the client commands ([`report`]): 0 success; 1 the program (or a program of a
//! batch) did not succeed; 2 a client error (bad input, or a 4xx answer); 3 the platform failed
//! (connection failure, 5xx, or an evaluation that ended `errored` or `dead`).

use crate::client_settings::{ClientSettings, Connection};
use anyhow::{Context, Result, bail};
use assay_api::ErrorBody;
use assay_api::evaluation::{EvaluationPage, EvaluationSummary, EvaluationView, ListParams};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

/// Time limit of an ordinary request (not a long-poll, not an event stream).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the client waits in all, across retries, for a busy server (429/503 with
/// `Retry-After`) before it reports the error.
const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// A failed API call.
#[derive(Debug)]
pub enum ApiFailure {
    /// The server answered with an error. `code` as sent: a newer server's codes are shown as
    /// they are, and an answer that is not the API's (a proxy's page) as `http_<status>`.
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
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiFailure::Status { status, .. } if (400..500).contains(status) => 2,
            _ => 3,
        }
    }

    pub(crate) fn from_reqwest(url: &str, e: &reqwest::Error) -> ApiFailure {
        ApiFailure::Connection {
            url: url.to_string(),
            reason: root_cause(e),
        }
    }

    /// The error line and what follows it.
    pub fn report(&self) -> String {
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
pub struct Reported(pub u8);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(reported, exit code {})", self.0)
    }
}

impl std::error::Error for Reported {}

/// A client command's exit status: API failures are printed (`error: <message> (<code>)`) and
/// give their exit code; other errors (bad files, flags, config) are returned.
pub fn report(outcome: Result<u8>) -> Result<ExitCode> {
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

/// The error of a non-2xx answer: the API's [`ErrorBody`]; else an error body of the same
/// shape with a code this client does not know (a newer server); else the HTTP status.
fn failure_from_body(status: u16, reason: Option<&str>, body: &str) -> ApiFailure {
    if let Ok(b) = serde_json::from_str::<ErrorBody>(body) {
        return ApiFailure::Status {
            status,
            code: b.error.code.as_str().to_string(),
            message: b.error.message,
            details: b.error.details,
        };
    }
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |k: &str| v["error"][k].as_str().map(String::from);
    if let (Some(code), Some(message)) = (text("code"), text("message")) {
        let details = Some(v["error"]["details"].clone()).filter(|d| !d.is_null());
        return ApiFailure::Status {
            status,
            code,
            message,
            details,
        };
    }
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

/// The API's answer as `T` (unknown fields are ignored: a newer server may add some).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiFailure> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiFailure::BadResponse(format!("invalid {}: {e}", short_type_name::<T>())))
}

fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

/// The API client of the client commands: URL and key from the flags, the environment, the
/// config file, or the admin key file of the data folder.
pub fn connect(conn: &Connection) -> Result<Api> {
    Api::new(&crate::client_settings::resolve(conn)?)
}

pub struct Api {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Api {
    pub fn new(settings: &ClientSettings) -> Result<Api> {
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

    /// The server, as the user named it (for messages).
    pub fn base(&self) -> &str {
        self.base.as_str()
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
    pub fn req(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http
            .request(method, self.endpoint(segments))
            .bearer_auth(&self.key)
    }

    /// Sends; any answer but 2xx is an error. A 429 or 503 with `Retry-After` (rate limit,
    /// quota, full queue, a busy store: the server accepted nothing) is retried after the time
    /// it asks for, up to [`MAX_BACKOFF`] in all.
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response, ApiFailure> {
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

    /// Sends and decodes the answer.
    pub async fn call<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ApiFailure> {
        let resp = self.send(rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiFailure::from_reqwest(self.base.as_str(), &e))?;
        decode(&bytes)
    }

    /// `method` on the route `segments` with the query `params` (ordinary time limit).
    pub async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        params: &impl Serialize,
    ) -> Result<T, ApiFailure> {
        self.call(
            self.req(method, segments)
                .query(params)
                .timeout(REQUEST_TIMEOUT),
        )
        .await
    }

    /// `GET /v1/evaluations/{id}`: the evaluation with its output.
    pub async fn evaluation(&self, id: &str) -> Result<EvaluationView, ApiFailure> {
        self.call(
            self.req(Method::GET, &["v1", "evaluations", id])
                .timeout(REQUEST_TIMEOUT),
        )
        .await
    }

    /// One page of `GET /v1/evaluations`.
    pub async fn list_page(&self, params: &ListParams) -> Result<EvaluationPage, ApiFailure> {
        self.call_with(Method::GET, &["v1", "evaluations"], params)
            .await
    }

    /// Every page of `GET /v1/evaluations` (largest pages).
    pub async fn list_all(
        &self,
        filter: &ListParams,
    ) -> Result<Vec<EvaluationSummary>, ApiFailure> {
        let mut params = ListParams {
            limit: Some(assay_api::MAX_PAGE),
            cursor: None,
            ..filter.clone()
        };
        let mut out = Vec::new();
        loop {
            let page = self.list_page(&params).await?;
            out.extend(page.items);
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(c) => params.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        // A code from a newer server: still its message and its code as sent.
        let f = failure_from_body(
            429,
            None,
            r#"{"error": {"code": "too_much_fun", "message": "slow down", "details": {"n": 1}}, "extra": 1}"#,
        );
        assert_eq!(
            f.report(),
            "error: slow down (too_much_fun)\n  details: {\"n\":1}"
        );
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
    fn answers_decode_into_the_api_types_and_ignore_unknown_fields() {
        let page: EvaluationPage =
            decode(br#"{"items": [], "next_cursor": "c1", "total_from_the_future": 9}"#).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("c1"));
        let err = decode::<EvaluationPage>(b"{\"items\": 5}").unwrap_err();
        assert!(err.report().contains("invalid EvaluationPage"), "{err}");
    }

    fn settings(url: &str) -> ClientSettings {
        ClientSettings {
            url: url.into(),
            key: "k".into(),
        }
    }

    #[test]
    fn endpoints_escape_ids_and_keep_a_base_path() {
        let api = Api::new(&settings("http://127.0.0.1:8080/assay/")).unwrap();
        assert_eq!(
            api.endpoint(&["v1", "evaluations", "a/b c", "events"])
                .as_str(),
            "http://127.0.0.1:8080/assay/v1/evaluations/a%2Fb%20c/events"
        );
        assert!(Api::new(&settings("ftp://x")).is_err());
        assert!(Api::new(&settings("not a url")).is_err());
    }
}
