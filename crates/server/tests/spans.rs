//! Every HTTP request runs in an `http.request` span that carries its request id (the one its
//! answer's `X-Request-Id` shows), so every log line a request causes names it.

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_request_is_a_span_with_its_request_id() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = axum::Router::new()
        .route(
            "/x",
            get(|| async {
                tracing::info!("handling it");
                "ok"
            }),
        )
        .layer(axum::middleware::from_fn(assay_server::request::request_id));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = app
            .clone()
            .oneshot(Request::get("/x?secret=1").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(id.starts_with("req_") && id.len() == 36, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for id in &ids {
        let span = format!("http.request{{request_id={id} method=GET path=/x}}");
        assert!(
            text.lines()
                .any(|l| l.contains(&span) && l.ends_with("handling it")),
            "{span} in:\n{text}"
        );
    }
    assert!(!text.contains("secret"), "the query string is not logged");
}
