//! The evaluation service end to end: the real `assay` binary (`serve`, `worker`) on loopback,
//! real HTTP, real sandboxes (crun), SQLite in a temp folder. Crash tests SIGKILL real processes.

mod common;

use common::{Server, client, parse_sse, py, serve, spawn_assay};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_get_list_cancel_and_auth() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let c = client();

    // Synchronous answer with ?wait.
    let r = s
        .req(&c, reqwest::Method::POST, "/v1/evaluations?wait=30")
        .json(&py("print('hi')"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let ev: Value = r.json().await.unwrap();
    assert_eq!(ev["status"], "succeeded");
    assert_eq!(ev["result"]["stdout"], "hi\n");
    assert_eq!(ev["attempts"], 1);
    assert_eq!(
        loc,
        format!("/v1/evaluations/{}", ev["id"].as_str().unwrap())
    );

    // Labels, list filter, cursor pages.
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = s
            .submit(&c, json!({"language": "python", "code": format!("print({i})"), "labels": {"suite": "t1"}}))
            .await;
        ids.push(e["id"].as_str().unwrap().to_string());
    }
    s.wait_all(&c, &ids, Duration::from_secs(60)).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/evaluations?label=suite%3Dt1&limit=2".to_string();
        if let Some(cur) = &cursor {
            path.push_str(&format!("&cursor={cur}"));
        }
        let page: Value = s
            .req(&c, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for it in page["items"].as_array().unwrap() {
            seen.push(it["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse(); // newest first
    assert_eq!(seen, expected);

    // Cancel a running evaluation: it is killed, not finished.
    let e = s
        .submit(
            &c,
            py("import time\nprint('up', flush=True)\ntime.sleep(60)"),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(&c, &id).await["status"] != "running" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s
        .req(
            &c,
            reqwest::Method::POST,
            &format!("/v1/evaluations/{id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let done = s
        .wait_all(&c, std::slice::from_ref(&id), Duration::from_secs(20))
        .await;
    assert_eq!(done[0]["status"], "cancelled");
    let r = s
        .req(
            &c,
            reqwest::Method::POST,
            &format!("/v1/evaluations/{id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Auth: every bypass fails.
    let url = format!("{}/v1/evaluations", s.url);
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get(&url)
            .header("Authorization", "Basic abc")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get(&url)
            .bearer_auth("ak_wrong")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = c.get(format!("{url}?key={}", s.key)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "key_in_query"
    );
    assert_eq!(
        c.get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(format!("{}/readyz", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let doc: Value = c
        .get(format!("{}/openapi.json", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/evaluations"].is_object());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.data.join("admin.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_are_clear_4xx_and_nothing_is_queued() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();
    let post = |body: Vec<u8>| {
        s.req(&c, reqwest::Method::POST, "/v1/evaluations")
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        (b"{\"language\": \"python\", \"code\": 5}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (b"{\"language\": \"python\", \"code\": \"print(1)\", \"extra\": 1}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (b"{\"language\": \"python\", \"code\": \"print('\xff')\"}".to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        (serde_json::to_vec(&py("x = '\0'")).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "syntax_error"),
        (serde_json::to_vec(&py("def f(:\n  pass")).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "syntax_error"),
        (serde_json::to_vec(&json!({"language": "python", "code": "print(1)", "limits": {"memory_bytes": 1u64 << 50}})).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded"),
        (serde_json::to_vec(&json!({"language": "python", "code": "print(1)", "limits": {"wall_time_ms": -1}})).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (serde_json::to_vec(&json!({"language": "cobol", "code": "x"})).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "unsupported_language"),
        (serde_json::to_vec(&py("")).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "empty_code"),
        (serde_json::to_vec(&json!({"language": "python", "files": [{"path": "../x.py", "content": "1"}], "entrypoint": "../x.py"})).unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_program"),
        (vec![b' '; 33 << 20], StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
    ];
    for (body, status, code) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let r = post(body).send().await.unwrap();
        assert_eq!(r.status(), status, "{preview}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{preview}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // The syntax error names line and column.
    let r = post(serde_json::to_vec(&py("print(1)\ndef f(:\n  pass")).unwrap())
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["details"]["line"], 2);
    assert_eq!(v["error"]["details"]["column"], 7);
    // Batches: all or nothing.
    let items: Vec<Value> = (0..3)
        .map(|i| if i == 1 { py("if") } else { py("print(1)") })
        .collect();
    let r = s
        .req(&c, reqwest::Method::POST, "/v1/evaluations/batch")
        .json(&json!({"items": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["details"]["errors"][0]["index"], 1);
    let too_many: Vec<Value> = (0..1001).map(|_| py("print(1)")).collect();
    let r = s
        .req(&c, reqwest::Method::POST, "/v1/evaluations/batch")
        .json(&json!({"items": too_many}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was queued by any of it.
    let q: Value = s
        .req(&c, reqwest::Method::GET, "/v1/queue")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total: u64 = q["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 0, "{q}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_and_sse_resume() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let c = client();
    let body = py(
        "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.05)",
    );
    let send = || {
        s.req(&c, reqwest::Method::POST, "/v1/evaluations")
            .header("Idempotency-Key", "retry-123")
            .json(&body)
            .send()
    };
    let a: Value = send().await.unwrap().json().await.unwrap();
    let b: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(
        a["id"], b["id"],
        "a retried submission is the same evaluation"
    );
    let id = a["id"].as_str().unwrap().to_string();
    // Follow live, drop the connection after a few events, resume with Last-Event-ID.
    let mut first = Vec::new();
    {
        let mut resp = s
            .req(
                &c,
                reqwest::Method::GET,
                &format!("/v1/evaluations/{id}/events"),
            )
            .send()
            .await
            .unwrap();
        let mut buf = String::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            first = parse_sse(buf.rsplit_once("\n\n").map(|(done, _)| done).unwrap_or(""));
            if first.len() >= 3 {
                break;
            }
        }
    } // dropped mid-stream
    assert!(first.len() >= 3);
    let last = first.last().unwrap().0;
    let rest = s.events(&c, &id, Some(last)).await;
    let mut joined = first.clone();
    joined.extend(rest);
    let full = s.events(&c, &id, None).await;
    assert_eq!(joined, full, "resumed stream has no gaps or repeats");
    let seqs: Vec<i64> = full.iter().map(|e| e.0).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(full.len()).unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(full.last().unwrap().1, "result");
    let out: String = full
        .iter()
        .filter(|e| e.1 == "stdout")
        .map(|e| serde_json::from_str::<String>(&e.2).unwrap())
        .collect();
    assert_eq!(
        out,
        (0..5).map(|i| format!("line {i}\n")).collect::<String>()
    );
}

/// Submits `n` evaluations concurrently over HTTP and returns their ids.
async fn submit_many(s: &Server, c: &reqwest::Client, n: usize, code: &str) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..n {
        let req = s
            .req(c, reqwest::Method::POST, "/v1/evaluations")
            .json(&py(code));
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = set.join_next().await {
        ids.push(r.unwrap());
    }
    ids
}

/// Every evaluation ended exactly once: one `result` event, the last one, and a terminal status.
async fn assert_exactly_once(s: &Server, c: &reqwest::Client, ids: &[String]) {
    for id in ids {
        let evs = s.events(c, id, None).await;
        let results = evs.iter().filter(|e| e.1 == "result").count();
        assert_eq!(results, 1, "{id}: {evs:?}");
        assert_eq!(evs.last().unwrap().1, "result");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_submissions_all_finish_once() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let c = client();
    let ids = submit_many(&s, &c, 1000, "print('ok')").await;
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        1000,
        "1000 distinct evaluations"
    );
    let done = s.wait_all(&c, &ids, Duration::from_secs(600)).await;
    for ev in &done {
        assert_eq!(ev["status"], "succeeded", "{ev}");
        assert_eq!(ev["attempts"], 1);
    }
    assert_exactly_once(&s, &c, &ids[..100]).await;
}

fn sandbox_processes_of(data: &Path) -> usize {
    // Processes whose cgroup is below one of this data folder's engines.
    let Ok(engines) = std::fs::read_dir(data.join("state/engines")) else {
        return 0;
    };
    let mut n = 0;
    for e in engines.flatten() {
        let cg = Path::new("/sys/fs/cgroup/pids/assay").join(e.file_name());
        n += count_procs(&cg);
    }
    n
}

fn count_procs(dir: &Path) -> usize {
    let mut n = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                n += count_procs(&e.path());
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_mid_run_every_evaluation_still_ends_once() {
    let data = tempfile::tempdir().unwrap();
    let c = client();
    let ids;
    {
        let mut s = serve(data.path(), &["--lease", "2s", "--slots", "2"]);
        ids = submit_many(
            &s,
            &c,
            8,
            "import time\nprint('start', flush=True)\ntime.sleep(1.5)\nprint('end')",
        )
        .await;
        // Wait until two are running and their sandboxes exist, then SIGKILL the whole server
        // (API + workers).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let q: Value = s
                .req(&c, reqwest::Method::GET, "/v1/queue")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if q["counts"]["running"].as_u64().unwrap_or(0) >= 2
                && sandbox_processes_of(data.path()) >= 2
            {
                break;
            }
            assert!(Instant::now() < deadline, "nothing started running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        assert!(
            sandbox_processes_of(data.path()) > 0,
            "the killed server's sandboxes are orphaned"
        );
    }
    let s = serve(data.path(), &["--lease", "2s", "--slots", "2"]);
    let done = s.wait_all(&c, &ids, Duration::from_secs(120)).await;
    let mut retried = 0;
    for ev in &done {
        assert_eq!(ev["status"], "succeeded", "{ev}");
        if ev["attempts"].as_u64().unwrap() > 1 {
            retried += 1;
        }
    }
    assert!(
        retried >= 2,
        "the runs cut short were retried and show it: {retried}"
    );
    assert_exactly_once(&s, &c, &ids).await;
    // The restarted server's engine removed the dead one's sandboxes.
    let engines: Vec<_> = std::fs::read_dir(data.path().join("state/engines"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(engines.len(), 1, "only the live engine remains");
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_killed_mid_run_another_worker_finishes_the_work() {
    let data = tempfile::tempdir().unwrap();
    let c = client();
    let s = serve(data.path(), &["--slots", "0"]);
    let mut w1 = spawn_assay(&["worker", "--lease", "2s", "--slots", "2"], data.path());
    let ids = submit_many(&s, &c, 6, "import time\ntime.sleep(1.5)\nprint('done')").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q: Value = s
            .req(&c, reqwest::Method::GET, "/v1/queue")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if q["counts"]["running"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing started running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w1.kill().unwrap();
    w1.wait().unwrap();
    let mut w2 = spawn_assay(&["worker", "--lease", "2s", "--slots", "2"], data.path());
    let done = s.wait_all(&c, &ids, Duration::from_secs(120)).await;
    let _ = w2.kill();
    let _ = w2.wait();
    assert!(done.iter().all(|e| e["status"] == "succeeded"), "{done:?}");
    assert!(done.iter().any(|e| e["attempts"].as_u64().unwrap() > 1));
    assert_exactly_once(&s, &c, &ids).await;
}

/// Finds the PIDs of runtime processes started for this data folder's sandboxes.
fn runtime_pids(data: &Path) -> Vec<i32> {
    let needle = data.join("state").to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if (cmd.starts_with("/usr/bin/crun") || cmd.starts_with("/usr/sbin/runc"))
            && cmd.contains(&needle)
            && cmd.contains(" run ")
        {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_failures_are_dead_lettered_and_can_be_requeued() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--max-attempts", "1", "--slots", "1"]);
    let c = client();
    let e = s
        .submit(
            &c,
            py("import time\nprint('up', flush=True)\ntime.sleep(2)\nprint('done')"),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    // Kill the runtime process under the running evaluation: a platform failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pids = loop {
        let p = runtime_pids(data.path());
        if !p.is_empty() && s.get(&c, &id).await["status"] == "running" {
            break p;
        }
        assert!(Instant::now() < deadline, "the sandbox never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let done = s
        .wait_all(&c, std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    assert_eq!(done[0]["status"], "dead", "{}", done[0]);
    assert!(
        done[0]["error"].as_str().unwrap().contains("runtime"),
        "{}",
        done[0]
    );
    let dl: Value = s
        .req(&c, reqwest::Method::GET, "/v1/dead-letters")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dl["items"][0]["id"], id.as_str());
    // Requeue: it runs again and succeeds.
    let r = s
        .req(
            &c,
            reqwest::Method::POST,
            &format!("/v1/evaluations/{id}/requeue"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let done = s
        .wait_all(&c, std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    // Requeueing a finished evaluation is a conflict.
    let r = s
        .req(
            &c,
            reqwest::Method::POST,
            &format!("/v1/evaluations/{id}/requeue"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_running_work_back_and_it_finishes_after_restart() {
    let data = tempfile::tempdir().unwrap();
    let c = client();
    let id;
    {
        let s = serve(data.path(), &["--grace", "300ms", "--slots", "1"]);
        let e = s
            .submit(
                &c,
                py("import time\nprint('up', flush=True)\ntime.sleep(3)\nprint('done')"),
            )
            .await;
        id = e["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while runtime_pids(data.path()).is_empty() {
            assert!(Instant::now() < deadline, "the sandbox never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(s.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        // It exits by itself after the grace period, having handed the evaluation back.
        let mut s = s;
        let status = s.child.wait().unwrap();
        assert!(status.success(), "graceful exit: {status:?}");
        assert!(
            runtime_pids(data.path()).is_empty(),
            "no sandbox outlives a graceful shutdown"
        );
    }
    let s = serve(data.path(), &["--slots", "1"]);
    let done = s
        .wait_all(&c, std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    assert_eq!(
        done[0]["attempts"], 1,
        "a hand-back does not count as an attempt: {}",
        done[0]
    );
    let evs = s.events(&c, &id, None).await;
    let statuses: Vec<String> = evs
        .iter()
        .filter(|e| e.1 == "status")
        .map(|e| {
            serde_json::from_str::<Value>(&e.2).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["queued", "running", "queued", "running", "succeeded"]
    );
}

/// The CLI client against the real server.
#[tokio::test(flavor = "multi_thread")]
async fn cli_client_commands_against_the_server() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_assay"))
            .args(args)
            .env("ASSAY_URL", &s.url)
            .env("ASSAY_KEY", &s.key)
            .output()
            .unwrap()
    };
    let dir = data.path().join("progs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.py"), "print('A')").unwrap();
    std::fs::write(dir.join("b.py"), "import sys; sys.exit(4)").unwrap();
    let a = dir.join("a.py");

    let out = cli(&["submit", a.to_str().unwrap(), "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A\n");

    let out = cli(&["submit", a.to_str().unwrap(), "--follow", "--label", "k=v"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A\n");

    let out = cli(&[
        "submit",
        dir.join("b.py").to_str().unwrap(),
        "--wait",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed program: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"]["exit_code"], 4);
    let id = v["id"].as_str().unwrap().to_string();

    let out = cli(&["get", &id, "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"],
        "failed"
    );
    let out = cli(&["list", "--label", "k=v", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"succeeded\""), "{text}");

    let out = cli(&["batch", dir.to_str().unwrap(), "--wait"]);
    assert_eq!(out.status.code(), Some(1), "one of the two fails: {out:?}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("succeeded") && summary.contains("failed"),
        "{summary}"
    );

    let out = cli(&["get", "no-such-id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let out = Command::new(env!("CARGO_BIN_EXE_assay"))
        .args(["list"])
        .env("ASSAY_URL", &s.url)
        .env("ASSAY_KEY", "ak_wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
}

/// Many small writes: the event log (what SSE replays) holds exactly the program's output, in
/// order, and the run is not slowed to one database write per line.
#[tokio::test(flavor = "multi_thread")]
async fn many_small_writes_are_streamed_completely_and_in_order() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let c = client();
    let r = s
        .req(&c, reqwest::Method::POST, "/v1/evaluations?wait=60")
        .json(&py("for i in range(20000):\n    print(i)"))
        .send()
        .await
        .unwrap();
    let ev: Value = r.json().await.unwrap();
    assert_eq!(ev["status"], "succeeded", "{ev}");
    let id = ev["id"].as_str().unwrap();
    let expected: String = (0..20000).map(|i| format!("{i}\n")).collect();
    // 108,890 bytes: the evaluation and its live stream carry the first 64 KiB, in order; the
    // output endpoint the whole stream.
    let preview = &expected[..64 * 1024];
    assert_eq!(ev["result"]["stdout"].as_str().unwrap(), preview);
    assert_eq!(ev["result"]["stdout_partial"], true, "{}", ev["result"]);
    assert_eq!(ev["result"]["stdout_bytes"], expected.len());
    let evs = s.events(&c, id, None).await;
    let streamed: String = evs
        .iter()
        .filter(|e| e.1 == "stdout")
        .map(|e| serde_json::from_str::<String>(&e.2).unwrap())
        .collect();
    assert_eq!(streamed, preview);
    let whole = s
        .req(
            &c,
            reqwest::Method::GET,
            &format!("/v1/evaluations/{id}/output/stdout"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(whole, expected);
    let chunks = evs.iter().filter(|e| e.1 == "stdout").count();
    assert!(
        chunks < 20000,
        "coalesced into fewer events than lines: {chunks}"
    );
}
