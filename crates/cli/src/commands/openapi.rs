//! `assay openapi`: the OpenAPI document of the HTTP API (committed as docs/openapi.json).

pub fn run() {
    print!("{}", assay_server::openapi_json());
}
