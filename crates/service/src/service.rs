//! The service value: the store, the in-process bus and the settings.

use assay_blob::Blobs;
use assay_domain::{LimitPolicy, QuotaPolicy, RetryPolicy};
use assay_store::Store;
use assay_store::bus::LocalBus;
use std::sync::Arc;

/// The service's settings.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    /// Limits: the defaults a submission gets and the maxima it may ask for.
    pub limits: LimitPolicy,
    /// Attempts of an evaluation (platform failures are retried until then).
    pub retry: RetryPolicy,
    /// Per-tenant quotas and backpressure.
    pub quotas: QuotaPolicy,
}

/// The service. Cheap to clone: every clone shares the store, the bus and the settings.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    bus: LocalBus,
    config: ServiceConfig,
    /// Where whole output streams are (when they outgrew the preview kept in the store).
    blobs: Option<Blobs>,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, bus: LocalBus, config: ServiceConfig) -> Service {
        Service::build(store, bus, config, None)
    }

    fn build(
        store: Arc<dyn Store>,
        bus: LocalBus,
        config: ServiceConfig,
        blobs: Option<Blobs>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                store,
                bus,
                config,
                blobs,
            }),
        }
    }

    /// The service reading whole output streams from `blobs` (the store the workers write to).
    pub fn with_blobs(
        store: Arc<dyn Store>,
        bus: LocalBus,
        config: ServiceConfig,
        blobs: Blobs,
    ) -> Service {
        Service::build(store, bus, config, Some(blobs))
    }

    pub(crate) fn blobs(&self) -> Option<&Blobs> {
        self.inner.blobs.as_ref()
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn bus(&self) -> &LocalBus {
        &self.inner.bus
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }
}
