//! Batches against the real server (`assay serve`, real HTTP, SQLite in a temp folder): a
//! retried batch under one `Idempotency-Key` queues nothing new, a different batch under it is
//! refused; `assay batch` applies its limit flags to every item that does not set its own. No
//! sandbox runs (`--slots 0`): what is queued is all these tests look at.

mod common;

use common::{Server, assay_cli, assert_error, call, client, py, send_pair, serve, stdout};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `POST /v1/evaluations/batch` of `items` with `key` as its `Idempotency-Key`.
async fn post_batch(
    s: &Server,
    c: &reqwest::Client,
    key: &str,
    items: &[Value],
) -> (StatusCode, Value) {
    send_pair(
        call(s, c, Some(&s.key), Method::POST, "/v1/evaluations/batch")
            .header("Idempotency-Key", key)
            .json(&json!({ "items": items })),
    )
    .await
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {v}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Ids of every evaluation the admin key lists.
async fn listed(s: &Server, c: &reqwest::Client) -> Vec<String> {
    let (st, v) = send_pair(call(
        s,
        c,
        Some(&s.key),
        Method::GET,
        "/v1/evaluations?limit=1000",
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    ids(&v)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_batch_queues_nothing_new_and_a_different_one_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();
    const N: usize = 5;
    let items: Vec<Value> = (0..N).map(|i| py(&format!("print({i})"))).collect();

    let (st, first) = post_batch(&s, &c, "batch-key-1", &items).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    let first_ids = ids(&first);
    assert_eq!(first_ids.len(), N);

    // The same batch again (a client retrying after a lost answer): the same evaluations.
    let (st, again) = post_batch(&s, &c, "batch-key-1", &items).await;
    assert!(st.is_success(), "{st}: {again}");
    assert_eq!(ids(&again), first_ids, "the same ids, in the same order");
    let mut all = listed(&s, &c).await;
    all.sort();
    let mut want = first_ids.clone();
    want.sort();
    assert_eq!(all, want, "N evaluations, not 2N");

    // A different batch under the same key: one item more, or one fewer.
    let mut more = items.clone();
    more.push(py("print('extra')"));
    let got = post_batch(&s, &c, "batch-key-1", &more).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "idempotency_conflict",
        "a larger batch under a used key",
    );
    let got = post_batch(&s, &c, "batch-key-1", &items[..N - 1]).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "idempotency_conflict",
        "a smaller batch under a used key",
    );
    assert_eq!(
        listed(&s, &c).await.len(),
        N,
        "nothing was queued by the refusals"
    );

    // Another key is another batch.
    let (st, other) = post_batch(&s, &c, "batch-key-2", &items).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{other}");
    assert!(ids(&other).iter().all(|id| !first_ids.contains(id)));
    assert_eq!(listed(&s, &c).await.len(), 2 * N);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_batch_limit_flags_are_defaults_of_every_item() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();
    let jsonl = data.path().join("batch.jsonl");
    std::fs::write(
        &jsonl,
        "{\"code\": \"print(1)\"}\n{\"code\": \"print(2)\", \"limits\": {\"wall_time_ms\": 7000}}\n",
    )
    .unwrap();
    let out = assay_cli(
        Some((&s, &s.key)),
        &[
            "batch",
            jsonl.to_str().unwrap(),
            "--timeout",
            "2s",
            "--cpu-time",
            "1500ms",
            "--memory",
            "64MiB",
            "--output",
            "1KiB",
            "--pids",
            "8",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let batch = v["batch"].as_str().unwrap().to_string();
    let evs = v["items"].as_array().unwrap();
    assert_eq!(evs.len(), 2, "{v}");
    for (ev, wall) in evs.iter().zip([2000, 7000]) {
        let limits = &s.get(&c, ev["id"].as_str().unwrap()).await["limits"];
        assert_eq!(
            limits["wall_time_ms"], wall,
            "an item's own limit wins: {limits}"
        );
        assert_eq!(limits["cpu_time_ms"], 1500, "{limits}");
        assert_eq!(limits["memory_bytes"], 64 << 20, "{limits}");
        assert_eq!(limits["output_bytes"], 1024, "{limits}");
        assert_eq!(limits["pids"], 8, "{limits}");
        assert_eq!(ev["labels"]["batch"], batch.as_str(), "{ev}");
    }
    // The batch's label lists exactly them.
    let out = assay_cli(
        Some((&s, &s.key)),
        &["list", "--label", &format!("batch={batch}"), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    assert!(
        page["items"][0].get("limits").is_none() && page["items"][0]["result"].is_null(),
        "list items are summaries: {page}"
    );
}
