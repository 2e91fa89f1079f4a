//! A real S3-compatible server for tests: s3s-fs on loopback, over a temporary directory.
//!
//! Tests of S3 code run against a server that checks SigV4 signatures and speaks the real
//! protocol (multipart uploads, conditional writes, ranges), not a mock. Each [`S3Server`] is
//! its own process on a port the kernel picks (no races between parallel tests), with its own
//! root directory whose subdirectories are the buckets. It is killed when dropped.
//!
//! The binary is `$ASSAY_S3S_FS`, else `s3s-fs` on `PATH`, else `~/.cargo/bin/s3s-fs`;
//! `scripts/setup` installs it. A missing binary fails the test (never a silent skip).
//! Test code only: spawning processes is otherwise `assay-sandbox`'s business.

use crate::blobs::Blobs;
use crate::url::BlobUrl;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// How long a server may take to start before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// What s3s-fs prints once it listens.
const READY_LINE: &str = "server is running at http://";

/// A running s3s-fs; see the module's documentation.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The server's data; each subdirectory is a bucket.
    pub root: TempDir,
    addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

/// Where the s3s-fs binary is, or why it cannot be found.
pub fn s3s_fs_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ASSAY_S3S_FS") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ASSAY_S3S_FS={} is not a file", p.display()))
        };
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("s3s-fs"))
                .collect()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let in_cargo = cargo_home.map(|c| c.join("bin/s3s-fs"));
    on_path
        .into_iter()
        .chain(in_cargo)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "s3s-fs not found ($ASSAY_S3S_FS, PATH, ~/.cargo/bin): run scripts/setup to install it"
                .to_string()
        })
}

impl S3Server {
    /// Starts a server and waits until it answers HTTP. Panics (failing the test) when the
    /// binary is missing or the server does not come up.
    pub fn start() -> Self {
        let binary = s3s_fs_binary().unwrap_or_else(|e| panic!("{e}"));
        let root = tempfile::tempdir().expect("a temporary directory for s3s-fs");
        let (access_key, secret_key) = fresh_keys();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        // The readers keep draining the pipes for the server's life, so it never blocks on them.
        spawn_reader(stdout, Arc::clone(&log), Some(tx));
        spawn_reader(stderr, Arc::clone(&log), None);
        let mut server = Self {
            endpoint: String::new(),
            access_key,
            secret_key,
            root,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            log,
        };
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => server.fail("did not report its address"),
        };
        server.addr = addr;
        server.endpoint = format!("http://{addr}");
        server.wait_until_answering();
        server
    }

    /// The AWS variables that reach this server (for [`Blobs::open`]).
    pub fn env(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static + use<> {
        let vars: HashMap<&'static str, String> = HashMap::from([
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]);
        move |name| vars.get(name).cloned()
    }

    /// Creates a bucket (a directory under the root) and returns its URL.
    pub fn create_bucket(&self, name: &str) -> BlobUrl {
        let url = BlobUrl::parse(&format!("s3://{name}")).expect("a valid bucket name");
        std::fs::create_dir_all(self.root.path().join(name)).expect("creating the bucket");
        url
    }

    /// Creates `bucket` and opens a store on it (`bucket` may carry a prefix: `b/some/prefix`).
    pub async fn open(&self, bucket: &str) -> Blobs {
        let name = bucket.split('/').next().unwrap_or(bucket);
        self.create_bucket(name);
        let url = BlobUrl::parse(&format!("s3://{bucket}")).expect("a valid S3 URL");
        Blobs::open(&url, &self.env())
            .await
            .expect("opening the S3 store")
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server printed so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kills the server now (its data stays until `self` drops).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls the port with a plain HTTP request until the server answers one.
    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_http() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.fail(&format!("exited ({status})"));
            }
            if Instant::now() > deadline {
                self.fail("does not answer HTTP");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_http(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    fn fail(&mut self, what: &str) -> ! {
        self.stop();
        panic!("s3s-fs {what}; its output:\n{}", self.log());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keys unique to this server (not secrets: the server lives for one test on loopback).
fn fresh_keys() -> (String, String) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let pid = std::process::id();
    (
        format!("assaytest{pid}x{n}"),
        format!("secret{pid}x{n}x{nanos}"),
    )
}

/// Copies a pipe's lines into `log`; sends the address from the ready line once.
fn spawn_reader(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    mut ready: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = ready.as_ref()
                && let Some(addr) = line
                    .split_once(READY_LINE)
                    .and_then(|(_, rest)| rest.trim().parse::<SocketAddr>().ok())
            {
                let _ = tx.send(addr);
                ready = None;
            }
            if let Ok(mut log) = log.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}
