//! External identity against the real server (`assay serve --config`, real HTTP): JWTs signed
//! with RSA and EC P-256 keys generated here, published as a JWKS file or served by a tiny HTTP
//! server, mapped to tenant and role; every forged, stale or confused token is refused. No
//! sandbox runs (`--slots 0`): submissions stay queued, which is all this needs.

mod common;

use common::{Server, assert_error_code, call, client, py, send_pair, serve, serve_refused};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://idp.test.invalid/";
const AUDIENCE: &str = "assay";

/// The test issuer's keys, made once per test binary (RSA generation takes a moment).
struct Keys {
    rsa: EncodingKey,
    rsa_public_pem: String,
    ec: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use p256::pkcs8::EncodePrivateKey;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let mut rng = rand_core::OsRng;
        let rsa = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let ec = p256::SecretKey::random(&mut rng);
        Keys {
            rsa: EncodingKey::from_rsa_der(rsa.to_pkcs1_der().unwrap().as_bytes()),
            rsa_public_pem: rsa
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            ec: EncodingKey::from_ec_der(ec.to_pkcs8_der().unwrap().as_bytes()),
        }
    })
}

/// The public half of a key as a JWK with `kid`.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.to_string());
    j
}

fn jwks(rsa: bool, ec: bool) -> Value {
    let k = keys();
    let mut set = JwkSet { keys: vec![] };
    if rsa {
        set.keys.push(jwk(&k.rsa, Algorithm::RS256, "rsa-1"));
    }
    if ec {
        set.keys.push(jwk(&k.ec, Algorithm::ES256, "ec-1"));
    }
    serde_json::to_value(set).unwrap()
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

/// Valid claims for `sub` in tenant `org` with `role` (as the issuer is configured here:
/// `tenant_claim = "org"`, `role_claim = "assay_role"`).
fn claims(sub: &str, org: &str, role: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "org": org, "assay_role": role,
           "iat": now(), "exp": now() + 600})
}

fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    let key = match alg {
        Algorithm::RS256 => &keys().rsa,
        Algorithm::ES256 => &keys().ec,
        _ => unreachable!(),
    };
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-1", claims)
}

fn es256(claims: &Value) -> String {
    sign(Algorithm::ES256, "ec-1", claims)
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Writes the issuer's config (and, for a file source, the JWKS) into `dir`; returns the
/// config's path.
fn write_config(dir: &Path, source: &str) -> String {
    let cfg = dir.join("assay.toml");
    std::fs::write(
        &cfg,
        format!(
            "[jwt]\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\n{source}\n\
             tenant_claim = \"org\"\nrole_claim = \"assay_role\"\n"
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

/// A server trusting the test issuer, its JWKS in a file (both keys).
fn serve_with_jwks_file(dir: &Path) -> Server {
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks(true, true).to_string()).unwrap();
    let cfg = write_config(
        dir,
        &format!("jwks_file = {:?}", jwks_path.to_str().unwrap()),
    );
    serve(&dir.join("data"), &["--config", &cfg, "--slots", "0"])
}

async fn send(
    s: &Server,
    c: &reqwest::Client,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = call(s, c, Some(token), method, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send_pair(rb).await
}

async fn me(s: &Server, c: &reqwest::Client, token: &str) -> (StatusCode, Value) {
    send(s, c, token, Method::GET, "/v1/me", None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_and_es256_tokens_map_to_tenant_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_jwks_file(dir.path());
    let c = client();

    let member = rs256(&claims("alice@acme", "acme", "member"));
    let (st, v) = me(&s, &c, &member).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["key_id"], &v["name"], &v["tenant"], &v["role"]),
        (
            &json!("jwt:alice@acme"),
            &json!("alice@acme"),
            &json!("acme"),
            &json!("member")
        ),
        "{v}"
    );
    assert!(v["expires_at"].is_string(), "the token's exp: {v}");

    let viewer = es256(&claims("bob@acme", "acme", "viewer"));
    let (st, v) = me(&s, &c, &viewer).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["tenant"], &v["role"]),
        (&json!("acme"), &json!("viewer"))
    );

    // A viewer cannot submit; a member can, into its own tenant.
    let (st, v) = send(
        &s,
        &c,
        &viewer,
        Method::POST,
        "/v1/evaluations",
        Some(py("print(1)")),
    )
    .await;
    assert_error_code(
        &(st, v),
        StatusCode::FORBIDDEN,
        "forbidden",
        "viewer submits",
    );
    let (st, v) = send(
        &s,
        &c,
        &member,
        Method::POST,
        "/v1/evaluations",
        Some(py("print(1)")),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let mine = v["id"].as_str().unwrap().to_string();
    // The admin key submits in tenant `default`: the JWT member never sees it.
    let other = s.submit(&c, py("print(2)")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = send(&s, &c, &member, Method::GET, "/v1/evaluations", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()], "only its tenant's evaluations");
    let (st, _) = send(
        &s,
        &c,
        &member,
        Method::GET,
        &format!("/v1/evaluations/{other}"),
        None,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another tenant's evaluation is a 404"
    );
    // The viewer of the same tenant reads the member's evaluation.
    let (st, v) = send(
        &s,
        &c,
        &viewer,
        Method::GET,
        &format!("/v1/evaluations/{mine}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Keys stay admin work.
    let (st, v) = send(&s, &c, &member, Method::GET, "/v1/keys", None).await;
    assert_error_code(
        &(st, v),
        StatusCode::FORBIDDEN,
        "forbidden",
        "member lists keys",
    );

    // Claims that do not map: 403 with a code naming the claim.
    let mut no_role = claims("carol", "acme", "member");
    no_role.as_object_mut().unwrap().remove("assay_role");
    assert_error_code(
        &me(&s, &c, &rs256(&no_role)).await,
        StatusCode::FORBIDDEN,
        "jwt_role_missing",
        "no role claim",
    );
    assert_error_code(
        &me(&s, &c, &rs256(&claims("carol", "acme", "owner"))).await,
        StatusCode::FORBIDDEN,
        "jwt_role_invalid",
        "unknown role",
    );
    assert_error_code(
        &me(&s, &c, &rs256(&claims("carol", "acme", "admin"))).await,
        StatusCode::FORBIDDEN,
        "jwt_role_invalid",
        "admin from a JWT without allow_admin",
    );
    let mut no_tenant = claims("carol", "acme", "member");
    no_tenant.as_object_mut().unwrap().remove("org");
    assert_error_code(
        &me(&s, &c, &rs256(&no_tenant)).await,
        StatusCode::FORBIDDEN,
        "jwt_tenant_missing",
        "no tenant claim",
    );
    assert_error_code(
        &me(&s, &c, &rs256(&claims("carol", "../Acme", "member"))).await,
        StatusCode::FORBIDDEN,
        "jwt_tenant_invalid",
        "tenant claim not a tenant name",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_stale_and_confused_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_jwks_file(dir.path());
    let c = client();
    let good = claims("mallory", "acme", "member");
    // The control: the same claims, properly signed, pass.
    assert_eq!(me(&s, &c, &rs256(&good)).await.0, StatusCode::OK);

    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let valid = rs256(&good);
    let parts: Vec<&str> = valid.split('.').collect();
    let header_none = json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"});
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &h,
            &good,
            &EncodingKey::from_secret(keys().rsa_public_pem.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", rs256(&with("exp", json!(now() - 3600)))),
        ("not yet valid", rs256(&with("nbf", json!(now() + 3600)))),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            rs256(&c)
        }),
        (
            "wrong issuer",
            rs256(&with("iss", json!("https://evil.test.invalid/"))),
        ),
        ("wrong audience", rs256(&with("aud", json!("someone-else")))),
        ("no sub", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("sub");
            es256(&c)
        }),
        // The signature of other claims: the payload was changed after signing.
        (
            "bad signature",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&with("org", json!("victim"))),
                parts[2]
            ),
        ),
        ("unknown kid", sign(Algorithm::RS256, "rsa-2", &good)),
        // The EC key's kid on an RS256 token: the key does not verify that algorithm.
        (
            "key of another algorithm",
            sign(Algorithm::RS256, "ec-1", &good),
        ),
        ("alg none", format!("{}.{}.", b64(&header_none), parts[1])),
        (
            "alg none, signature kept",
            format!("{}.{}.{}", b64(&header_none), parts[1], parts[2]),
        ),
        ("HS256 with the public key as secret", hs256_with_public_key),
    ];
    for (what, token) in &cases {
        let got = me(&s, &c, token).await;
        assert_error_code(&got, StatusCode::UNAUTHORIZED, "unauthorized", what);
        let msg = got.1["error"]["message"].as_str().unwrap();
        // Each is refused for its own reason (not, say, all as malformed).
        let reason = match *what {
            "expired" => "JWT expired",
            "not yet valid" => "nbf",
            "no exp" | "no sub" => "required claim",
            "wrong issuer" => "issuer not accepted",
            "wrong audience" => "audience not accepted",
            "bad signature" => "signature invalid",
            "unknown kid" => "unknown key",
            "key of another algorithm" => "does not match its key",
            _ => "algorithm not accepted",
        };
        assert!(msg.contains(reason), "{what}: {msg}");
        assert!(
            !msg.contains(token.as_str()),
            "{what}: the token is never echoed"
        );
    }
    // Tokens in the query string are refused like keys, whatever the parameter is called.
    for p in ["access_token", "jwt", "id_token", "token"] {
        let r = c
            .get(format!("{}/v1/me?{p}={valid}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{p}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "key_in_query", "{p}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_are_refused_without_jwt_settings() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--slots", "0"]);
    let c = client();
    let got = me(&s, &c, &rs256(&claims("alice", "acme", "member"))).await;
    assert_error_code(
        &got,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "JWT without [jwt]",
    );
    // The admin key still works.
    assert_eq!(me(&s, &c, &s.key).await.0, StatusCode::OK);
}

/// A tiny JWKS server: serves `doc`, counts requests.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    let doc = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (d, h) = (doc.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (d, h) = (d.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(d.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer {
        url: format!("http://{addr}/jwks.json"),
        doc,
        hits,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_is_fetched_cached_and_refreshed_on_an_unknown_kid() {
    let idp = jwks_server(jwks(true, false)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("jwks_url = {:?}\njwks_min_refresh_secs = 0", idp.url),
    );
    let s = serve(
        &dir.path().join("data"),
        &["--config", &cfg, "--slots", "0"],
    );
    let c = client();
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1, "fetched once at start");

    let member = rs256(&claims("alice", "acme", "member"));
    for _ in 0..3 {
        assert_eq!(me(&s, &c, &member).await.0, StatusCode::OK);
    }
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "known kids use the cache"
    );

    // The issuer rotates in an EC key: the first token naming it makes Assay fetch again.
    let viewer = es256(&claims("bob", "acme", "viewer"));
    assert_error_code(
        &me(&s, &c, &viewer).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "kid not published yet",
    );
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        2,
        "an unknown kid refreshes"
    );
    *idp.doc.lock().unwrap() = jwks(true, true);
    let (st, v) = me(&s, &c, &viewer).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["role"], "viewer");
    assert_eq!(idp.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_kids_cannot_make_assay_hammer_the_issuer() {
    let idp = jwks_server(jwks(true, false)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("jwks_url = {:?}\njwks_min_refresh_secs = 3600", idp.url),
    );
    let s = serve(
        &dir.path().join("data"),
        &["--config", &cfg, "--slots", "0"],
    );
    let c = client();
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1, "fetched once at start");
    for i in 0..5 {
        let t = sign(
            Algorithm::RS256,
            &format!("unknown-{i}"),
            &claims("x", "acme", "member"),
        );
        assert_error_code(
            &me(&s, &c, &t).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown kid",
        );
    }
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "no refresh within jwks_min_refresh_secs"
    );
    assert_eq!(
        me(&s, &c, &rs256(&claims("alice", "acme", "member")))
            .await
            .0,
        StatusCode::OK
    );
}

#[test]
fn a_jwks_url_must_be_https_unless_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "jwks_url = \"http://idp.test.invalid/jwks.json\"",
    );
    let err = serve_refused(&dir.path().join("data"), &["--config", &cfg], &[]);
    assert!(err.contains("jwks_url"), "{err}");
}
