//! The worker: its slots, its registration heartbeat and the reaper.

use crate::attempt;
use crate::config::WorkerConfig;
use crate::parts::Parts;
use assay_blob::Blobs;
use assay_sandbox::{CancellationToken, Sandbox};
use assay_store::bus::LocalBus;
use assay_store::{Store, WorkerInfo, now_millis};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tracing::Instrument;

#[derive(Clone)]
pub struct Worker {
    parts: Parts,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Arc<dyn Sandbox>,
        bus: LocalBus,
        cfg: WorkerConfig,
    ) -> Worker {
        Worker {
            parts: Parts {
                store,
                sandbox,
                bus,
                blobs: None,
                cfg,
                running: Arc::new(AtomicU32::new(0)),
            },
        }
    }

    /// Output streams longer than the preview go whole to `blobs` (published by the fenced
    /// finish); without it, all output goes to the event log.
    pub fn with_blobs(mut self, blobs: Blobs) -> Worker {
        self.parts.blobs = Some(blobs);
        self
    }

    pub fn id(&self) -> &str {
        &self.parts.cfg.id
    }

    fn info(&self, started_at: i64) -> WorkerInfo {
        let p = &self.parts;
        WorkerInfo {
            id: p.cfg.id.clone(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            runtime: p.sandbox.runtime_name().into(),
            slots: u32::try_from(p.cfg.slots).unwrap_or(u32::MAX),
            running: p.running.load(Ordering::Relaxed),
            started_at,
            last_seen: now_millis(),
        }
    }

    /// Runs until `shutdown` is cancelled and every slot has stopped.
    pub async fn run(self, shutdown: CancellationToken) {
        let started_at = now_millis();
        let mut tasks = tokio::task::JoinSet::new();
        for slot in 0..self.parts.cfg.slots {
            let w = self.clone();
            let s = shutdown.clone();
            tasks.spawn(async move { w.slot_loop(slot, s).await });
        }
        let w = self.clone();
        let s = shutdown.clone();
        tasks.spawn(async move { w.registry_and_reaper(started_at, s).await });
        while tasks.join_next().await.is_some() {}
        let _ = self.parts.store.remove_worker(&self.parts.cfg.id).await;
    }

    /// The registration heartbeat and the reaper share one loop.
    async fn registry_and_reaper(&self, started_at: i64, shutdown: CancellationToken) {
        let p = &self.parts;
        let period = (p.cfg.lease / 3).min(Duration::from_secs(2));
        loop {
            if let Err(e) = p.store.worker_heartbeat(&self.info(started_at)).await {
                tracing::warn!(error = %e, "worker heartbeat failed");
            }
            match p.store.reap_expired(&p.cfg.retry, now_millis()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(reaped = n, "returned expired leases to the queue");
                    p.bus.notify_queue();
                }
                Err(e) => tracing::warn!(error = %e, "reaper failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
    }

    async fn slot_loop(&self, slot: usize, shutdown: CancellationToken) {
        let p = &self.parts;
        while !shutdown.is_cancelled() {
            match p
                .store
                .claim(&p.cfg.id, p.cfg.lease, &p.cfg.claim, now_millis())
                .await
            {
                Ok(Some(claim)) => {
                    p.running.fetch_add(1, Ordering::Relaxed);
                    p.bus.publish_events(&claim.evaluation.id);
                    let span = tracing::info_span!(
                        "attempt",
                        evaluation = %claim.evaluation.id,
                        attempt = claim.attempt,
                        worker = %p.cfg.id,
                    );
                    attempt::run(p, claim, &shutdown).instrument(span).await;
                    p.running.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = p.bus.queue_notified() => {}
                        _ = tokio::time::sleep(p.cfg.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(slot, error = %e, "claim failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}
