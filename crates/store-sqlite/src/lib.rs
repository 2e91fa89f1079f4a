//! SQLite backend of `assay-store`.
#![forbid(unsafe_code)]
