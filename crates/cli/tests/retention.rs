//! Moving an installation and retention, with the real binary and real sandboxes:
//!
//! - `assay store copy`: a SQLite installation (runs, one with its stdout in the blob store,
//!   keys, the audit log) copied into a fresh PostgreSQL database and a second blob store, then
//!   served from there (same evaluations, same output, the keys work, the audit chain verifies);
//!   a second copy into the now non-empty database is refused and changes nothing.
//! - `assay gc`: old finished evaluations go with their blobs; queued, running and recent ones
//!   stay; the audit log is untouched.
//! - `[retention]`: checked at start, and `assay serve` deletes old finished evaluations by
//!   itself.
//!
//! PostgreSQL: a fresh database per test on `ASSAY_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust auth), dropped at the end.

mod common;

use assay_store_postgres::testing::TestDatabase;
use common::{
    ServeOptions, Server, assay_cli, call, client, py, send, serve, serve_refused, serve_with,
    stderr, stdout,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Above the 64 KiB preview: the whole stream goes to the blob store.
const BIG: usize = 200_000;

fn big_program() -> Value {
    py(&format!("import sys\nsys.stdout.write('x' * {BIG})\n"))
}

/// A program that runs until it is cancelled (its wall-time limit far beyond any test).
fn sleeper() -> Value {
    json!({
        "language": "python",
        "code": "import time\ntime.sleep(120)",
        "limits": {"wall_time_ms": 120_000},
    })
}

// ---------------------------------------------------------------------------------------------
// A fresh PostgreSQL database.

/// An empty database, dropped with the value.
struct Database(TestDatabase);

impl std::ops::Deref for Database {
    type Target = TestDatabase;
    fn deref(&self) -> &TestDatabase {
        &self.0
    }
}

impl Database {
    async fn create() -> Database {
        Database(TestDatabase::create("assay_cli").await)
    }

    /// What the database holds: evaluations by status, keys, and the audit chain's length and
    /// head, read through the store (the same way `assay` does).
    async fn holdings(&self) -> (BTreeMap<String, u64>, u64, (u64, i64, String)) {
        use assay_store::Store;
        let store = assay_store_postgres::PgStore::open(
            &self.url,
            assay_store_postgres::PgOptions::default(),
        )
        .await
        .unwrap();
        let counts = store
            .queue_stats(None, assay_store::now_millis())
            .await
            .unwrap()
            .counts
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), n))
            .collect();
        let keys = store.count_keys().await.unwrap();
        let v = store.verify_audit().await.unwrap();
        assert!(v.broken.is_none(), "{v:?}");
        store.close().await;
        (counts, keys, (v.entries, v.head_seq, v.head_hash))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A key made with the admin key: (id, secret).
async fn create_key(s: &Server, c: &reqwest::Client, tenant: &str, role: &str) -> (String, String) {
    let a = send(
        call(s, c, Some(&s.key), Method::POST, "/v1/keys")
            .json(&json!({"tenant": tenant, "role": role, "name": format!("{role} of {tenant}")})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    (
        a.body["id"].as_str().unwrap().to_string(),
        a.body["key"].as_str().unwrap().to_string(),
    )
}

async fn submit_as(s: &Server, c: &reqwest::Client, key: &str, body: Value) -> String {
    let a = send(call(s, c, Some(key), Method::POST, "/v1/evaluations").json(&body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    a.body["id"].as_str().unwrap().to_string()
}

/// GET of one evaluation with the admin key: its status code and body.
async fn get(s: &Server, c: &reqwest::Client, id: &str) -> (StatusCode, Value) {
    let a = send(call(
        s,
        c,
        Some(&s.key),
        Method::GET,
        &format!("/v1/evaluations/{id}"),
    ))
    .await;
    (a.status, a.body)
}

/// Polls until the evaluation has `status` (bounded).
async fn wait_status(s: &Server, c: &reqwest::Client, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = get(s, c, id).await;
        if code == StatusCode::OK && body["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cancels a running evaluation and waits until it has ended (or is gone), so that no sandbox
/// outlives the test's server.
async fn cancel_and_wait(s: &Server, c: &reqwest::Client, id: &str) {
    let a = send(call(
        s,
        c,
        Some(&s.key),
        Method::POST,
        &format!("/v1/evaluations/{id}/cancel"),
    ))
    .await;
    assert!(a.status.is_success(), "{}", a.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = get(s, c, id).await;
        if code == StatusCode::NOT_FOUND || body["status"] == "cancelled" {
            return;
        }
        assert!(Instant::now() < deadline, "{id} was not cancelled: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The blob objects of one evaluation in a `file://` blob store.
fn blobs_of(blob_dir: &Path, id: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    files(&blob_dir.join("outputs").join(id))
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn sqlite_url(data: &Path) -> String {
    format!("sqlite://{}", data.join("assay.db").display())
}

/// `assay audit verify` on a store: its JSON answer (it must pass).
fn audit_verify(store: &str) -> Value {
    let out = assay_cli(None, &["audit", "verify", "--store", store, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["broken"].is_null(), "{v}");
    v
}

// ---------------------------------------------------------------------------------------------
// assay store copy

#[tokio::test(flavor = "multi_thread")]
async fn an_installation_moves_to_postgres_and_is_served_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = client();

    // A single machine's installation, with real runs.
    let s = serve(&data, &["--slots", "2"]);
    let admin_key = s.key.clone();
    let (_, member) = create_key(&s, &c, "acme", "member").await;
    let (revoked_id, revoked) = create_key(&s, &c, "acme", "viewer").await;
    let a = send(call(
        &s,
        &c,
        Some(&s.key),
        Method::DELETE,
        &format!("/v1/keys/{revoked_id}"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let big = s.submit(&c, big_program()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let small = s.submit(&c, py("print(6 * 7)")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = s.submit(&c, py("raise SystemExit(3)")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let acme = submit_as(&s, &c, &member, py("print('acme')")).await;
    let cancelled = s.submit(&c, sleeper()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&s, &c, &cancelled, "running").await;
    cancel_and_wait(&s, &c, &cancelled).await;
    let ids = [big, small, failed, acme, cancelled];
    let views = s.wait_all(&c, &ids, Duration::from_secs(120)).await;
    let statuses: Vec<&str> = views
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["succeeded", "succeeded", "failed", "succeeded", "cancelled"]
    );
    let source_blobs = files(&data.join("blobs"));
    assert!(
        !blobs_of(&data.join("blobs"), &ids[0]).is_empty(),
        "the big stdout is in the blob store: {:?}",
        source_blobs.keys()
    );
    drop(s);

    // The copy, into PostgreSQL and a second blob store.
    let db = Database::create().await;
    let blobs2 = dir.path().join("blobs2");
    let from = sqlite_url(&data);
    let copy = |target: &str| {
        assay_cli(
            None,
            &[
                "store",
                "copy",
                "--from",
                &from,
                "--to",
                target,
                "--from-blob",
                &file_url(&data.join("blobs")),
                "--to-blob",
                &file_url(&blobs2),
            ],
        )
    };
    let out = copy(&db.url);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = stdout(&out);
    for expected in [
        "copied sqlite://",
        "5 evaluations, 3 API keys,",
        "verified: the source and the target hold the same installation",
        "evaluations   5 (succeeded 3, failed 1, cancelled 1), each compared whole",
        "API keys      3, each compared whole",
        "audit log     on the target: audit log OK:",
        &format!("blob objects  1 ({BIG} bytes), each in the target's blob store"),
    ] {
        assert!(report.contains(expected), "{expected:?} in:\n{report}");
    }
    assert_eq!(
        files(&blobs2),
        source_blobs,
        "every object, byte for byte, under the same key"
    );
    let source_audit = audit_verify(&from);
    let copied_audit = audit_verify(&db.url);
    assert_eq!(source_audit, copied_audit, "the same chain, the same head");

    // Served from the copy: the same evaluations and output, the same keys.
    let data2 = dir.path().join("data2");
    let mut s2 = serve_with(
        &data2,
        &[
            "--slots",
            "0",
            "--store",
            &db.url,
            "--blob",
            &file_url(&blobs2),
        ],
        ServeOptions {
            no_bootstrap_key: true,
            ..ServeOptions::default()
        },
    );
    assert!(
        !data2.join("admin.key").exists(),
        "the copy has keys: no new admin key"
    );
    s2.key = admin_key;
    for (id, before) in ids.iter().zip(&views) {
        let (code, now) = get(&s2, &c, id).await;
        assert_eq!(code, StatusCode::OK, "{id}: {now}");
        assert_eq!(&now, before, "{id} is served as it was");
    }
    let r = call(
        &s2,
        &c,
        Some(&s2.key),
        Method::GET,
        &format!("/v1/evaluations/{}/output/stdout", ids[0]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().await.unwrap();
    assert!(
        body.len() == BIG && body.iter().all(|b| *b == b'x'),
        "the whole stream, from the copied blob store ({} bytes)",
        body.len()
    );
    let me = send(call(&s2, &c, Some(&member), Method::GET, "/v1/me")).await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the member key works: {}",
        me.body
    );
    assert_eq!(me.body["tenant"], "acme");
    let (code, _) = {
        let a = send(call(
            &s2,
            &c,
            Some(&member),
            Method::GET,
            &format!("/v1/evaluations/{}", ids[3]),
        ))
        .await;
        (a.status, a.body)
    };
    assert_eq!(code, StatusCode::OK, "its tenant's evaluation");
    let denied = send(call(&s2, &c, Some(&revoked), Method::GET, "/v1/me")).await;
    assert_eq!(
        denied.status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stays revoked"
    );
    // The copy goes on: a new submission is queued and audited after the copied entries.
    let new = s2.submit(&c, py("print(1)")).await;
    assert_eq!(new["status"], "queued");
    drop(s2);
    let after = audit_verify(&db.url);
    assert!(
        after["entries"].as_u64().unwrap() > copied_audit["entries"].as_u64().unwrap(),
        "{after}"
    );

    // A second copy into the same (now non-empty) target is refused and changes nothing.
    let before = db.holdings().await;
    let blobs_before = files(&blobs2);
    let out = copy(&db.url);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("already holds 6 evaluations, 3 API keys")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(db.holdings().await, before, "nothing changed");
    assert_eq!(files(&blobs2), blobs_before);
}

#[test]
fn a_copy_refuses_what_it_cannot_do_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("none/assay.db").display());
    let target = format!("sqlite://{}", dir.path().join("target/assay.db").display());
    let out = assay_cli(
        None,
        &["store", "copy", "--from", &missing, "--to", &target],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("no Assay database"), "{out:?}");
    let out = assay_cli(None, &["store", "copy", "--from", &target, "--to", &target]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("the same store"), "{out:?}");
    // One blob store alone is not enough to copy objects.
    let out = assay_cli(
        None,
        &[
            "store",
            "copy",
            "--from",
            &missing,
            "--to",
            &target,
            "--from-blob",
            "file:///tmp",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--to-blob"), "{out:?}");
    assert!(
        !dir.path().join("target").exists(),
        "nothing was created: {:?}",
        files(dir.path()).keys()
    );
}

// ---------------------------------------------------------------------------------------------
// assay gc

#[tokio::test(flavor = "multi_thread")]
async fn gc_deletes_old_finished_evaluations_and_their_blobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let blob_dir = data.join("blobs");
    let c = client();
    let s = serve(&data, &["--slots", "1"]);
    let id = |v: Value| v["id"].as_str().unwrap().to_string();
    let old_big = id(s.submit(&c, big_program()).await);
    let old_failed = id(s.submit(&c, py("raise SystemExit(1)")).await);
    let recent = id(s.submit(&c, py("print('recent')")).await);
    s.wait_all(
        &c,
        &[old_big.clone(), old_failed.clone(), recent.clone()],
        Duration::from_secs(120),
    )
    .await;
    // One running (it holds the only slot) and one queued behind it.
    let running = id(s.submit(&c, sleeper()).await);
    wait_status(&s, &c, &running, "running").await;
    let queued = id(s.submit(&c, py("print('later')")).await);
    assert_eq!(get(&s, &c, &queued).await.1["status"], "queued");
    assert!(!blobs_of(&blob_dir, &old_big).is_empty());

    // Forty days pass for every evaluation but `recent`: the old ones finished then; the
    // running and the queued one were created then (and have not finished).
    let day: i64 = 86_400_000;
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", data.join("assay.db").display()))
            .await
            .unwrap();
    for target in [&old_big, &old_failed, &running, &queued] {
        sqlx::query(
            "UPDATE evaluations SET created_at = created_at - ?, \
             started_at = started_at - ?, finished_at = finished_at - ? WHERE id = ?",
        )
        .bind(40 * day)
        .bind(40 * day)
        .bind(40 * day)
        .bind(target)
        .execute(&mut db)
        .await
        .unwrap();
    }
    db.close().await.unwrap();
    let store = sqlite_url(&data);
    let audit_before = audit_verify(&store);

    let gc = |extra: &[&str]| {
        let mut args = vec![
            "gc",
            "--older-than",
            "30d",
            "--data",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        assay_cli(None, &args)
    };
    let out = gc(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("would delete 2 evaluations that finished before")
            && text.contains(&format!("and 1 blob object ({BIG} bytes)"))
            && text.contains("nothing was deleted (--dry-run)"),
        "{text}"
    );
    assert_eq!(get(&s, &c, &old_big).await.0, StatusCode::OK);
    assert!(!blobs_of(&blob_dir, &old_big).is_empty());

    let out = gc(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("deleted 2 evaluations that finished before")
            && text.contains("(more than 30d ago), their events, and 1 blob object")
            && text.contains(&format!("({BIG} bytes)")),
        "{text}"
    );
    for gone in [&old_big, &old_failed] {
        let (code, body) = get(&s, &c, gone).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{gone}: {body}");
    }
    assert!(
        blobs_of(&blob_dir, &old_big).is_empty(),
        "its blob is gone: {:?}",
        files(&blob_dir).keys()
    );
    assert_eq!(get(&s, &c, &recent).await.1["status"], "succeeded");
    assert_eq!(get(&s, &c, &running).await.1["status"], "running");
    assert_eq!(get(&s, &c, &queued).await.1["status"], "queued");
    assert_eq!(
        audit_verify(&store),
        audit_before,
        "the audit log is untouched"
    );

    // Nothing is left to do the second time.
    let out = gc(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with("deleted 0 evaluations"), "{out:?}");
    let out = assay_cli(
        None,
        &[
            "gc",
            "--older-than",
            "30x",
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("invalid duration"), "{out:?}");
    cancel_and_wait(&s, &c, &running).await;
    s.wait_all(&c, &[queued], Duration::from_secs(60)).await;
}

// ---------------------------------------------------------------------------------------------
// [retention]

#[test]
fn bad_retention_settings_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assay.toml");
    std::fs::write(&cfg, "[retention]\nfinished_older_than = \"30x\"\n").unwrap();
    let err = serve_refused(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    assert!(
        err.contains("retention.finished_older_than") && err.contains("invalid duration \"30x\""),
        "{err}"
    );
    let err = serve_refused(
        &dir.path().join("data"),
        &[],
        &[
            ("ASSAY_RETENTION__FINISHED_OLDER_THAN", "30d"),
            ("ASSAY_RETENTION__INTERVAL", "0s"),
        ],
    );
    assert!(
        err.contains("retention.interval") && err.contains("too short"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_deletes_old_finished_evaluations_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let blob_dir = data.join("blobs");
    let cfg = dir.path().join("assay.toml");
    std::fs::write(
        &cfg,
        "[retention]\nfinished_older_than = \"3s\"\ninterval = \"1s\"\n",
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let s = serve_with(
        &data,
        &["--slots", "2", "--config", cfg.to_str().unwrap()],
        ServeOptions {
            log: Some(&log),
            ..ServeOptions::default()
        },
    );
    let c = client();
    let id = |v: Value| v["id"].as_str().unwrap().to_string();
    // The running one holds a slot through many sweeps; the others run on the other slot.
    let running = id(s.submit(&c, sleeper()).await);
    wait_status(&s, &c, &running, "running").await;
    let big = id(s.submit(&c, big_program()).await);
    let small = id(s.submit(&c, py("print(1)")).await);

    // Each is seen finished (its blob written), then gone.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen_finished = BTreeMap::new();
    loop {
        let mut gone = 0;
        for ev in [&big, &small] {
            let (code, body) = get(&s, &c, ev).await;
            match code {
                StatusCode::OK if body["status"] == "succeeded" => {
                    if ev == &big && !seen_finished.contains_key(ev) {
                        assert!(!blobs_of(&blob_dir, ev).is_empty(), "written");
                    }
                    seen_finished.insert(ev.clone(), true);
                }
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => gone += 1,
                other => panic!("{ev}: {other} {body}"),
            }
        }
        if gone == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not deleted in time: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen_finished.len(), 2, "both were seen finished first");
    // Its blob goes right after its row.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !blobs_of(&blob_dir, &big).is_empty() {
        assert!(Instant::now() < deadline, "the blob was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = get(&s, &c, &running).await;
    assert_eq!(
        (code, &body["status"]),
        (StatusCode::OK, &json!("running")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("assay: retention: deleted") {
            assert!(
                text.contains("assay: retention: deleting evaluations finished more than 3s ago"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "nothing logged: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    audit_verify(&sqlite_url(&data));
    cancel_and_wait(&s, &c, &running).await;
}
