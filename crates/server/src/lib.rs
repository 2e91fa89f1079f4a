//! assay-server
#![forbid(unsafe_code)]
