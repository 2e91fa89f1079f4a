//! The conformance suite on S3 against a real server (s3s-fs on loopback, one per check, which
//! checks SigV4 signatures), and what only S3 does: URL prefixes, credentials, outages.
//! s3s-fs must be installed (`scripts/setup`); without it these tests fail, they never skip.

use assay_blob::testing::S3Server;
use assay_blob::{BlobError, BlobUrl, Blobs};
use bytes::Bytes;
use std::collections::HashMap;
use std::ops::Deref;
use std::time::{Duration, Instant};

/// A store on a fresh bucket of its own server; the server lives as long as the fixture.
struct Fixture {
    blobs: Blobs,
    server: S3Server,
}

impl Deref for Fixture {
    type Target = Blobs;
    fn deref(&self) -> &Blobs {
        &self.blobs
    }
}

async fn fresh() -> Fixture {
    let server = S3Server::start();
    let blobs = server.open("assay-test").await;
    Fixture { blobs, server }
}

/// The same, with every key under a URL prefix.
async fn fresh_with_prefix() -> Fixture {
    let server = S3Server::start();
    let blobs = server.open("assay-test/some/prefix").await;
    Fixture { blobs, server }
}

assay_blob::conformance_tests!(fresh);

mod under_a_prefix {
    use super::*;
    assay_blob::conformance_tests!(fresh_with_prefix);
}

#[tokio::test]
async fn the_url_prefix_goes_before_every_key() {
    let fx = fresh_with_prefix().await;
    assert_eq!(fx.url().to_string(), "s3://assay-test/some/prefix");
    fx.put("outputs/e1/stdout", Bytes::from_static(b"out"))
        .await
        .expect("put");
    let file = fx
        .server
        .root
        .path()
        .join("assay-test/some/prefix/outputs/e1/stdout");
    assert_eq!(std::fs::read(&file).expect("the object's file"), b"out");
    assert_eq!(
        fx.list("").await.expect("list"),
        [("outputs/e1/stdout".to_string(), 3)]
    );

    // The same bucket without the prefix sees the full key.
    let whole = fx.server.open("assay-test").await;
    assert_eq!(
        whole.list("").await.expect("list"),
        [("some/prefix/outputs/e1/stdout".to_string(), 3)]
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error_that_is_not_retried() {
    let server = S3Server::start();
    let url = server.create_bucket("assay-test");
    let good = server.env();
    let wrong = move |name: &str| match name {
        "AWS_SECRET_ACCESS_KEY" => Some("not-the-secret".to_string()),
        _ => good(name),
    };
    let blobs = Blobs::open(&url, &wrong).await.expect("open");
    let started = Instant::now();
    let e = blobs
        .put("k", Bytes::from_static(b"x"))
        .await
        .expect_err("put with a wrong secret");
    assert!(matches!(e, BlobError::Backend(_)), "{e:?}");
    assert!(!e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("access denied"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let e = blobs.read_all("k").await.expect_err("read");
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_and_retryable() {
    let mut server = S3Server::start();
    let blobs = server.open("assay-test").await;
    blobs
        .put("k", Bytes::from_static(b"x"))
        .await
        .expect("put while up");
    server.stop();
    let started = Instant::now();
    let e = blobs.read_all("k").await.expect_err("read while down");
    assert!(matches!(e, BlobError::Unavailable(_)), "{e:?}");
    assert!(e.is_retryable());
    let e = blobs
        .put("k2", Bytes::from_static(b"x"))
        .await
        .expect_err("put while down");
    assert!(e.is_retryable(), "{e:?}");
    let mut w = blobs.writer("big").await.expect("writer");
    let e = w
        .write(&vec![0u8; assay_blob::PART_SIZE])
        .await
        .expect_err("a part while down");
    assert!(e.is_retryable(), "{e:?}");
    // The upload never started (creating it failed), so there is nothing to abort.
    w.abort().await.expect("abort");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the client's own retries took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_error_is_unavailable() {
    // A loopback server that answers every request with 503.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let vars = HashMap::from([
        ("AWS_ENDPOINT_URL", format!("http://{addr}")),
        ("AWS_ACCESS_KEY_ID", "ak".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "sk".to_string()),
    ]);
    let env = move |name: &str| vars.get(name).cloned();
    let blobs = Blobs::open(&BlobUrl::parse("s3://bucket").expect("url"), &env)
        .await
        .expect("open");
    let e = blobs
        .size("k")
        .await
        .expect_err("size from a failing server");
    assert!(matches!(e, BlobError::Unavailable(_)), "{e:?}");
    answering.abort();
}

#[tokio::test]
async fn secrets_may_come_from_files() {
    let server = S3Server::start();
    let url = server.create_bucket("assay-test");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{}\n", server.secret_key)).expect("write");
    let good = server.env();
    let path = secret_file.to_str().expect("utf-8 path").to_string();
    let env = move |name: &str| match name {
        "AWS_SECRET_ACCESS_KEY" => None,
        "AWS_SECRET_ACCESS_KEY_FILE" => Some(path.clone()),
        _ => good(name),
    };
    let blobs = Blobs::open(&url, &env).await.expect("open");
    blobs
        .put("k", Bytes::from_static(b"x"))
        .await
        .expect("put with the secret from a file");
}
