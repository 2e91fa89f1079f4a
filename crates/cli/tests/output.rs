//! Whole output streams: a program's output beyond the 64 KiB preview goes to the blob store
//! (the data folder's `blobs`, by default) as it is written, and comes back byte for byte from
//! `GET /v1/evaluations/{id}/output/{stream}` (with ranges), `assay logs`, `assay get --json`
//! and `assay submit --follow`. Real server, real sandboxes, real HTTP.

mod common;

use common::{assay_cli, assert_error, client, py, send, serve};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// 300,000 bytes of text: 3,000 lines of 99 letters.
const LONG: &str = "import sys\nline = ''.join(chr(97 + i % 26) for i in range(99)) + '\\n'\n\
                    sys.stdout.write(line * 3000)\nsys.stdout.flush()\n\
                    sys.stderr.buffer.write(bytes(range(256)))\n";

fn long_expected() -> String {
    let line: String = (0..99u8).map(|i| char::from(b'a' + i % 26)).collect();
    format!("{line}\n").repeat(3000)
}

fn binary_expected() -> Vec<u8> {
    (0..=255u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn long_and_binary_streams_come_back_whole_with_ranges() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let c = client();
    let expected = long_expected();
    let r = s
        .req(&c, Method::POST, "/v1/evaluations?wait=60")
        .json(&py(LONG))
        .send()
        .await
        .unwrap();
    let ev: Value = r.json().await.unwrap();
    assert_eq!(ev["status"], "succeeded", "{ev}");
    let id = ev["id"].as_str().unwrap();
    let result = &ev["result"];
    assert_eq!(result["stdout_partial"], true, "{result}");
    assert_eq!(result["stdout_bytes"], expected.len());
    assert_eq!(result["stdout"].as_str().unwrap(), &expected[..64 * 1024]);
    assert_eq!(result["stderr_partial"], true, "not UTF-8: {result}");
    assert_eq!(result["stderr_bytes"], 256);
    let blobs = data.path().join("blobs").join("outputs").join(id);
    assert!(
        blobs.is_dir(),
        "the default blob store is the data folder's"
    );

    let path = format!("/v1/evaluations/{id}/output/stdout");
    let whole = s.req(&c, Method::GET, &path).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    let h = whole.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(h["content-length"], expected.len().to_string().as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["etag"].to_str().unwrap().len(), 66, "a quoted SHA-256");
    assert_eq!(whole.text().await.unwrap(), expected);

    for (range, from, to) in [
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=-10", expected.len() - 10, expected.len()),
        ("bytes=299990-", 299_990, 300_000),
        ("bytes=65530-65545", 65_530, 65_546),
    ] {
        let part = s
            .req(&c, Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes {from}-{}/300000", to - 1).as_str(),
            "{range}"
        );
        assert_eq!(part.text().await.unwrap(), &expected[from..to], "{range}");
    }
    let outside = send(
        s.req(&c, Method::GET, &path)
            .header("range", "bytes=300000-"),
    )
    .await;
    assert_error(
        &outside,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        "past the end",
    );
    assert_eq!(outside.headers["content-range"], "bytes */300000");

    let stderr = s
        .req(
            &c,
            Method::GET,
            &format!("/v1/evaluations/{id}/output/stderr"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stderr.bytes().await.unwrap(), binary_expected());
    let stdin = send(s.req(
        &c,
        Method::GET,
        &format!("/v1/evaluations/{id}/output/stdin"),
    ))
    .await;
    assert_error(&stdin, StatusCode::NOT_FOUND, "not_found", "no such stream");
    let missing = send(s.req(&c, Method::GET, "/v1/evaluations/nope/output/stdout")).await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "not_found",
        "no such evaluation",
    );

    // The CLI: `logs` byte for byte, `get --json` with the whole streams.
    let logs = assay_cli(Some((&s, &s.key)), &["logs", id]);
    assert!(logs.status.success(), "{logs:?}");
    assert_eq!(String::from_utf8(logs.stdout).unwrap(), expected);
    assert_eq!(logs.stderr, binary_expected());
    let got = assay_cli(Some((&s, &s.key)), &["get", id, "--json"]);
    assert!(got.status.success(), "{got:?}");
    let v: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(v["result"]["stdout"].as_str().unwrap(), expected);
    assert_eq!(v["result"]["stdout_partial"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_submission_prints_the_preview_live_then_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("long.py");
    std::fs::write(&prog, LONG).unwrap();
    let out = assay_cli(
        Some((&s, &s.key)),
        &["submit", prog.to_str().unwrap(), "--follow"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), long_expected());
    // A stream that is not UTF-8 shows live as text (`assay logs` gives its bytes).
    let shown = String::from_utf8_lossy(&binary_expected()).into_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&shown),
        "stderr as text, then the summary: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_for_finished_evaluations_of_the_callers_tenant() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let c = client();
    let ev = s
        .submit(
            &c,
            py("import time\nprint('go', flush=True)\ntime.sleep(60)"),
        )
        .await;
    let id = ev["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(&c, &id).await["status"] != "running" {
        assert!(Instant::now() < deadline, "it starts running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = format!("/v1/evaluations/{id}/output/stdout");
    let running = send(s.req(&c, Method::GET, &path)).await;
    assert_error(
        &running,
        StatusCode::CONFLICT,
        "not_finished",
        "still running",
    );

    let other = send(
        s.req(&c, Method::POST, "/v1/keys")
            .json(&json!({"tenant": "other", "role": "viewer", "name": "o"})),
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    let other_key = other.body["key"].as_str().unwrap();
    let foreign = send(c.get(format!("{}{path}", s.url)).bearer_auth(other_key)).await;
    assert_error(
        &foreign,
        StatusCode::NOT_FOUND,
        "not_found",
        "another tenant's",
    );

    let cancel = send(s.req(&c, Method::POST, &format!("/v1/evaluations/{id}/cancel"))).await;
    assert_eq!(cancel.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(&c, &id).await["status"] != "cancelled" {
        assert!(Instant::now() < deadline, "it ends cancelled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = s.req(&c, Method::GET, &path).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(after.text().await.unwrap(), "go\n", "what it wrote before");
}
