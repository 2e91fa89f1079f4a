//! Quotas and backpressure against the real server (`assay serve --config`, real HTTP, SQLite in
//! a temp folder): the submission rate per key, the tenant's and the global queue caps, the
//! tenant's maximum run limits, and on the claim side the running cap and fair shares between
//! tenants. Every cap is reached, then recovered from; nothing waits on a fixed sleep: waits
//! poll a condition with a deadline (or honour the server's own `Retry-After` hint).

mod common;

use common::{Answer, Server, assay_cli, assert_error, call, client, py, send, serve, stderr};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Writes `toml` as the settings file in `dir`.
fn config(dir: &tempfile::TempDir, toml: &str) -> PathBuf {
    let path = dir.path().join("assay.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Starts `assay serve --config <toml> <extra>` on a fresh data folder.
fn start(dir: &tempfile::TempDir, toml: &str, extra: &[&str]) -> Server {
    let path = config(dir, toml);
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    serve(&dir.path().join("data"), &args)
}

async fn submit(s: &Server, c: &reqwest::Client, key: &str, body: Value) -> Answer {
    send(call(s, c, Some(key), Method::POST, "/v1/evaluations").json(&body)).await
}

async fn batch(s: &Server, c: &reqwest::Client, key: &str, items: Vec<Value>) -> Answer {
    send(
        call(s, c, Some(key), Method::POST, "/v1/evaluations/batch").json(&json!({"items": items})),
    )
    .await
}

fn accepted_id(a: &Answer, what: &str) -> String {
    assert_eq!(a.status, StatusCode::ACCEPTED, "{what}: {}", a.body);
    a.body["id"].as_str().unwrap().to_string()
}

/// A member key of `tenant`, made with the admin key: its secret.
async fn member_key(s: &Server, c: &reqwest::Client, tenant: &str) -> String {
    let a = send(
        call(s, c, Some(&s.key), Method::POST, "/v1/keys")
            .json(&json!({"tenant": tenant, "role": "member", "name": format!("{tenant} member")})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body["key"].as_str().unwrap().to_string()
}

/// Queued evaluations the key's tenant has (`GET /v1/queue`).
async fn queued(s: &Server, c: &reqwest::Client, key: &str) -> u64 {
    let a = send(call(s, c, Some(key), Method::GET, "/v1/queue")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["counts"]["queued"].as_u64().unwrap()
}

async fn cancel(s: &Server, c: &reqwest::Client, key: &str, id: &str) {
    let a = send(call(
        s,
        c,
        Some(key),
        Method::POST,
        &format!("/v1/evaluations/{id}/cancel"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "cancelled", "{}", a.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_is_reached_and_recovers() {
    // 6000 per minute: a token every 10 ms; a bucket of 50 refills in half a second.
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir,
        "[quotas.default]\nrate_per_minute = 6000\nburst = 50\n\
         [quotas.tenants.slow]\nrate_per_minute = 1\nburst = 2\n",
        &["--slots", "0"],
    );
    let c = client();
    let items = || vec![py("print(1)"); 50];

    // The whole burst at once is fine...
    let first = batch(&s, &c, &s.key, items()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    // ... the same again right away is not: it needs 50 tokens, and a few ms refilled a few.
    let refused = batch(&s, &c, &s.key, items()).await;
    let refused_at = Instant::now();
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "2nd burst",
    );
    let retry_after = refused.retry_after().expect("429 carries Retry-After");
    assert_eq!(
        retry_after, 1,
        "under a second to wait, rounded up to whole seconds"
    );
    let d = &refused.body["error"]["details"];
    assert_eq!(d["rate_per_minute"], 6000, "{d}");
    assert_eq!(d["burst"], 50, "{d}");
    assert_eq!(d["requested"], 50, "{d}");
    let wait_ms = d["retry_after_ms"].as_u64().unwrap();
    assert!(
        (1..=500).contains(&wait_ms),
        "at most 50 tokens of 10 ms: {d}"
    );
    assert_eq!(
        queued(&s, &c, &s.key).await,
        50,
        "a refused batch queues nothing (all or nothing)"
    );
    // A batch larger than the bucket can never pass: a 422, not a 429 to retry forever.
    let too_big = batch(&s, &c, &s.key, vec![py("print(1)"); 51]).await;
    assert_error(
        &too_big,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_batch",
        "51 > burst",
    );
    assert!(too_big.retry_after().is_none());

    // Buckets are per key: another key (here of another tenant) is not slowed down.
    let other = member_key(&s, &c, "other").await;
    accepted_id(&submit(&s, &c, &other, py("print(2)")).await, "another key");

    // Recovery: after the hinted wait the bucket is full again. Poll (honouring the server's
    // hint each time) until accepted, within a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut hint = Duration::from_millis(wait_ms);
    let mut refusals = 0;
    loop {
        tokio::time::sleep(hint).await;
        let a = batch(&s, &c, &s.key, items()).await;
        if a.status == StatusCode::ACCEPTED {
            break;
        }
        assert_error(
            &a,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "while refilling",
        );
        refusals += 1;
        assert!(
            Instant::now() < deadline,
            "the bucket never refilled: {}",
            a.body
        );
        hint = Duration::from_millis(
            a.body["error"]["details"]["retry_after_ms"]
                .as_u64()
                .unwrap(),
        );
    }
    let recovered_after = refused_at.elapsed();
    assert!(
        recovered_after >= Duration::from_millis(wait_ms),
        "accepted before the bucket could refill ({recovered_after:?} < {wait_ms} ms)"
    );
    assert!(refusals <= 3, "the hint was far off: {refusals} refusals");
    // The admin key sees every tenant's queue: its 100 and `other`'s one.
    assert_eq!(queued(&s, &c, &s.key).await, 101);

    // Single submissions take one token each, under the tenant's own rate: `slow` may make
    // two, then one a minute.
    let slow = member_key(&s, &c, "slow").await;
    for i in 0..2 {
        accepted_id(
            &submit(&s, &c, &slow, py("print(3)")).await,
            &format!("slow {i}"),
        );
    }
    let a = submit(&s, &c, &slow, py("print(3)")).await;
    assert_error(
        &a,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "slow 3rd",
    );
    let hint = a.retry_after().unwrap();
    assert!(
        (55..=60).contains(&hint),
        "a token a minute: Retry-After {hint}"
    );
    assert_eq!(a.body["error"]["details"]["rate_per_minute"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_queue_cap_is_reached_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir,
        "[quotas.tenants.capped]\nmax_queued = 3\n",
        &["--slots", "0"],
    );
    let c = client();
    let key = member_key(&s, &c, "capped").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(accepted_id(
            &submit(&s, &c, &key, py(&format!("print({i})"))).await,
            "under the cap",
        ));
    }
    let full = submit(&s, &c, &key, py("print('one too many')")).await;
    assert_error(
        &full,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
        "4th",
    );
    assert!(
        full.retry_after().is_some_and(|s| s >= 1),
        "429 carries Retry-After"
    );
    let d = &full.body["error"]["details"];
    assert_eq!(
        (d["limit"].as_u64(), d["queued"].as_u64()),
        (Some(3), Some(3)),
        "{d}"
    );
    // A batch that does not fit is refused whole.
    let b = batch(&s, &c, &key, vec![py("print(1)"); 2]).await;
    assert_error(&b, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", "batch");
    assert_eq!(b.body["error"]["details"]["requested"], 2);
    assert_eq!(
        queued(&s, &c, &key).await,
        3,
        "nothing of the refusals was queued"
    );
    // Another tenant (the admin's `default`, built-in caps) is not affected.
    accepted_id(
        &submit(&s, &c, &s.key, py("print('default')")).await,
        "other tenant",
    );

    // Recovery: one leaves the queue, one more fits; then the cap holds again.
    cancel(&s, &c, &key, &ids[0]).await;
    accepted_id(
        &submit(&s, &c, &key, py("print('fits again')")).await,
        "after a cancel",
    );
    let again = submit(&s, &c, &key, py("print('full again')")).await;
    assert_error(
        &again,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
        "full again",
    );
    cancel(&s, &c, &key, &ids[1]).await;
    cancel(&s, &c, &key, &ids[2]).await;
    let b = batch(&s, &c, &key, vec![py("print(1)"); 2]).await;
    assert_eq!(
        b.status,
        StatusCode::ACCEPTED,
        "a batch of 2 fits in 2 free places: {}",
        b.body
    );
    assert_eq!(queued(&s, &c, &key).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn global_queue_cap_answers_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir, "[quotas]\nmax_queued_total = 4\n", &["--slots", "0"]);
    let c = client();
    let a = member_key(&s, &c, "a").await;
    let b = member_key(&s, &c, "b").await;
    let a1 = accepted_id(&submit(&s, &c, &a, py("print(1)")).await, "a1");
    accepted_id(&submit(&s, &c, &a, py("print(2)")).await, "a2");
    accepted_id(&submit(&s, &c, &b, py("print(3)")).await, "b1");
    accepted_id(&submit(&s, &c, &b, py("print(4)")).await, "b2");
    for (key, who) in [(&a, "a"), (&b, "b"), (&s.key, "admin")] {
        let full = submit(&s, &c, key, py("print(5)")).await;
        assert_error(&full, StatusCode::SERVICE_UNAVAILABLE, "queue_full", who);
        assert!(
            full.retry_after().is_some_and(|s| s >= 1),
            "503 carries Retry-After"
        );
        assert!(
            full.body["error"].get("details").is_none(),
            "no counts of other tenants' work: {}",
            full.body
        );
    }
    // Recovery: one leaves the queue (a's), so b's submission fits.
    cancel(&s, &c, &a, &a1).await;
    accepted_id(&submit(&s, &c, &b, py("print(6)")).await, "after a cancel");
    let full = batch(&s, &c, &a, vec![py("print(7)")]).await;
    assert_error(
        &full,
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_full",
        "batch",
    );
    assert_eq!(
        queued(&s, &c, &s.key).await,
        4,
        "the admin sees all tenants"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_max_limits_are_refused_not_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir,
        "[quotas.tenants.small]\nmax_limits = { wall_time_ms = 2000, memory_bytes = 134217728 }\n",
        &["--slots", "0"],
    );
    let c = client();
    let key = member_key(&s, &c, "small").await;
    let with_limits =
        |limits: Value| json!({"language": "python", "code": "print(1)", "limits": limits});

    let over = submit(&s, &c, &key, with_limits(json!({"wall_time_ms": 2001}))).await;
    assert_error(
        &over,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit_exceeded",
        "wall over",
    );
    let msg = over.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("wall_time_ms") && msg.contains("2000"),
        "{msg}"
    );
    let over = submit(
        &s,
        &c,
        &key,
        with_limits(json!({"memory_bytes": 256u64 << 20})),
    )
    .await;
    assert_error(
        &over,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit_exceeded",
        "memory over",
    );

    // At the maximum: accepted as asked.
    let a = submit(&s, &c, &key, with_limits(json!({"wall_time_ms": 2000}))).await;
    accepted_id(&a, "at the maximum");
    assert_eq!(a.body["limits"]["wall_time_ms"], 2000);
    // Without limits: the operator's defaults (10 s, 256 MiB) are above the tenant's maxima
    // and are lowered to them.
    let a = submit(&s, &c, &key, py("print(1)")).await;
    accepted_id(&a, "defaults");
    assert_eq!(a.body["limits"]["wall_time_ms"], 2000, "{}", a.body);
    assert_eq!(a.body["limits"]["memory_bytes"], 128u64 << 20, "{}", a.body);
    // Fields the tenant has no maximum for keep the operator's.
    let a = submit(&s, &c, &key, with_limits(json!({"pids": 1024}))).await;
    accepted_id(&a, "pids at the operator maximum");

    // In a batch: all or nothing, the item named.
    let b = batch(
        &s,
        &c,
        &key,
        vec![py("print(1)"), with_limits(json!({"wall_time_ms": 5000}))],
    )
    .await;
    assert_error(
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_batch",
        "batch",
    );
    let errors = b.body["error"]["details"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", b.body);
    assert_eq!(
        (errors[0]["index"].as_u64(), errors[0]["code"].as_str()),
        (Some(1), Some("limit_exceeded"))
    );

    // Other tenants keep the operator's maxima.
    let a = submit(&s, &c, &s.key, with_limits(json!({"wall_time_ms": 5000}))).await;
    accepted_id(&a, "other tenant");
    assert_eq!(queued(&s, &c, &key).await, 3);
}

fn millis(t: &Value) -> u128 {
    let ms = assay_api::time::parse_time(t.as_str().unwrap_or_else(|| panic!("a time: {t}")))
        .unwrap_or_else(|| panic!("an RFC 3339 time: {t}"));
    u128::try_from(ms).unwrap()
}

/// Finished evaluations as (tenant, started, finished) in ms, ordered by start.
fn intervals(
    evs: &[Value],
    tenant_of: &dyn Fn(&str) -> &'static str,
) -> Vec<(&'static str, u128, u128)> {
    let mut out: Vec<_> = evs
        .iter()
        .map(|e| {
            assert_eq!(e["status"], "succeeded", "{e}");
            (
                tenant_of(e["id"].as_str().unwrap()),
                millis(&e["started_at"]),
                millis(&e["finished_at"]),
            )
        })
        .collect();
    out.sort_by_key(|x| (x.1, x.2));
    out
}

/// Waits (up to `limit`) until tenant a's batch `ra` and tenant b's batch `rb` have finished;
/// their runs as by [`intervals`].
async fn both_batches_run(
    s: &Server,
    c: &reqwest::Client,
    ra: &Answer,
    rb: &Answer,
    limit: Duration,
) -> Vec<(&'static str, u128, u128)> {
    let ids = |r: &Answer| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (a_ids, b_ids) = (ids(ra), ids(rb));
    let all: Vec<String> = a_ids.iter().chain(&b_ids).cloned().collect();
    let evs = s.wait_all(c, &all, limit).await;
    let tenant_of = |id: &str| {
        if a_ids.iter().any(|x| x == id) {
            "a"
        } else {
            "b"
        }
    };
    intervals(&evs, &tenant_of)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tenants_flooding_get_fair_shares() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir, "", &["--slots", "2"]);
    let c = client();
    let a = member_key(&s, &c, "flood-a").await;
    let b = member_key(&s, &c, "flood-b").await;
    let job = || py("import time\ntime.sleep(0.3)\n");
    // `a` floods first, `b` right after: in plain FIFO order b would wait for all of a's.
    let ra = batch(&s, &c, &a, vec![job(); 20]).await;
    assert_eq!(ra.status, StatusCode::ACCEPTED, "{}", ra.body);
    let rb = batch(&s, &c, &b, vec![job(); 20]).await;
    assert_eq!(rb.status, StatusCode::ACCEPTED, "{}", rb.body);
    let order = both_batches_run(&s, &c, &ra, &rb, Duration::from_secs(180)).await;
    let starts: String = order.iter().map(|x| x.0).collect();
    let a_first_8 = starts[..8].matches('a').count();
    assert!(
        a_first_8 <= 5,
        "b must get workers while a's backlog is queued; start order: {starts}"
    );
    // b's first job starts long before a's backlog drains (a's 20th start).
    let b_first = order.iter().find(|x| x.0 == "b").unwrap().1;
    let a_last = order.iter().rev().find(|x| x.0 == "a").unwrap().1;
    assert!(b_first < a_last, "start order: {starts}");
    let b_pos = starts.find('b').unwrap();
    assert!(
        b_pos <= 3,
        "b's first job starts among the first few: {starts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn running_cap_holds_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    // Three slots, but each tenant may run one at a time.
    let s = start(
        &dir,
        "[quotas.default]\nmax_running = 1\n",
        &["--slots", "3"],
    );
    let c = client();
    let a = member_key(&s, &c, "cap-a").await;
    let b = member_key(&s, &c, "cap-b").await;
    let job = || py("import time\ntime.sleep(0.2)\n");
    let ra = batch(&s, &c, &a, vec![job(); 6]).await;
    let rb = batch(&s, &c, &b, vec![job(); 6]).await;
    assert_eq!(
        (ra.status, rb.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    let order = both_batches_run(&s, &c, &ra, &rb, Duration::from_secs(120)).await;
    // A worker reads the clock just before it waits for the database's write lock, so a start
    // may be stamped a few ms before the finish it waited for; a second run at once would
    // overlap by a whole run (>= 200 ms).
    const CLOCK_SLACK_MS: u128 = 50;
    for t in ["a", "b"] {
        let mine: Vec<_> = order.iter().filter(|x| x.0 == t).collect();
        assert_eq!(mine.len(), 6);
        for w in mine.windows(2) {
            assert!(
                w[1].1 + CLOCK_SLACK_MS >= w[0].2,
                "tenant {t} ran two at once: {:?} started before {:?} finished",
                w[1],
                w[0]
            );
        }
    }
    // The cap held the third slot idle: never three running at once (the most runs at once
    // are found at some run's start: count the runs going on then).
    for x in &order {
        let at_once = order
            .iter()
            .filter(|y| y.1 <= x.1 && x.1 + CLOCK_SLACK_MS < y.2)
            .count();
        assert!(
            at_once <= 2,
            "{at_once} runs at once when {x:?} started: {order:?}"
        );
    }
    // And both tenants ran side by side (the cap is per tenant, not global).
    let side_by_side = order.iter().any(|x| {
        order
            .iter()
            .any(|y| y.0 != x.0 && y.1 + CLOCK_SLACK_MS < x.2 && x.1 + CLOCK_SLACK_MS < y.2)
    });
    assert!(side_by_side, "{order:?}");
}

/// The CLI honours the server's `Retry-After`: a submission refused for its rate is sent again
/// after the wait the server asked for and succeeds, instead of failing.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_waits_out_a_rate_limit_and_succeeds() {
    // 60 per minute, a bucket of 1: the second submission in a row has to wait about a second.
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir,
        "[quotas.default]\nrate_per_minute = 60\nburst = 1\n",
        &["--slots", "0"],
    );
    let prog = dir.path().join("p.py");
    std::fs::write(&prog, "print(1)\n").unwrap();
    let run = || {
        assay_cli(
            Some((&s, &s.key)),
            &["submit", prog.to_str().unwrap(), "--json"],
        )
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    assert!(!stderr(&first).contains("server busy"), "{first:?}");
    let second = run();
    let err = stderr(&second);
    assert!(second.status.success(), "{second:?}");
    assert!(
        err.contains("server busy (429 Too Many Requests); retrying in 1 s"),
        "the CLI says why it waits: {err}"
    );
    let c = client();
    assert_eq!(queued(&s, &c, &s.key).await, 2, "both submissions queued");
}
