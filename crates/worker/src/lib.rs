//! assay-worker
#![forbid(unsafe_code)]
