//! A worker's settings.

use assay_domain::RetryPolicy;
use assay_store::ClaimPolicy;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub id: String,
    /// Concurrent runs (default: the number of cores).
    pub slots: usize,
    /// Lease length; heartbeats come every third of it.
    pub lease: Duration,
    /// How long an idle slot waits before asking the queue again (a local submission wakes it
    /// at once).
    pub poll_interval: Duration,
    /// On shutdown, how long running work may go on before it is killed and handed back.
    pub grace: Duration,
    pub retry: RetryPolicy,
    /// Running caps per tenant, applied by the store on every claim (from the quotas).
    pub claim: ClaimPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            grace: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            claim: ClaimPolicy::default(),
        }
    }
}
