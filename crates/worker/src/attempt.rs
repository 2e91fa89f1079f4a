//! One attempt of one evaluation: run it in a sandbox while its output streams to the event
//! log and heartbeats keep the lease, then finish it (or hand it back, or drop it when the
//! lease was lost). Every write presents the attempt's lease token.

use crate::output::{Forwarded, OUTPUT_BUDGET_BYTES, Outputs, PREVIEW_BYTES, Spill, forward};
use crate::parts::Parts;
use crate::retry::{lease_lost, retrying};
use assay_domain::{RunResult, RunStatus};
use assay_sandbox::{CancellationToken, OutputBudget, RunRequest};
use assay_store::{Claim, RunRecord, now_millis};
use tokio::sync::mpsc;

/// The signals between the attempt's tasks.
#[derive(Clone, Default)]
struct Signals {
    /// Kill the sandbox (cancellation asked for, lease lost, grace over).
    cancel: CancellationToken,
    /// Another worker owns the evaluation: write nothing more.
    lease_lost: CancellationToken,
    /// Shutdown's grace period ran out: give the evaluation back to the queue.
    handed_back: CancellationToken,
}

pub(crate) async fn run(parts: &Parts, claim: Claim, shutdown: &CancellationToken) {
    let id = claim.evaluation.id.clone();
    let token = claim.token.clone();
    tracing::debug!("attempt started");
    let budget = OutputBudget::new(OUTPUT_BUDGET_BYTES);
    let request = match claim.input.program() {
        Ok(program) => RunRequest {
            program,
            environment: claim.evaluation.language.as_str().into(),
            args: vec![],
            stdin: claim.input.stdin.into_bytes(),
            limits: claim.evaluation.limits,
            // With a blob store the output is kept there; the result keeps the preview.
            retain_output: parts.blobs.is_some().then_some(PREVIEW_BYTES as u64),
            output_budget: Some(budget.clone()),
        },
        Err(e) => {
            // Stored programs were validated on submission; this is a platform fault.
            let result = RunResult::platform_error(
                parts.sandbox.runtime_name(),
                format!("stored program is invalid: {e}"),
            );
            finish(parts, &id, &token, &result, &Outputs::default()).await;
            return;
        }
    };
    let spill = parts.blobs.clone().map(|blobs| Spill {
        blobs,
        prefix: format!("outputs/{id}/{}.{token}", claim.attempt),
    });
    let signals = Signals::default();

    let (tx, rx) = mpsc::unbounded_channel();
    let forwarder = {
        let f = forward(
            parts.store.clone(),
            parts.bus.clone(),
            id.clone(),
            token.clone(),
            spill,
            rx,
            budget,
        );
        let signals = signals.clone();
        tokio::spawn(async move {
            let forwarded = f.await;
            if !matches!(forwarded, Forwarded::All(_)) {
                if matches!(forwarded, Forwarded::LeaseLost) {
                    signals.lease_lost.cancel();
                }
                signals.cancel.cancel();
            }
            forwarded
        })
    };
    let heartbeat = tokio::spawn(heartbeats(
        parts.clone(),
        id.clone(),
        token.clone(),
        signals.clone(),
        shutdown.clone(),
    ));

    // A cancel that arrived between the claim and now.
    if let Ok(state) = parts
        .store
        .heartbeat(&id, &token, parts.cfg.lease, now_millis())
        .await
        && state.cancel_requested
    {
        signals.cancel.cancel();
    }
    let result = parts
        .sandbox
        .run(request, Some(tx), signals.cancel.clone())
        .await;
    let forwarded = forwarder
        .await
        .unwrap_or_else(|e| Forwarded::BlobFailed(format!("output task failed: {e}")));
    signals.cancel.cancel(); // stops the heartbeats
    let _ = heartbeat.await;
    tracing::debug!(status = %result.status, wall_ms = result.wall_ms, "sandbox run ended");

    if signals.lease_lost.is_cancelled() {
        tracing::warn!(evaluation = %id, "lease lost: another worker owns this evaluation now; result dropped");
        return;
    }
    if signals.handed_back.is_cancelled() && result.status == RunStatus::Cancelled {
        let released = retrying("handing back", || {
            parts.store.release(&id, &token, now_millis())
        })
        .await;
        match released {
            Ok(()) => {
                parts.bus.publish_events(&id);
                parts.bus.notify_queue();
            }
            Err(e) => {
                tracing::warn!(evaluation = %id, error = %e, "could not hand the evaluation back")
            }
        }
        return;
    }
    match forwarded {
        Forwarded::All(outputs) => finish(parts, &id, &token, &result, &outputs).await,
        Forwarded::BlobFailed(e) => {
            tracing::error!(evaluation = %id, error = %e, "could not store the output");
            let failed = RunResult::platform_error(
                parts.sandbox.runtime_name(),
                format!("could not store the output: {e}"),
            );
            finish(parts, &id, &token, &failed, &Outputs::default()).await;
        }
        Forwarded::LeaseLost => {}
    }
}

/// Extends the lease every third of it, carries cancellation to the sandbox, notices a lost
/// lease, and on shutdown gives running work its grace period before handing it back.
async fn heartbeats(
    parts: Parts,
    id: String,
    token: String,
    signals: Signals,
    shutdown: CancellationToken,
) {
    let lease = parts.cfg.lease;
    let mut grace_deadline: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = shutdown.cancelled(), if grace_deadline.is_none() => {
                grace_deadline = Some(tokio::time::Instant::now() + parts.cfg.grace);
                continue;
            }
            _ = grace => {
                signals.handed_back.cancel();
                signals.cancel.cancel();
                return;
            }
            _ = signals.cancel.cancelled() => return,
        }
        match parts
            .store
            .heartbeat(&id, &token, lease, now_millis())
            .await
        {
            Ok(state) if state.cancel_requested => signals.cancel.cancel(),
            Ok(_) => {}
            Err(e) if lease_lost(&e) => {
                signals.lease_lost.cancel();
                signals.cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(evaluation = %id, error = %e, "heartbeat failed"),
        }
    }
}

/// Finishes the attempt (fenced). The record names the blobs of `outputs`: only this write
/// publishes them.
async fn finish(parts: &Parts, id: &str, token: &str, result: &RunResult, outputs: &Outputs) {
    let mut record = RunRecord::of(result);
    if parts.blobs.is_some() {
        record.stdout_bytes = Some(outputs.stdout.bytes);
        record.stderr_bytes = Some(outputs.stderr.bytes);
        record.stdout_blob.clone_from(&outputs.stdout.blob);
        record.stderr_blob.clone_from(&outputs.stderr.blob);
    }
    let finished = retrying("finishing", || {
        parts
            .store
            .finish_record(id, token, &record, &parts.cfg.retry, now_millis())
    })
    .await;
    match finished {
        Ok(status) => {
            parts.bus.publish_events(id);
            if !status.is_terminal() {
                parts.bus.notify_queue();
            }
        }
        Err(e) if lease_lost(&e) => {
            tracing::warn!(evaluation = %id, "lease lost before finishing; result dropped")
        }
        // The lease will expire and the reaper will give the evaluation another attempt.
        Err(e) => tracing::error!(evaluation = %id, error = %e, "could not store the result"),
    }
}
