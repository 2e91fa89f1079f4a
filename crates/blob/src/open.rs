//! Building the `object_store` backend a [`crate::BlobUrl`] names: the only place that knows
//! the backends' settings (AWS variables, `*_FILE` secrets, timeouts and retries).
//!
//! The environment is a lookup function handed in, so tests describe it instead of mutating the
//! process's environment (which other tests running in parallel would see).

use crate::error::BlobError;
use crate::url::BlobUrl;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// The region when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` is set.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The backend for `url`, with its prefix applied.
pub(crate) async fn backend(
    url: &BlobUrl,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ObjectStore>, BlobError> {
    if let Some(dir) = url.local_dir() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            BlobError::Backend(format!("creating the directory {}: {e}", dir.display()))
        })?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| BlobError::Backend(format!("opening {}: {e}", dir.display())))?;
        return Ok(Arc::new(fs));
    }
    let bucket = url.s3_bucket().ok_or_else(|| BlobError::InvalidUrl {
        url: url.to_string(),
        reason: "neither a directory nor a bucket".into(),
    })?;
    let s3 = s3_builder(bucket, env)?
        .build()
        .map_err(|e| BlobError::Config(format!("S3 client for {url}: {e}")))?;
    Ok(match url.s3_prefix() {
        Some(prefix) => Arc::new(PrefixStore::new(s3, prefix)),
        None => Arc::new(s3),
    })
}

/// An S3 client for `bucket`, configured from the AWS variables `env` gives.
fn s3_builder(
    bucket: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AmazonS3Builder, BlobError> {
    install_crypto_provider();
    let access_key = secret(env, "AWS_ACCESS_KEY_ID")?;
    let secret_key = secret(env, "AWS_SECRET_ACCESS_KEY")?;
    let token = secret(env, "AWS_SESSION_TOKEN")?;
    let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
        return Err(BlobError::Config(
            "S3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE forms)".into(),
        ));
    };
    let region = non_empty(env, "AWS_REGION")
        .or_else(|| non_empty(env, "AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    // No limit on a whole request: a 256 MiB read may stream for longer than any fixed bound.
    // A stalled connection is caught per read instead.
    let client = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(30));
    // A few quick retries inside a call; longer outages surface as `Unavailable` for the
    // caller's own retry policy instead of blocking a call for minutes.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    };
    let mut b = AmazonS3Builder::new()
        .with_client_options(client)
        .with_retry(retry)
        .with_bucket_name(bucket)
        .with_region(region)
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        // Path-style requests (`endpoint/bucket/key`), so a loopback endpoint works.
        .with_virtual_hosted_style_request(false);
    if let Some(token) = token {
        b = b.with_token(token);
    }
    // The service-specific variable wins, as in the AWS SDKs.
    if let Some(endpoint) =
        non_empty(env, "AWS_ENDPOINT_URL_S3").or_else(|| non_empty(env, "AWS_ENDPOINT_URL"))
    {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(BlobError::Config(format!(
                "the S3 endpoint {endpoint:?} is not an http:// or https:// URL"
            )));
        }
        b = b.with_endpoint(endpoint.trim_end_matches('/'));
    }
    Ok(b)
}

/// object_store's HTTP client uses rustls without a bundled crypto provider (see the root
/// Cargo.toml); ring's becomes the process default unless one is installed already.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn non_empty(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// A secret from `name`, or from the file `<name>_FILE` names (without its final newline).
pub(crate) fn secret(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>, BlobError> {
    let file_var = format!("{name}_FILE");
    match (non_empty(env, name), non_empty(env, &file_var)) {
        (Some(_), Some(_)) => Err(BlobError::Config(format!(
            "both {name} and {file_var} are set: set one"
        ))),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let mut text = std::fs::read_to_string(&path)
                .map_err(|e| BlobError::Config(format!("{file_var}: reading {path}: {e}")))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(Some(text))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn secrets_come_from_the_variable_or_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cr3t\r\n").unwrap();
        let path = f.to_str().unwrap();
        let e = env(&[("A", "direct"), ("B_FILE", path)]);
        assert_eq!(secret(&e, "A").unwrap().as_deref(), Some("direct"));
        assert_eq!(secret(&e, "B").unwrap().as_deref(), Some("s3cr3t"));
        assert_eq!(secret(&e, "C").unwrap(), None);
        let both = env(&[("A", "x"), ("A_FILE", path)]);
        let err = secret(&both, "A").unwrap_err().to_string();
        assert!(err.contains("A_FILE"), "{err}");
        let missing = env(&[("A_FILE", "/nonexistent/secret")]);
        let err = secret(&missing, "A").unwrap_err().to_string();
        assert!(
            err.contains("A_FILE") && err.contains("/nonexistent/secret"),
            "{err}"
        );
        std::fs::write(&f, "two\n\n").unwrap();
        assert_eq!(secret(&e, "B").unwrap().as_deref(), Some("two\n"));
    }

    #[tokio::test]
    async fn s3_needs_credentials_and_a_sane_endpoint() {
        let url = BlobUrl::parse("s3://bucket").unwrap();
        let err = backend(&url, &env(&[])).await.unwrap_err();
        assert!(matches!(err, BlobError::Config(_)), "{err}");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let creds = [
            ("AWS_ACCESS_KEY_ID", "ak"),
            ("AWS_SECRET_ACCESS_KEY", "sk"),
            ("AWS_ENDPOINT_URL", "localhost:9000"),
        ];
        let err = backend(&url, &env(&creds)).await.unwrap_err();
        assert!(err.to_string().contains("localhost:9000"), "{err}");
        let creds = [
            ("AWS_ACCESS_KEY_ID", "ak"),
            ("AWS_SECRET_ACCESS_KEY", "sk"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ];
        backend(&url, &env(&creds)).await.unwrap();
        // Without an endpoint: AWS itself, in the default region.
        backend(&url, &env(&creds[..2])).await.unwrap();
    }

    #[tokio::test]
    async fn file_store_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        let url = BlobUrl::file(&nested).unwrap();
        backend(&url, &env(&[])).await.unwrap();
        assert!(nested.is_dir());
    }
}
