//! What every slot and attempt of a worker shares.

use crate::config::WorkerConfig;
use assay_blob::Blobs;
use assay_sandbox::Sandbox;
use assay_store::Store;
use assay_store::bus::LocalBus;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

/// What every slot and attempt shares.
#[derive(Clone)]
pub(crate) struct Parts {
    pub store: Arc<dyn Store>,
    pub sandbox: Arc<dyn Sandbox>,
    pub bus: LocalBus,
    /// Where whole output streams go (`None`: all output goes to the event log).
    pub blobs: Option<Blobs>,
    pub cfg: WorkerConfig,
    /// Attempts running now (reported in the registration).
    pub running: Arc<AtomicU32>,
}
