//! `assay-service`: the business layer between the front ends (the HTTP API; later the
//! dashboard's sessions) and the store. It knows no HTTP.
//!
//! Every state-changing operation is a typed [`Command`] run by [`Service::execute`], which
//! knows the command's required role, its audit [`Action`] and its target, and writes the
//! command's audit entry itself. Reads are methods of [`Service`] ([`queries`]) that check the
//! caller's role and tenant too (and record refusals). Both speak the API's types
//! (`assay-api`) in and out, so a front end only turns a request into a command and renders
//! the outcome. This is the one place where metrics and traces hook into every operation.
//!
//! Also here: authentication of API keys ([`keys`]), submission quotas ([`quota`]), the
//! mapping of stored things to the API's views ([`views`]).
#![forbid(unsafe_code)]

mod action;
mod audit;
mod caller;
pub mod commands;
mod error;
pub mod keys;
pub mod output;
pub mod queries;
pub mod quota;
mod service;
pub mod views;
mod watch;

pub use action::Action;
pub use caller::{Caller, Context, RequestMeta};
pub use commands::Command;
pub use service::{Service, ServiceConfig};
pub use watch::Watch;

pub(crate) use error::store_error;
