//! The committed OpenAPI document (`docs/openapi.json`) must match the code.
//! To regenerate: `ASSAY_UPDATE_OPENAPI=1 cargo test -p assay-server --test openapi`
//! (or `assay openapi > docs/openapi.json`).

#[test]
fn committed_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = assay_server::openapi_json();
    if std::env::var_os("ASSAY_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date with the code; regenerate it with \
         `ASSAY_UPDATE_OPENAPI=1 cargo test -p assay-server --test openapi` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for p in [
        "/v1/evaluations",
        "/v1/evaluations/batch",
        "/v1/evaluations/{id}/events",
        "/v1/queue",
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/me",
        "/healthz",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
}
