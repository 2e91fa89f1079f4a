//! Where Assay keeps large objects (evaluation outputs, up to 256 MiB per stream): a local
//! directory (`file:///abs/dir`) or an S3 bucket (`s3://bucket[/prefix]`), behind one type,
//! [`Blobs`].
//!
//! Why a crate of its own: outputs outgrow the database, and everything about large objects
//! (streaming with bounded memory, hashing, ranges, conditional writes, credentials) lives in
//! one place that knows no evaluation, store or HTTP. The backends are object_store's; this
//! crate adds Assay's key rules and semantics on top, and its conformance suite (feature
//! `conformance`) proves them on every backend, S3 against a real server (feature `testing`
//! starts s3s-fs on loopback).

mod blobs;
mod error;
mod key;
mod open;
mod url;
mod writer;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use blobs::{BlobRead, Blobs};
pub use error::BlobError;
pub use key::{MAX_KEY_LEN, MAX_SEGMENT_LEN, validate_key};
pub use open::DEFAULT_REGION;
pub use url::BlobUrl;
pub use writer::{BlobInfo, BlobWriter, PART_SIZE};
