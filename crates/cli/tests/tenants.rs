//! Tenants, keys and roles against the real server (`assay serve`, real HTTP, SQLite in a temp
//! folder): every way around authentication and tenant isolation is tried and must fail. No
//! sandbox runs here (`--slots 0`): evaluations stay queued, which is all isolation needs.

mod common;

use common::{Server, assay_cli, assert_error, call, client, py, send_pair, serve, stderr, stdout};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A key made with the admin key through `POST /v1/keys`: (id, secret, the whole answer).
async fn create_key(
    s: &Server,
    c: &reqwest::Client,
    tenant: &str,
    role: &str,
    name: &str,
) -> (String, String, Value) {
    let (st, v) = send_pair(
        call(s, c, Some(&s.key), Method::POST, "/v1/keys")
            .json(&json!({"tenant": tenant, "role": role, "name": name})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
        v,
    )
}

async fn me(s: &Server, c: &reqwest::Client, key: &str) -> (StatusCode, Value) {
    send_pair(call(s, c, Some(key), Method::GET, "/v1/me")).await
}

async fn submit(s: &Server, c: &reqwest::Client, key: &str, body: Value) -> String {
    let (st, v) =
        send_pair(call(s, c, Some(key), Method::POST, "/v1/evaluations").json(&body)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Ids of every evaluation the key can list.
async fn list_ids(s: &Server, c: &reqwest::Client, key: &str, query: &str) -> Vec<String> {
    let (st, v) = send_pair(call(
        s,
        c,
        Some(key),
        Method::GET,
        &format!("/v1/evaluations?limit=1000{query}"),
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis();
    assay_api::time::rfc3339(i64::try_from(ms).unwrap())
}

fn system_time(rfc3339: &str) -> SystemTime {
    let ms = assay_api::time::parse_time(rfc3339).expect("an RFC 3339 time");
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_bypasses_all_fail() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();
    let path = "/v1/evaluations";

    // The bootstrap key works and says what it is.
    let (st, v) = me(&s, &c, &s.key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["tenant"], "default");
    assert_eq!(v["role"], "admin");
    assert_eq!(v["name"], "bootstrap admin");
    assert!(v["key_id"].as_str().unwrap().starts_with("key_"), "{v}");
    assert!(v["expires_at"].is_null(), "{v}");

    // No key.
    let r = call(&s, &c, None, Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(
        &send_pair(call(&s, &c, None, Method::GET, "/v1/me")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "no key",
    );
    // Malformed headers, including the right key in the wrong shape.
    for header in [
        format!("Basic {}", s.key),
        format!("Token {}", s.key),
        s.key.clone(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Bearer    ".to_string(),
        format!("Bearer{}", s.key),
        format!("Bearer {} extra", s.key),
    ] {
        let got = send_pair(
            call(&s, &c, None, Method::GET, path).header(reqwest::header::AUTHORIZATION, &header),
        )
        .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", &header);
    }
    let bytes = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
    let got = send_pair(
        call(&s, &c, None, Method::GET, path).header(reqwest::header::AUTHORIZATION, bytes),
    )
    .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", "non-UTF-8");
    // The scheme is case-insensitive: this is no bypass, just HTTP.
    let got = send_pair(
        call(&s, &c, None, Method::GET, "/v1/me")
            .header(reqwest::header::AUTHORIZATION, format!("bearer {}", s.key)),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    // Wrong keys: made up, and the real one changed in its last character or cut short.
    let mut altered = s.key.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    for wrong in [
        "ak_0000000000000000000000000000000000000000".to_string(),
        altered,
        s.key[..s.key.len() - 1].to_string(),
        format!("{}0", s.key),
        s.key.to_uppercase(),
        assay_service::keys::hash_key(&s.key),
    ] {
        let got = send_pair(call(&s, &c, Some(&wrong), Method::GET, path)).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", &wrong);
    }
    // Keys are never taken from the query string, not even next to a valid header.
    for name in ["key", "api_key", "apikey", "token", "access_token"] {
        let q = format!("{path}?{name}={}", s.key);
        let got = send_pair(call(&s, &c, None, Method::GET, &q)).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "key_in_query",
            &format!("?{name}="),
        );
        let got = send_pair(call(&s, &c, Some(&s.key), Method::GET, &q)).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "key_in_query",
            &format!("?{name}= with a header"),
        );
    }
    let got = send_pair(call(
        &s,
        &c,
        None,
        Method::GET,
        &format!("/v1/me?limit=1&key={}", s.key),
    ))
    .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "key_in_query",
        "second param",
    );
    // Nothing was created by any of it, and the open endpoints stay open.
    let (st, v) = send_pair(call(&s, &c, Some(&s.key), Method::GET, "/v1/keys")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        let r = call(&s, &c, None, Method::GET, open).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_allow_exactly_what_they_should() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();

    // Creating keys: admin only, validated, the key shown once beside its id.
    let (member_id, member, v) = create_key(&s, &c, "acme", "member", "ci runner").await;
    assert!(member.starts_with("ak_") && member.len() == 43, "{v}");
    assert!(member_id.starts_with("key_"), "{v}");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["role"], "member");
    assert_eq!(v["name"], "ci runner");
    assert!(
        v["created_at"].is_string() && v["expires_at"].is_null(),
        "{v}"
    );
    assert!(v.get("hash").is_none(), "{v}");
    let (viewer_id, viewer, _) = create_key(&s, &c, "acme", "viewer", "dashboard").await;
    let (_, acme_admin, _) = create_key(&s, &c, "acme", "admin", "acme ops").await;

    for (key, id, tenant, role) in [
        (&member, &member_id, "acme", "member"),
        (&viewer, &viewer_id, "acme", "viewer"),
    ] {
        let (st, v) = me(&s, &c, key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["key_id"], id.as_str());
        assert_eq!(v["tenant"], tenant);
        assert_eq!(v["role"], role);
        assert!(v.get("key").is_none() && v.get("hash").is_none(), "{v}");
    }
    let (_, v) = me(&s, &c, &acme_admin).await;
    assert_eq!(
        (v["tenant"].as_str(), v["role"].as_str()),
        (Some("acme"), Some("admin"))
    );

    // Invalid new keys: clear 422s, nothing stored.
    let future = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let past = rfc3339(SystemTime::now() - Duration::from_secs(1));
    let cases = [
        (
            json!({"tenant": "Acme", "role": "member", "name": "n"}),
            "invalid_tenant",
        ),
        (
            json!({"tenant": "", "role": "member", "name": "n"}),
            "invalid_tenant",
        ),
        (
            json!({"tenant": "-acme", "role": "member", "name": "n"}),
            "invalid_tenant",
        ),
        (
            json!({"tenant": "a/b", "role": "member", "name": "n"}),
            "invalid_tenant",
        ),
        (
            json!({"tenant": "a".repeat(64), "role": "member", "name": "n"}),
            "invalid_tenant",
        ),
        (
            json!({"tenant": "acme", "role": "root", "name": "n"}),
            "invalid_role",
        ),
        (
            json!({"tenant": "acme", "role": "Admin", "name": "n"}),
            "invalid_role",
        ),
        (
            json!({"tenant": "acme", "role": "member", "name": ""}),
            "invalid_name",
        ),
        (
            json!({"tenant": "acme", "role": "member", "name": "x".repeat(101)}),
            "invalid_name",
        ),
        (
            json!({"tenant": "acme", "role": "member", "name": "a\u{1b}[31m"}),
            "invalid_name",
        ),
        (
            json!({"tenant": "acme", "role": "member", "name": "n", "expires_at": past}),
            "invalid_expiry",
        ),
        (
            json!({"tenant": "acme", "role": "member", "name": "n", "expires_at": "tomorrow"}),
            "invalid_expiry",
        ),
        (
            json!({"tenant": "acme", "role": "member", "name": "n", "expires_at": future, "hash": "x"}),
            "invalid_request",
        ),
        (json!({"tenant": "acme", "name": "n"}), "invalid_request"),
    ];
    for (body, code) in cases {
        let got = send_pair(call(&s, &c, Some(&s.key), Method::POST, "/v1/keys").json(&body)).await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            &body.to_string(),
        );
    }
    let (st, v) = send_pair(call(&s, &c, Some(&s.key), Method::POST, "/v1/keys").json(
        &json!({"tenant": "acme", "role": "viewer", "name": "x".repeat(100), "expires_at": future}),
    ))
    .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "the limits themselves are fine: {v}"
    );

    // Members and viewers manage no keys, and see no dead letters.
    let body = json!({"tenant": "acme", "role": "admin", "name": "escalate"});
    for key in [&member, &viewer] {
        let forbidden = [
            call(&s, &c, Some(key), Method::POST, "/v1/keys").json(&body),
            call(&s, &c, Some(key), Method::GET, "/v1/keys"),
            call(&s, &c, Some(key), Method::GET, "/v1/keys?tenant=acme"),
            call(
                &s,
                &c,
                Some(key),
                Method::DELETE,
                &format!("/v1/keys/{member_id}"),
            ),
            call(&s, &c, Some(key), Method::DELETE, "/v1/keys/no-such-key"),
            call(&s, &c, Some(key), Method::GET, "/v1/dead-letters"),
        ];
        for rb in forbidden {
            let got = send_pair(rb).await;
            assert_error(&got, StatusCode::FORBIDDEN, "forbidden", "not an admin");
        }
    }
    // Still one admin key of tenant default, the keys made above, and the member key works.
    let (_, v) = send_pair(call(&s, &c, Some(&s.key), Method::GET, "/v1/keys")).await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{v}");
    assert!(items.iter().all(|k| k["name"] != "escalate"), "{v}");
    assert_eq!(me(&s, &c, &member).await.0, StatusCode::OK);

    // Viewers read; they do not submit or cancel.
    let ev = submit(&s, &c, &member, py("print(1)")).await;
    for rb in [
        call(&s, &c, Some(&viewer), Method::POST, "/v1/evaluations").json(&py("print(1)")),
        call(
            &s,
            &c,
            Some(&viewer),
            Method::POST,
            "/v1/evaluations?wait=5",
        )
        .json(&py("print(1)")),
        call(&s, &c, Some(&viewer), Method::POST, "/v1/evaluations/batch")
            .json(&json!({"items": [py("print(1)")]})),
        call(
            &s,
            &c,
            Some(&viewer),
            Method::POST,
            &format!("/v1/evaluations/{ev}/cancel"),
        ),
        call(
            &s,
            &c,
            Some(&viewer),
            Method::POST,
            &format!("/v1/evaluations/{ev}/requeue"),
        ),
    ] {
        let got = send_pair(rb).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", "viewer writes");
    }
    let (st, v) = send_pair(call(
        &s,
        &c,
        Some(&viewer),
        Method::GET,
        &format!("/v1/evaluations/{ev}"),
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "queued", "the viewer's cancel changed nothing");
    assert!(!v["cancel_requested"].as_bool().unwrap());
    assert_eq!(list_ids(&s, &c, &viewer, "").await, vec![ev.clone()]);
    let r = call(
        &s,
        &c,
        Some(&viewer),
        Method::GET,
        &format!("/v1/evaluations/{ev}/events"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(r);

    // Members submit (batch too) and cancel in their tenant; requeueing is for admins.
    let (st, _) = send_pair(
        call(&s, &c, Some(&member), Method::POST, "/v1/evaluations/batch")
            .json(&json!({"items": [py("print(2)")]})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let got = send_pair(call(
        &s,
        &c,
        Some(&member),
        Method::POST,
        &format!("/v1/evaluations/{ev}/requeue"),
    ))
    .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", "member requeue");
    let (st, v) = send_pair(call(
        &s,
        &c,
        Some(&member),
        Method::POST,
        &format!("/v1/evaluations/{ev}/cancel"),
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    // An admin may requeue (a cancelled evaluation is not dead: a conflict, not a 403).
    let got = send_pair(call(
        &s,
        &c,
        Some(&s.key),
        Method::POST,
        &format!("/v1/evaluations/{ev}/requeue"),
    ))
    .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", "admin requeue");
    let (st, _) = send_pair(call(&s, &c, Some(&s.key), Method::GET, "/v1/dead-letters")).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_evaluations_do_not_exist() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();
    let (_, acme, _) = create_key(&s, &c, "acme", "member", "acme ci").await;
    let (_, acme_viewer, _) = create_key(&s, &c, "acme", "viewer", "acme dash").await;
    let (_, globex, _) = create_key(&s, &c, "globex", "member", "globex ci").await;
    let (_, globex_viewer, _) = create_key(&s, &c, "globex", "viewer", "globex dash").await;

    let labelled = |code: &str| json!({"language": "python", "code": code, "labels": {"suite": "shared-name"}});
    let a1 = submit(&s, &c, &acme, labelled("print('a1')")).await;
    let a2 = submit(&s, &c, &acme, labelled("print('a2')")).await;
    let g1 = submit(&s, &c, &globex, labelled("print('g1')")).await;
    // The same idempotency key in two tenants: two evaluations, neither sees the other's.
    let idem = |key: &str| {
        call(&s, &c, Some(key), Method::POST, "/v1/evaluations")
            .header("Idempotency-Key", "same-key")
            .json(&py("print('idem')"))
    };
    let (st, ai) = send_pair(idem(&acme)).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, gi) = send_pair(idem(&globex)).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_ne!(ai["id"], gi["id"], "idempotency keys are per tenant");
    let ai = ai["id"].as_str().unwrap().to_string();
    let gi = gi["id"].as_str().unwrap().to_string();

    // What a missing evaluation looks like: another tenant's must look exactly the same.
    let missing = send_pair(call(
        &s,
        &c,
        Some(&globex),
        Method::GET,
        "/v1/evaluations/ev_does_not_exist",
    ))
    .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found", "missing");

    for (key, own, foreign) in [
        (&globex, vec![&g1, &gi], vec![&a1, &a2, &ai]),
        (&globex_viewer, vec![&g1, &gi], vec![&a1, &a2, &ai]),
        (&acme, vec![&a1, &a2, &ai], vec![&g1, &gi]),
        (&acme_viewer, vec![&a1, &a2, &ai], vec![&g1, &gi]),
    ] {
        for id in &foreign {
            let routes = [
                call(
                    &s,
                    &c,
                    Some(key),
                    Method::GET,
                    &format!("/v1/evaluations/{id}"),
                ),
                call(
                    &s,
                    &c,
                    Some(key),
                    Method::GET,
                    &format!("/v1/evaluations/{id}?wait=1"),
                ),
                call(
                    &s,
                    &c,
                    Some(key),
                    Method::GET,
                    &format!("/v1/evaluations/{id}/events"),
                ),
                call(
                    &s,
                    &c,
                    Some(key),
                    Method::GET,
                    &format!("/v1/evaluations/{id}/events"),
                )
                .header("Last-Event-ID", "0"),
                call(
                    &s,
                    &c,
                    Some(key),
                    Method::POST,
                    &format!("/v1/evaluations/{id}/cancel"),
                ),
                call(
                    &s,
                    &c,
                    Some(key),
                    Method::POST,
                    &format!("/v1/evaluations/{id}/requeue"),
                ),
            ];
            for rb in routes {
                let got = send_pair(rb).await;
                assert_eq!(got.0, StatusCode::NOT_FOUND, "{id}: {}", got.1);
                assert_eq!(got.1, missing.1, "indistinguishable from a missing id");
            }
        }
        // Lists: only its own, whatever the filters.
        let mut listed = list_ids(&s, &c, key, "").await;
        listed.sort();
        let mut expected: Vec<String> = own.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
        let by_label = list_ids(&s, &c, key, "&label=suite%3Dshared-name").await;
        assert!(
            foreign.iter().all(|f| !by_label.contains(*f)),
            "{by_label:?}"
        );
        let queued = list_ids(&s, &c, key, "&status=queued").await;
        assert!(foreign.iter().all(|f| !queued.contains(*f)), "{queued:?}");
        // Queue counts are the tenant's own.
        let (st, q) = send_pair(call(&s, &c, Some(key), Method::GET, "/v1/queue")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(q["counts"]["queued"], own.len(), "{q}");
    }

    // Nothing the other tenant tried changed anything; admins see every tenant.
    let mut all = list_ids(&s, &c, &s.key, "").await;
    all.sort();
    let mut expected: Vec<String> = [&a1, &a2, &ai, &g1, &gi]
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(all, expected);
    for id in &expected {
        let (st, v) = send_pair(call(
            &s,
            &c,
            Some(&s.key),
            Method::GET,
            &format!("/v1/evaluations/{id}"),
        ))
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["status"], "queued", "{v}");
        assert_eq!(v["cancel_requested"], false, "{v}");
    }
    let (_, q) = send_pair(call(&s, &c, Some(&s.key), Method::GET, "/v1/queue")).await;
    assert_eq!(q["counts"]["queued"], 5, "{q}");
    // The owner can still cancel its own.
    let (st, v) = send_pair(call(
        &s,
        &c,
        Some(&acme),
        Method::POST,
        &format!("/v1/evaluations/{a1}/cancel"),
    ))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_and_expired_keys_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();

    // Revoked: the very next request is a 401.
    let (id, key, _) = create_key(&s, &c, "acme", "member", "to revoke").await;
    assert_eq!(me(&s, &c, &key).await.0, StatusCode::OK);
    let (st, v) = send_pair(call(
        &s,
        &c,
        Some(&s.key),
        Method::DELETE,
        &format!("/v1/keys/{id}"),
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["state"], "revoked");
    let revoked_at = v["revoked_at"].as_str().unwrap().to_string();
    assert!(v.get("key").is_none() && v.get("hash").is_none(), "{v}");
    for rb in [
        call(&s, &c, Some(&key), Method::GET, "/v1/me"),
        call(&s, &c, Some(&key), Method::GET, "/v1/evaluations"),
        call(&s, &c, Some(&key), Method::POST, "/v1/evaluations").json(&py("print(1)")),
    ] {
        let got = send_pair(rb).await;
        assert_error(
            &got,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "revoked key",
        );
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("revoked"),
            "{}",
            got.1
        );
    }
    // Revoking again changes nothing; an unknown id is a 404.
    let (st, v) = send_pair(call(
        &s,
        &c,
        Some(&s.key),
        Method::DELETE,
        &format!("/v1/keys/{id}"),
    ))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["revoked_at"], revoked_at.as_str());
    let got = send_pair(call(
        &s,
        &c,
        Some(&s.key),
        Method::DELETE,
        "/v1/keys/key_000000000000",
    ))
    .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", "unknown key id");
    assert_eq!(me(&s, &c, &key).await.0, StatusCode::UNAUTHORIZED);

    // Expired: valid until expires_at, refused from then on. (Whole milliseconds, as stored.)
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let expires = UNIX_EPOCH + Duration::from_millis(now_ms + 2_000);
    let (st, v) = send_pair(call(&s, &c, Some(&s.key), Method::POST, "/v1/keys").json(
        &json!({"tenant": "acme", "role": "viewer", "name": "short-lived", "expires_at": rfc3339(expires)}),
    ))
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let short = v["key"].as_str().unwrap().to_string();
    let short_id = v["id"].as_str().unwrap().to_string();
    let (st, v) = me(&s, &c, &short).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expires_at"], rfc3339(expires).as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused_at = loop {
        let got = me(&s, &c, &short).await;
        if got.0 == StatusCode::UNAUTHORIZED {
            assert_error(
                &got,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "expired key",
            );
            assert!(
                got.1["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("expired"),
                "{}",
                got.1
            );
            break SystemTime::now();
        }
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused_at >= expires,
        "refused only once expires_at has passed"
    );
    let got = send_pair(call(&s, &c, Some(&short), Method::GET, "/v1/evaluations")).await;
    assert_error(
        &got,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "expired key",
    );

    // The list shows both, with their states, and never a key or a hash.
    let secrets = [s.key.clone(), key.clone(), short.clone()];
    let r = call(&s, &c, Some(&s.key), Method::GET, "/v1/keys")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a key in the listing: {text}"
        );
        assert!(
            !text.contains(&assay_service::keys::hash_key(secret)),
            "a hash in the listing: {text}"
        );
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    for k in items {
        assert!(k.get("key").is_none() && k.get("hash").is_none(), "{k}");
        let expected = if k["id"] == id.as_str() {
            "revoked"
        } else if k["id"] == short_id.as_str() {
            "expired"
        } else {
            "active"
        };
        assert_eq!(k["state"], expected, "{k}");
    }
    assert!(
        items[0]["last_used_at"].is_string(),
        "use is recorded: {}",
        items[0]
    );
    let (_, v) = send_pair(call(
        &s,
        &c,
        Some(&s.key),
        Method::GET,
        "/v1/keys?tenant=acme",
    ))
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    let got = send_pair(call(
        &s,
        &c,
        Some(&s.key),
        Method::GET,
        "/v1/keys?tenant=acme&x=1",
    ))
    .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        "unknown parameter",
    );
}

fn assay(s: &Server, key: &str, args: &[&str]) -> Output {
    assay_cli(Some((s, key)), args)
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_keys_commands_and_offline_recovery_key() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--slots", "0"]);
    let c = client();

    // create: the key alone on stdout, the note on stderr.
    let out = assay(
        &s,
        &s.key,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "member",
            "--name",
            "ci runner",
            "--expires-in",
            "30d",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("ak_") && !key.contains('\n'), "{out:?}");
    assert!(
        stderr(&out).contains("only time the key is shown"),
        "{out:?}"
    );
    let (st, v) = me(&s, &c, &key).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (v["tenant"].as_str(), v["role"].as_str()),
        (Some("acme"), Some("member"))
    );
    assert_eq!(v["name"], "ci runner");
    let expires = system_time(v["expires_at"].as_str().unwrap());
    let in_30d = SystemTime::now() + Duration::from_secs(30 * 86_400);
    let off = in_30d
        .duration_since(expires)
        .unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(300), "expires in 30 days: {v}");
    let member_id = v["key_id"].as_str().unwrap().to_string();
    assert!(stderr(&out).contains(&member_id), "{out:?}");

    let out = assay(
        &s,
        &s.key,
        &[
            "keys", "create", "--tenant", "globex", "--role", "viewer", "--name", "dash", "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let viewer = created["key"].as_str().unwrap().to_string();
    let viewer_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["tenant"], "globex");
    assert_eq!(me(&s, &c, &viewer).await.1["role"], "viewer");

    let at = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let out = assay(
        &s,
        &s.key,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "admin",
            "--name",
            "n",
            "--expires-at",
            &at,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expires_at"], at.as_str());

    // Bad input: the server's code, exit 2, no key printed.
    let out = assay(
        &s,
        &s.key,
        &[
            "keys",
            "create",
            "--tenant",
            "Bad Tenant",
            "--role",
            "member",
            "--name",
            "n",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("invalid_tenant"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = assay(
        &s,
        &s.key,
        &[
            "keys", "create", "--tenant", "acme", "--role", "root", "--name", "n",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "clap refuses the role: {out:?}");
    let out = assay(
        &s,
        &s.key,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "member",
            "--name",
            "n",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("invalid_expiry"), "{out:?}");

    // list: never a key.
    let out = assay(&s, &s.key, &["keys", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    for secret in [&s.key, &key, &viewer] {
        assert!(!text.contains(secret.as_str()), "{text}");
        assert!(
            !text.contains(&assay_service::keys::hash_key(secret)),
            "{text}"
        );
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{v}");
    assert!(
        ids.contains(&member_id.as_str()) && ids.contains(&viewer_id.as_str()),
        "{v}"
    );
    let out = assay(&s, &s.key, &["keys", "list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = stdout(&out);
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(
        table.contains(&member_id) && table.contains("ci runner") && table.contains("active"),
        "{table}"
    );
    let out = assay(
        &s,
        &s.key,
        &["keys", "list", "--tenant", "globex", "--json"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["items"][0]["id"], viewer_id.as_str());

    // Only admins manage keys.
    for args in [
        vec!["keys", "list"],
        vec![
            "keys", "create", "--tenant", "acme", "--role", "admin", "--name", "x",
        ],
        vec!["keys", "revoke", &viewer_id],
    ] {
        let out = assay(&s, &key, &args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(stderr(&out).contains("forbidden"), "{out:?}");
    }

    // revoke: at once.
    let out = assay(&s, &s.key, &["keys", "revoke", &member_id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with(&format!("{member_id}: revoked")),
        "{out:?}"
    );
    assert_eq!(me(&s, &c, &key).await.0, StatusCode::UNAUTHORIZED);
    let out = assay(&s, &key, &["list"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("unauthorized"), "{out:?}");
    let out = assay(&s, &s.key, &["keys", "revoke", &member_id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "idempotent: {out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["state"],
        "revoked"
    );
    let out = assay(&s, &s.key, &["keys", "revoke", "key_nope"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("not_found"), "{out:?}");

    // Offline recovery, while the server runs: the key works against it at once.
    let data_dir = data.path().to_str().unwrap();
    let offline = |args: &[&str]| {
        let mut all = vec!["admin", "create-key"];
        all.extend_from_slice(args);
        assay_cli(None, &all)
    };
    let out = offline(&["--data", data_dir]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let recovery = stdout(&out).trim().to_string();
    assert!(recovery.starts_with("ak_"), "{out:?}");
    assert!(
        stderr(&out).contains("only time the key is shown"),
        "{out:?}"
    );
    let (st, v) = me(&s, &c, &recovery).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["tenant"], "default");
    assert_eq!(v["role"], "admin");
    assert_eq!(v["name"], "recovery");
    let (st, _) = send_pair(call(&s, &c, Some(&recovery), Method::GET, "/v1/keys")).await;
    assert_eq!(st, StatusCode::OK, "the recovery key is an admin key");

    let out = offline(&[
        "--data",
        data_dir,
        "--tenant",
        "globex",
        "--role",
        "viewer",
        "--name",
        "break glass",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (st, m) = me(&s, &c, v["key"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(m["key_id"], v["id"]);
    assert_eq!(
        (m["tenant"].as_str(), m["role"].as_str()),
        (Some("globex"), Some("viewer"))
    );

    // A folder without a database is refused, and not turned into one.
    let empty = tempfile::tempdir().unwrap();
    let out = offline(&["--data", empty.path().to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(stderr(&out).contains("no Assay database"), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    let out = offline(&["--data", data_dir, "--tenant", "Not Valid"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(stderr(&out).contains("tenant"), "{out:?}");
    assert!(out.stdout.is_empty());
}
