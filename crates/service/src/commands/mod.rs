//! Commands: every operation that changes state, as a type. [`Service::execute`] runs one:
//! resolve what it acts on (another tenant's evaluation is a 404), check the role (403), run
//! it, and write its audit entry, whatever the outcome.

mod command;
mod evaluations;
mod keys;

pub use command::Command;
pub use evaluations::{Cancel, Requeue, Submit, SubmitBatch, Submitted};
pub use keys::{CreateKey, RevokeKey};
