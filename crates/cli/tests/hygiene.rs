//! Secrets and HTTP hygiene against the real server (`assay serve`, real HTTP): security
//! headers on every kind of answer, CORS closed unless configured, an operator admin key from a
//! `*_FILE` secret, submissions that cannot see the server's environment, and no secret or key
//! in the server's output or in any error answer.

mod common;

use common::{ServeOptions, Server, call, client, py, serve, serve_refused, serve_with};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

fn assert_security_headers(h: &HeaderMap, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            h.get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{what}: {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_on_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--slots", "0"]);
    let c = client();
    let queued = s.submit(&c, py("print(1)")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "healthz",
            c.get(format!("{}/healthz", s.url)),
            StatusCode::OK,
        ),
        (
            "openapi",
            c.get(format!("{}/openapi.json", s.url)),
            StatusCode::OK,
        ),
        ("success", s.req(&c, Method::GET, "/v1/me"), StatusCode::OK),
        (
            "401",
            c.get(format!("{}/v1/me", s.url)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "400 key in query",
            c.get(format!("{}/v1/me?access_token=x", s.url)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "422",
            s.req(&c, Method::POST, "/v1/evaluations")
                .json(&json!({"language": "python", "code": "def ("})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "404 fallback",
            c.get(format!("{}/no/such/route", s.url)),
            StatusCode::NOT_FOUND,
        ),
        (
            "404 evaluation",
            s.req(&c, Method::GET, "/v1/evaluations/nope"),
            StatusCode::NOT_FOUND,
        ),
        (
            "405",
            c.put(format!("{}/healthz", s.url)),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "SSE",
            s.req(&c, Method::GET, &format!("/v1/evaluations/{queued}/events")),
            StatusCode::OK,
        ),
    ];
    for (what, rb, status) in cases {
        // Only the head is read: the SSE stream of a queued evaluation stays open.
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), status, "{what}");
        assert_security_headers(r.headers(), what);
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{what}: no HSTS unless behind_tls"
        );
        if what == "SSE" {
            assert_eq!(r.headers()["content-type"], "text/event-stream");
        }
    }
}

fn preflight(c: &reqwest::Client, s: &Server, origin: &str) -> reqwest::RequestBuilder {
    c.request(Method::OPTIONS, format!("{}/v1/evaluations", s.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_closed_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--slots", "0"]);
    let c = client();
    let r = preflight(&c, &s, "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "preflight: {:?}",
        r.headers()
    );
    assert_security_headers(r.headers(), "preflight");
    let r = s
        .req(&c, Method::GET, "/v1/me")
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_exactly_the_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assay.toml");
    std::fs::write(
        &cfg,
        "[http]\ncors_allowed_origins = [\"https://dash.example.com\"]\nbehind_tls = true\n",
    )
    .unwrap();
    let s = serve(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap(), "--slots", "0"],
    );
    let c = client();

    let r = preflight(&c, &s, "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dash.example.com");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "bearer tokens only, no credentials"
    );
    assert_security_headers(h, "allowed preflight");
    assert_eq!(h["strict-transport-security"], "max-age=31536000");

    for other in [
        "https://evil.example.com",
        "https://dash.example.com.evil.example",
        "http://dash.example.com",
        "null",
    ] {
        let r = preflight(&c, &s, other).send().await.unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{other}: {:?}",
            r.headers()
        );
    }

    let r = s
        .req(&c, Method::GET, "/v1/me")
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://dash.example.com"
    );
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
}

#[test]
fn a_wildcard_cors_origin_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assay.toml");
    std::fs::write(&cfg, "[http]\ncors_allowed_origins = [\"*\"]\n").unwrap();
    let err = serve_refused(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    assert!(err.contains("cors_allowed_origins"), "{err}");
}

/// An operator admin key given as a file (`ASSAY_ADMIN__KEY_FILE`): installed at start, no
/// `admin.key` generated, known (not duplicated) on the next start; a malformed one stops the
/// server without printing it.
#[tokio::test(flavor = "multi_thread")]
async fn operator_admin_key_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = format!("ak_{}", "7f3a".repeat(10));
    let key_file = dir.path().join("admin-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let env = [("ASSAY_ADMIN__KEY_FILE", key_file.to_str().unwrap())];
    let c = client();
    for start in 0..2 {
        let mut s = serve_with(
            &data,
            &["--slots", "0"],
            ServeOptions {
                env: &env,
                no_bootstrap_key: true,
                ..ServeOptions::default()
            },
        );
        s.key = key.clone();
        assert!(!data.join("admin.key").exists(), "no generated key");
        let r = s.req(&c, Method::GET, "/v1/me").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "start {start}");
        let me: Value = r.json().await.unwrap();
        assert_eq!(
            (&me["tenant"], &me["role"]),
            (&json!("default"), &json!("admin"))
        );
        let keys: Value = s
            .req(&c, Method::GET, "/v1/keys")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            keys["items"].as_array().unwrap().len(),
            1,
            "start {start}: {keys}"
        );
    }

    let weak = "ak_short";
    std::fs::write(&key_file, weak).unwrap();
    let err = serve_refused(
        &dir.path().join("data2"),
        &[],
        &[("ASSAY_ADMIN__KEY_FILE", key_file.to_str().unwrap())],
    );
    assert!(err.contains("admin.key"), "{err}");
    assert!(!err.contains(weak), "the key is not printed: {err}");
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

/// Every secret this test hands the server or gets from it must appear nowhere but in the one
/// answer that creates a key: not in the server's output (at the most verbose log level), not
/// in any other answer, and not inside a submission (its environment, `/proc/self/environ`,
/// the secret file).
#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_logs_answers_and_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");

    let admin_key = format!("ak_{}", "c0ffee".repeat(7));
    let key_file = dir.path().join("admin-key");
    std::fs::write(&key_file, &admin_key).unwrap();
    let env_secret = "env-secret-d41d8cd98f00b204";

    // An issuer with an EC key (quick to make) for a JWT caller.
    use p256::pkcs8::EncodePrivateKey;
    let ec = p256::SecretKey::random(&mut rand_core::OsRng);
    let signing = EncodingKey::from_ec_der(ec.to_pkcs8_der().unwrap().as_bytes());
    let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("ec-1".into());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let cfg = dir.path().join("assay.toml");
    std::fs::write(
        &cfg,
        format!(
            "[jwt]\nissuer = \"https://idp.test.invalid/\"\naudience = \"assay\"\njwks_file = {:?}\n",
            jwks.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let jwt = jsonwebtoken::encode(
        &header,
        &json!({"iss": "https://idp.test.invalid/", "aud": "assay", "sub": "dana",
                "tenant": "acme", "role": "member", "exp": now() + 600}),
        &signing,
    )
    .unwrap();
    let jwt_signature = jwt.rsplit('.').next().unwrap().to_string();
    let forged_jwt = format!(
        "{}.{}",
        jwt.rsplit_once('.').unwrap().0,
        "A".repeat(jwt_signature.len())
    );

    let mut s = serve_with(
        &data,
        &["--config", cfg.to_str().unwrap()],
        ServeOptions {
            env: &[
                ("ASSAY_ADMIN__KEY_FILE", key_file.to_str().unwrap()),
                ("ASSAY_TEST_SECRET", env_secret),
                ("ASSAY_LOG", "trace"),
            ],
            log: Some(&log),
            no_bootstrap_key: true,
        },
    );
    s.key = admin_key.clone();
    let c = client();
    let mut answers = String::new();
    let me = |key: &str| call(&s, &c, Some(key), Method::GET, "/v1/me");
    let mut record = async |rb: reqwest::RequestBuilder| -> (StatusCode, String) {
        let r = rb.send().await.unwrap();
        let st = r.status();
        let text = r.text().await.unwrap();
        answers.push_str(&text);
        answers.push('\n');
        (st, text)
    };

    // Key creation: the new key is in this answer only (kept out of `answers`).
    let r = s
        .req(&c, Method::POST, "/v1/keys")
        .json(&json!({"tenant": "acme", "role": "member", "name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let new_key = created["key"].as_str().unwrap().to_string();
    let new_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(record(me(&new_key)).await.0, StatusCode::OK);
    // A wrong key, a revoked key, a JWT, a forged JWT, a key in the query string.
    let wrong_key = format!("ak_{}", "0badc0de".repeat(5));
    assert_eq!(record(me(&wrong_key)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        record(s.req(&c, Method::DELETE, &format!("/v1/keys/{new_id}")))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(record(me(&new_key)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(record(me(&jwt)).await.0, StatusCode::OK);
    assert_eq!(
        record(
            c.post(format!("{}/v1/evaluations", s.url))
                .bearer_auth(&jwt)
                .json(&py("print(1)"))
        )
        .await
        .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(record(me(&forged_jwt)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        record(c.get(format!("{}/v1/me?key={wrong_key}", s.url)))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A malformed header that contains a key.
    assert_eq!(
        record(
            c.get(format!("{}/v1/me", s.url))
                .header("authorization", format!("Token {admin_key}"))
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );

    // A submission looks for the server's secrets everywhere it can.
    let probe = format!(
        r#"
import os
print("ENV", sorted(os.environ.items()))
print("PROC", open("/proc/self/environ", "rb").read())
try:
    print("FILE", open({key_file:?}).read())
except Exception as e:
    print("FILE unreadable", type(e).__name__)
try:
    print("PARENT", open("/proc/1/environ", "rb").read())
except Exception as e:
    print("PARENT unreadable", type(e).__name__)
"#,
        key_file = key_file.to_str().unwrap()
    );
    let (st, text) = record(
        s.req(&c, Method::POST, "/v1/evaluations?wait=30")
            .json(&py(&probe)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let ev: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ev["status"], "succeeded", "{ev}");
    let out = ev["result"]["stdout"].as_str().unwrap();
    assert!(
        out.contains("ENV") && out.contains("PROC"),
        "the probe ran: {out}"
    );
    for secret in [
        env_secret,
        admin_key.as_str(),
        "ASSAY_TEST_SECRET",
        "ASSAY_ADMIN",
    ] {
        assert!(
            !out.contains(secret),
            "{secret} leaked into the sandbox: {out}"
        );
    }

    // The audit trail (answer and database) names callers by id, never by secret.
    let r = s
        .req(&c, Method::GET, "/v1/audit?limit=500")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let audit = r.text().await.unwrap();
    assert!(
        audit.contains("auth.failed") && audit.contains("\"actor\":\"jwt:dana\""),
        "the audit trail recorded the calls: {audit}"
    );
    answers.push_str(&audit);

    // Stop the server so that everything it wrote is in the log.
    drop(s);
    let mut stored = Vec::new();
    for f in std::fs::read_dir(&data).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("assay.db")
        {
            stored.extend(std::fs::read(&p).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.len() > 4096, "the database was read");
    for (what, secret) in [
        ("operator admin key", admin_key.as_str()),
        ("created key", new_key.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("JWT signature", jwt_signature.as_str()),
        ("environment secret", env_secret),
    ] {
        assert!(!stored.contains(secret), "{what} in the database");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    let admin_key_hash = assay_service::keys::hash_key(&admin_key);
    let new_key_hash = assay_service::keys::hash_key(&new_key);
    assert!(
        logged.contains("listening on"),
        "the log was captured: {logged}"
    );
    for (what, secret) in [
        ("operator admin key", admin_key.as_str()),
        ("created key", new_key.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("JWT", jwt.as_str()),
        ("JWT signature", jwt_signature.as_str()),
        ("forged JWT", forged_jwt.as_str()),
        ("environment secret", env_secret),
        ("operator admin key's hash", admin_key_hash.as_str()),
        ("created key's hash", new_key_hash.as_str()),
    ] {
        assert!(!logged.contains(secret), "{what} in the server's output");
        assert!(!answers.contains(secret), "{what} in an answer: {answers}");
    }
    // Nothing logs an Authorization header, even at trace level.
    assert!(
        !logged.to_ascii_lowercase().contains("bearer "),
        "an Authorization header was logged"
    );
}
