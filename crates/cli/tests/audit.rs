//! The audit log against the real server (`assay serve`, real HTTP, SQLite in a temp folder):
//! every state-changing call and every failed authentication is recorded with who, what, on
//! what, how it ended, from where and under which request id; only admins read it; `assay audit
//! verify` finds a tampered entry; `assay audit export` prints JSON Lines without a secret in
//! them. No sandbox runs here (`--slots 0`): evaluations stay queued.

mod common;

use common::{Answer, Server, assay_cli, call, client, py, send, serve};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

/// A key made with the admin key: (id, secret).
async fn create_key(
    s: &Server,
    c: &reqwest::Client,
    tenant: &str,
    role: &str,
) -> (String, String, Answer) {
    let a = send(
        call(s, c, Some(&s.key), Method::POST, "/v1/keys")
            .json(&json!({"tenant": tenant, "role": role, "name": format!("{role} of {tenant}")})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    (
        a.body["id"].as_str().unwrap().to_string(),
        a.body["key"].as_str().unwrap().to_string(),
        a,
    )
}

/// Every entry matching `query`, oldest first, through every page of `limit`.
async fn audit(s: &Server, c: &reqwest::Client, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?order=oldest&limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(cur) = &cursor {
            path.push_str(&format!("&cursor={cur}"));
        }
        let a = send(call(s, c, Some(&s.key), Method::GET, &path)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let items = a.body["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize);
        out.extend(items.iter().cloned());
        match a.body["next_cursor"].as_str() {
            Some(cur) => cursor = Some(cur.to_string()),
            None => return out,
        }
    }
}

/// The one entry with this request id.
fn by_request<'a>(entries: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "one entry for {request_id}: {entries:#?}");
    found[0]
}

fn assert_entry(
    e: &Value,
    actor: Option<&str>,
    tenant: Option<&str>,
    action: &str,
    target: Option<&str>,
    outcome: &str,
    status: u16,
) {
    assert_eq!(e["actor"].as_str(), actor, "actor of {e}");
    assert_eq!(e["tenant"].as_str(), tenant, "tenant of {e}");
    assert_eq!(e["action"], action, "action of {e}");
    assert_eq!(e["target"].as_str(), target, "target of {e}");
    assert_eq!(e["outcome"], outcome, "outcome of {e}");
    assert_eq!(e["status"], status, "status of {e}");
    assert_eq!(e["source"], "127.0.0.1", "source of {e}");
    assert_eq!(e["hash"].as_str().map(str::len), Some(64), "{e}");
}

fn assay(args: &[&str]) -> Output {
    assay_cli(None, args)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify(data: &Path) -> Output {
    assay(&["audit", "verify", "--data", data.to_str().unwrap()])
}

/// Runs SQL on the data folder's database behind the server's back.
async fn tamper(data: &Path, statements: &[&str]) {
    let url = format!("sqlite://{}", data.join("assay.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open db");
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("close");
}

/// A copy of the database files of `from` in a new folder.
fn copy_data(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for f in ["assay.db", "assay.db-wal", "assay.db-shm"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.path().join(f)).unwrap();
        }
    }
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_failed_authentications_are_recorded_and_the_chain_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--slots", "0"]);
    let c = client();
    let admin = send(call(&s, &c, Some(&s.key), Method::GET, "/v1/me")).await;
    let admin_id = admin.body["key_id"].as_str().unwrap().to_string();
    assert!(admin.headers.contains_key("x-request-id"));

    // Key creation, by the admin.
    let (member_id, member, created) = create_key(&s, &c, "acme", "member").await;
    let create_req = created.request_id();
    let (viewer_id, viewer, _) = create_key(&s, &c, "acme", "viewer").await;

    // A member submits and cancels.
    let sub =
        send(call(&s, &c, Some(&member), Method::POST, "/v1/evaluations").json(&py("print(1)")))
            .await;
    assert_eq!(sub.status, StatusCode::ACCEPTED, "{}", sub.body);
    let eval = sub.body["id"].as_str().unwrap().to_string();
    let cancel = send(call(
        &s,
        &c,
        Some(&member),
        Method::POST,
        &format!("/v1/evaluations/{eval}/cancel"),
    ))
    .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.body);
    // A batch.
    let batch = send(
        call(&s, &c, Some(&member), Method::POST, "/v1/evaluations/batch")
            .json(&json!({"items": [py("print(2)"), py("print(3)")]})),
    )
    .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
    // A viewer may not submit: denied, and recorded.
    let denied =
        send(call(&s, &c, Some(&viewer), Method::POST, "/v1/evaluations").json(&py("print(1)")))
            .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    // Revocation; then the revoked key, a wrong key and no key fail to authenticate.
    let revoke = send(call(
        &s,
        &c,
        Some(&s.key),
        Method::DELETE,
        &format!("/v1/keys/{viewer_id}"),
    ))
    .await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.body);
    let revoked = send(call(&s, &c, Some(&viewer), Method::GET, "/v1/me")).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    let wrong_key = "ak_0123456789abcdef0123456789abcdef01234567";
    let wrong =
        send(call(&s, &c, Some(wrong_key), Method::POST, "/v1/evaluations").json(&py("print(1)")))
            .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let none =
        send(call(&s, &c, None, Method::POST, "/v1/evaluations").json(&py("print(1)"))).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    // Reads are not recorded.
    let read = send(call(
        &s,
        &c,
        Some(&member),
        Method::GET,
        &format!("/v1/evaluations/{eval}"),
    ))
    .await;
    assert_eq!(read.status, StatusCode::OK);
    // Only admins read the audit log.
    for key in [&member] {
        let a = send(call(&s, &c, Some(key), Method::GET, "/v1/audit")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "forbidden");
    }
    // Every answer has its own request id, also outside /v1.
    let health = send(c.get(format!("{}/healthz", s.url))).await;
    let ids: BTreeSet<String> = [
        &sub, &cancel, &denied, &revoke, &revoked, &wrong, &none, &health,
    ]
    .iter()
    .map(|a| a.request_id())
    .collect();
    assert_eq!(ids.len(), 8, "request ids are unique");

    let log = audit(&s, &c, "", 1000).await;
    let seqs: Vec<i64> = log.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(),
        "gapless, oldest first"
    );
    assert_entry(
        by_request(&log, &create_req),
        Some(&admin_id),
        Some("default"),
        "key.create",
        Some(&member_id),
        "ok",
        201,
    );
    assert_entry(
        by_request(&log, &sub.request_id()),
        Some(&member_id),
        Some("acme"),
        "evaluation.submit",
        Some(&eval),
        "ok",
        202,
    );
    assert_entry(
        by_request(&log, &cancel.request_id()),
        Some(&member_id),
        Some("acme"),
        "evaluation.cancel",
        Some(&eval),
        "ok",
        200,
    );
    let b = by_request(&log, &batch.request_id());
    assert_entry(
        b,
        Some(&member_id),
        Some("acme"),
        "evaluation.batch",
        None,
        "ok",
        202,
    );
    for item in batch.body["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        assert!(b["detail"].as_str().unwrap().contains(id), "{b}");
    }
    let d = by_request(&log, &denied.request_id());
    assert_entry(
        d,
        Some(&viewer_id),
        Some("acme"),
        "evaluation.submit",
        None,
        "denied",
        403,
    );
    assert_eq!(d["detail"], "forbidden");
    assert_entry(
        by_request(&log, &revoke.request_id()),
        Some(&admin_id),
        Some("default"),
        "key.revoke",
        Some(&viewer_id),
        "ok",
        200,
    );
    for (a, reason) in [
        (&revoked, "revoked"),
        (&wrong, "invalid API key"),
        (&none, "missing Authorization"),
    ] {
        let e = by_request(&log, &a.request_id());
        assert_entry(e, None, None, "auth.failed", None, "denied", 401);
        let detail = e["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{detail}");
    }
    assert!(
        log.iter().all(|e| e["request_id"] != read.request_id()),
        "a successful read is not recorded"
    );
    // The member's refused read of the audit log is.
    assert!(log.iter().any(|e| e["action"] == "audit.list"
        && e["actor"] == member_id.as_str()
        && e["outcome"] == "denied"));

    // Pages: every page size gives the same entries, once each.
    for limit in [1, 2, 5] {
        let paged = audit(&s, &c, "", limit).await;
        assert_eq!(paged, log, "limit {limit}");
    }
    let newest = send(call(&s, &c, Some(&s.key), Method::GET, "/v1/audit?limit=2")).await;
    let firsts: Vec<i64> = newest.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    // Newest first by default.
    let newest = i64::try_from(seqs.len()).unwrap();
    assert_eq!(firsts, vec![newest, newest - 1]);
    // Filters.
    let failed = audit(&s, &c, "action=auth.failed", 1000).await;
    assert_eq!(failed.len(), 3, "{failed:#?}");
    let by_member = audit(&s, &c, &format!("actor={member_id}&outcome=ok"), 1000).await;
    assert_eq!(
        by_member
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["evaluation.submit", "evaluation.cancel", "evaluation.batch"]
    );
    let on_eval = audit(&s, &c, &format!("target={eval}"), 1000).await;
    assert_eq!(on_eval.len(), 2);
    for bad in [
        "cursor=x",
        "outcome=maybe",
        "limit=0",
        "after=yesterday",
        "order=up",
        "nope=1",
    ] {
        let a = send(call(
            &s,
            &c,
            Some(&s.key),
            Method::GET,
            &format!("/v1/audit?{bad}"),
        ))
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
    }

    // The chain verifies, with the server running.
    let out = verify(dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("OK: {} entries", log.len())),
        "{stdout}"
    );

    // Export: over HTTP with the admin key, and offline; the same JSON Lines.
    let http = assay(&["audit", "export", "--url", &s.url, "--key", &s.key]);
    assert!(http.status.success(), "{}", text(&http));
    let offline = assay(&["audit", "export", "--data", dir.path().to_str().unwrap()]);
    assert!(offline.status.success(), "{}", text(&offline));
    let lines: Vec<Value> = String::from_utf8(http.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines, log, "the export is the whole log, oldest first");
    assert_eq!(
        http.stdout, offline.stdout,
        "HTTP and offline exports agree"
    );
    let filtered = assay(&[
        "audit",
        "export",
        "--data",
        dir.path().to_str().unwrap(),
        "--action",
        "auth.failed",
    ]);
    assert_eq!(String::from_utf8_lossy(&filtered.stdout).lines().count(), 3);
    // No secret anywhere in it.
    let exported = String::from_utf8_lossy(&http.stdout).to_string();
    for secret in [&s.key, &member, &viewer, &wrong_key.to_string()] {
        assert!(
            !exported.contains(secret.as_str()),
            "a key secret is in the audit log"
        );
        assert!(
            !exported.contains(&secret[3..20]),
            "part of a key secret is in the audit log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = serve(dir.path(), &["--slots", "0"]);
        let c = client();
        for i in 0..5 {
            let a = send(
                call(&s, &c, Some(&s.key), Method::POST, "/v1/evaluations")
                    .json(&py(&format!("print({i})"))),
            )
            .await;
            assert_eq!(a.status, StatusCode::ACCEPTED);
        }
        assert_eq!(audit(&s, &c, "", 1000).await.len(), 5);
    } // the server is stopped here
    let out = verify(dir.path());
    assert!(out.status.success(), "{}", text(&out));

    // The table refuses edits; dropping the guard and editing an entry breaks its hash.
    let edited = copy_data(dir.path());
    let url = format!("sqlite://{}", edited.path().join("assay.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let refused = sqlx::query("UPDATE audit_log SET actor = 'someone' WHERE seq = 3")
        .execute(&mut conn)
        .await;
    assert!(refused.is_err(), "the audit log is append-only");
    conn.close().await.unwrap();
    tamper(
        edited.path(),
        &[
            "DROP TRIGGER audit_log_no_update",
            "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3",
        ],
    )
    .await;
    let out = verify(edited.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN at entry 3"),
        "{}",
        text(&out)
    );

    // A deleted entry in the middle.
    let deleted = copy_data(dir.path());
    tamper(
        deleted.path(),
        &[
            "DROP TRIGGER audit_log_no_delete",
            "DELETE FROM audit_log WHERE seq = 2",
        ],
    )
    .await;
    let out = verify(deleted.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN at entry 2"),
        "{}",
        text(&out)
    );

    // The newest entry deleted.
    let truncated = copy_data(dir.path());
    tamper(
        truncated.path(),
        &[
            "DROP TRIGGER audit_log_no_delete",
            "DELETE FROM audit_log WHERE seq = 5",
        ],
    )
    .await;
    let out = verify(truncated.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN at entry 5"),
        "{}",
        text(&out)
    );

    // No database: an error, not an empty (intact) log.
    let empty = tempfile::tempdir().unwrap();
    let out = verify(empty.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!empty.path().join("assay.db").exists());
}
