//! One module per command. Each takes its parsed arguments and does its work through the shared
//! modules of the crate (never through another command's module).

pub mod admin;
pub mod audit;
pub mod batch;
pub mod cancel;
pub mod doctor;
pub mod gc;
pub mod get;
pub mod keys;
pub mod list;
pub mod logs;
pub mod openapi;
pub mod run;
pub mod serve;
pub mod store_copy;
pub mod submit;
pub mod worker;
