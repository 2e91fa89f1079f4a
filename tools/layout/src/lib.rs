//! The workspace's shape, checked by `tests/layout.rs` (this library is only what the tests
//! share: reading a crate's modules and the paths they use).
#![forbid(unsafe_code)]

pub mod modules;
