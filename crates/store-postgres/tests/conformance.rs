//! The whole `assay-store` conformance suite against PostgreSQL, every check on a fresh
//! database of its own (the callers' clock: the suite drives time itself).

mod common;

use common::{Fixture, fresh};

async fn fixture() -> Fixture {
    let fx = fresh().await;
    assert!(fx.db.name.starts_with("assay_t_"), "a database of its own");
    fx
}

assay_store::conformance_tests!(fixture);
