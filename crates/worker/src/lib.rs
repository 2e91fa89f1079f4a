//! `assay-worker`: N concurrent slots, each looping claim → sandbox → stream events → finish.
//!
//! * Every write for an attempt is fenced by its lease token; a worker that lost its lease (it
//!   stalled, the reaper gave the job to another) stops at its next write and kills its sandbox.
//! * Heartbeats extend the lease and carry cancellation requests to the running sandbox.
//! * Shutdown (`shutdown` token, e.g. on SIGTERM): stop claiming, let running work finish for a
//!   grace period, then kill it and hand it back to the queue (`release`), uncounted.
//! * A reaper loop returns expired leases of crashed workers to the queue.
//! * Start-up clean-up of sandboxes a crashed process left is the sandbox engine's job
//!   (`Engine::new`).
//!
//! This crate knows no HTTP.
#![forbid(unsafe_code)]

use assay_domain::{OutputStream, Program, RetryPolicy, RunResult, RunStatus};
use assay_sandbox::{CancellationToken, Engine, RunEvent, RunRequest};
use assay_store::bus::LocalBus;
use assay_store::{Claim, ClaimPolicy, Store, StoreError, WorkerInfo, now_millis};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Output chunks already waiting are merged into one event up to this size.
const COALESCE_BYTES: usize = 64 * 1024;

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

#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Store>,
    engine: Engine,
    bus: LocalBus,
    cfg: WorkerConfig,
    running: Arc<AtomicU32>,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, engine: Engine, bus: LocalBus, cfg: WorkerConfig) -> Worker {
        Worker {
            store,
            engine,
            bus,
            cfg,
            running: Arc::new(AtomicU32::new(0)),
        }
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    fn info(&self, started_at: i64) -> WorkerInfo {
        WorkerInfo {
            id: self.cfg.id.clone(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            runtime: self.engine.runtime().name().into(),
            slots: self.cfg.slots as u32,
            running: self.running.load(Ordering::Relaxed),
            started_at,
            last_seen: now_millis(),
        }
    }

    /// Runs until `shutdown` is cancelled and every slot has stopped.
    pub async fn run(self, shutdown: CancellationToken) {
        let started_at = now_millis();
        let mut tasks = tokio::task::JoinSet::new();
        for slot in 0..self.cfg.slots {
            let w = self.clone();
            let s = shutdown.clone();
            tasks.spawn(async move { w.slot_loop(slot, s).await });
        }
        // Registry heartbeat and reaper share one loop.
        let w = self.clone();
        let s = shutdown.clone();
        tasks.spawn(async move {
            let period = w.cfg.lease / 3;
            loop {
                if let Err(e) = w.store.worker_heartbeat(&w.info(started_at)).await {
                    tracing::warn!(error = %e, "worker heartbeat failed");
                }
                match w.store.reap_expired(&w.cfg.retry, now_millis()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(reaped = n, "returned expired leases to the queue");
                        w.bus.notify_queue();
                    }
                    Err(e) => tracing::warn!(error = %e, "reaper failed"),
                }
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tokio::time::sleep(period.min(Duration::from_secs(2))) => {}
                }
            }
        });
        while tasks.join_next().await.is_some() {}
        let _ = self.store.remove_worker(&self.cfg.id).await;
    }

    async fn slot_loop(&self, slot: usize, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self
                .store
                .claim(&self.cfg.id, self.cfg.lease, &self.cfg.claim, now_millis())
                .await
            {
                Ok(Some(claim)) => {
                    self.running.fetch_add(1, Ordering::Relaxed);
                    self.bus.publish_events(&claim.evaluation.id);
                    self.process(claim, &shutdown).await;
                    self.running.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.bus.queue_notified() => {}
                        _ = tokio::time::sleep(self.cfg.poll_interval) => {}
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

    async fn process(&self, claim: Claim, shutdown: &CancellationToken) {
        let ev = &claim.evaluation;
        let id = ev.id.clone();
        let token = claim.token.clone();
        let request = match Program::new(ev.files.clone(), ev.entrypoint.clone()) {
            Ok(program) => RunRequest {
                program,
                environment: ev.language.as_str().into(),
                args: vec![],
                stdin: ev.stdin.clone().into_bytes(),
                limits: ev.limits,
            },
            Err(e) => {
                // Stored programs were validated on submission; this is a platform fault.
                let result = RunResult::platform_error(
                    self.engine.runtime().name(),
                    format!("stored program is invalid: {e}"),
                );
                self.finish(&id, &token, &result).await;
                return;
            }
        };
        let cancel = CancellationToken::new();
        let lease_lost = CancellationToken::new();
        let handed_back = CancellationToken::new();

        // Output → event log, in order, fenced.
        let (tx, mut rx) = mpsc::unbounded_channel::<RunEvent>();
        let forwarder = {
            let store = self.store.clone();
            let bus = self.bus.clone();
            let (id, token, cancel, lease_lost) = (
                id.clone(),
                token.clone(),
                cancel.clone(),
                lease_lost.clone(),
            );
            tokio::spawn(async move {
                let mut utf8 = [Utf8Carry::default(), Utf8Carry::default()];
                let mut held: Option<RunEvent> = None;
                loop {
                    let event = match held.take() {
                        Some(e) => e,
                        None => match rx.recv().await {
                            Some(e) => e,
                            None => break,
                        },
                    };
                    let RunEvent::Output { stream, mut data } = event else {
                        continue;
                    };
                    // Coalesce what is already waiting on the same stream into one write: a
                    // program printing many small lines costs a few transactions, not one each.
                    while data.len() < COALESCE_BYTES {
                        match rx.try_recv() {
                            Ok(RunEvent::Output {
                                stream: s,
                                data: more,
                            }) if s == stream => data.extend_from_slice(&more),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let text = utf8[stream as usize].push(&data);
                    if text.is_empty() {
                        continue;
                    }
                    match store
                        .append_output(&id, &token, stream, &text, now_millis())
                        .await
                    {
                        Ok(_) => bus.publish_events(&id),
                        Err(StoreError::LeaseLost(_)) => {
                            lease_lost.cancel();
                            cancel.cancel();
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(evaluation = %id, error = %e, "could not store output")
                        }
                    }
                }
                for (i, carry) in utf8.iter_mut().enumerate() {
                    let rest = carry.finish();
                    if !rest.is_empty() {
                        let stream = if i == 0 {
                            OutputStream::Stdout
                        } else {
                            OutputStream::Stderr
                        };
                        let _ = store
                            .append_output(&id, &token, stream, &rest, now_millis())
                            .await;
                    }
                }
            })
        };

        // Heartbeats: extend the lease, carry cancellation, notice a lost lease, and on shutdown
        // give running work its grace period before handing it back.
        let heartbeat = {
            let store = self.store.clone();
            let (id, token, cancel, lease_lost, handed_back) = (
                id.clone(),
                token.clone(),
                cancel.clone(),
                lease_lost.clone(),
                handed_back.clone(),
            );
            let lease = self.cfg.lease;
            let grace = self.cfg.grace;
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut grace_deadline: Option<tokio::time::Instant> = None;
                loop {
                    let sleep = tokio::time::sleep(lease / 3);
                    tokio::select! {
                        _ = sleep => {}
                        _ = shutdown.cancelled(), if grace_deadline.is_none() => {
                            grace_deadline = Some(tokio::time::Instant::now() + grace);
                        }
                        _ = async { tokio::time::sleep_until(grace_deadline.unwrap()).await }, if grace_deadline.is_some() => {
                            handed_back.cancel();
                            cancel.cancel();
                            return;
                        }
                        _ = cancel.cancelled() => return,
                    }
                    match store.heartbeat(&id, &token, lease, now_millis()).await {
                        Ok(state) if state.cancel_requested => cancel.cancel(),
                        Ok(_) => {}
                        Err(StoreError::LeaseLost(_)) => {
                            lease_lost.cancel();
                            cancel.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(evaluation = %id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };

        // A cancel that arrived between claim and now.
        if let Ok(state) = self
            .store
            .heartbeat(&id, &token, self.cfg.lease, now_millis())
            .await
            && state.cancel_requested
        {
            cancel.cancel();
        }
        let result = self.engine.run(request, Some(tx), cancel.clone()).await;
        let _ = forwarder.await;
        cancel.cancel(); // stops the heartbeat task
        let _ = heartbeat.await;

        if lease_lost.is_cancelled() {
            tracing::warn!(evaluation = %id, "lease lost: another worker owns this evaluation now; result dropped");
            return;
        }
        if handed_back.is_cancelled() && result.status == RunStatus::Cancelled {
            match self.store.release(&id, &token, now_millis()).await {
                Ok(()) => {
                    self.bus.publish_events(&id);
                    self.bus.notify_queue();
                }
                Err(e) => {
                    tracing::warn!(evaluation = %id, error = %e, "could not hand the evaluation back")
                }
            }
            return;
        }
        self.finish(&id, &token, &result).await;
    }

    async fn finish(&self, id: &str, token: &str, result: &RunResult) {
        match self
            .store
            .finish(id, token, result, &self.cfg.retry, now_millis())
            .await
        {
            Ok(status) => {
                self.bus.publish_events(id);
                if !status.is_terminal() {
                    self.bus.notify_queue();
                }
            }
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(evaluation = %id, "lease lost before finishing; result dropped")
            }
            Err(e) => tracing::error!(evaluation = %id, error = %e, "could not store the result"),
        }
    }
}

/// Turns a byte stream into text without splitting a UTF-8 character across two events:
/// an incomplete trailing sequence waits for the next chunk.
#[derive(Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(), // invalid bytes: replaced below, nothing to wait for
        };
        let rest = self.pending.split_off(valid_up_to);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_carry_never_splits_a_character() {
        let mut c = Utf8Carry::default();
        let s = "héllo→wörld";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(1) {
            out.push_str(&c.push(chunk));
        }
        out.push_str(&c.finish());
        assert_eq!(out, s);
        assert_eq!(c.push(&[0xff, b'a']), "\u{fffd}a");
    }
}
