//! Retention: deleting evaluations that finished longer ago than a cutoff, with their events and
//! their objects in the blob store. One code path for `assay gc` (once, from the command line)
//! and for the `[retention]` task of `assay serve` (at start, then every `interval`).
//!
//! Rows go first (`Store::delete_finished`, one short transaction per batch), then their blob
//! objects: a crash in between leaves orphan objects, never a row naming a missing object
//! (ADR 0014). An evaluation's objects are everything under its prefix `outputs/<id>/` (the
//! output its result references, and what attempts that never finished left there, ADR 0013),
//! and any other object its result references. Every step is idempotent, so several processes
//! may sweep one store at once (each row is deleted by one of them; deleting an absent object is
//! no error). The audit log is never touched.

use anyhow::{Context, Result, anyhow};
use assay_api::time::rfc3339;
use assay_blob::{BlobError, Blobs};
use assay_sandbox::CancellationToken;
use assay_store::{Deleted, ListFilter, Millis, Store, now_millis};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Evaluations deleted per store transaction: short writes, so that a sweep on a live server
/// never holds submissions up for long.
pub const BATCH: u32 = 100;

/// Evaluations whose blob objects are deleted at once.
const BLOB_CONCURRENCY: usize = 16;

/// Tries at one blob store call while the store fails for a moment.
const BLOB_TRIES: u32 = 3;

/// Page size when counting (`--dry-run`).
const COUNT_PAGE: u32 = 1000;

/// The `[retention]` settings, checked: what `assay serve` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Evaluations that finished longer ago than this are deleted.
    pub older_than: Duration,
    /// Time between two sweeps (the first one runs at start).
    pub interval: Duration,
}

/// What a sweep deleted, or (from [`count`]) would delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub evaluations: u64,
    /// Blob objects (whole output streams) of those evaluations.
    pub blobs: u64,
    /// Bytes of those blob objects.
    pub bytes: u64,
}

impl Swept {
    /// `12 evaluations that finished before … (more than 30d ago), their events, and 1 blob
    /// object (300000 bytes)`.
    pub fn describe(&self, before: Millis, older_than: Duration) -> String {
        format!(
            "{} that finished before {} (more than {} ago), their events, and {} ({} bytes)",
            plural(self.evaluations, "evaluation"),
            rfc3339(before),
            human(older_than),
            plural(self.blobs, "blob object"),
            self.bytes
        )
    }
}

/// The cutoff: evaluations that finished before it are old enough to go.
pub fn cutoff(now: Millis, older_than: Duration) -> Result<Millis> {
    i64::try_from(older_than.as_millis())
        .ok()
        .and_then(|ms| now.checked_sub(ms))
        .ok_or_else(|| anyhow!("{} ago is out of range", human(older_than)))
}

/// Where the blob objects of evaluation `id` live: the worker writes each attempt's streams
/// under `outputs/<id>/<attempt>.<token>/` (ADR 0013).
fn output_prefix(id: &str) -> String {
    format!("outputs/{id}")
}

/// Deletes every evaluation that finished before `before`, batch by batch, then each batch's
/// blob objects, adding what went to `swept` (so that the caller can say what was done even
/// when a step failed). Stops early, between batches, once `stop` is cancelled. Blob objects
/// that cannot be deleted (after a few tries) end the sweep with an error naming where they
/// are: their rows are gone, so nothing will reference them again.
pub async fn sweep(
    store: &dyn Store,
    blobs: &Blobs,
    before: Millis,
    stop: &CancellationToken,
    swept: &mut Swept,
) -> Result<()> {
    while !stop.is_cancelled() {
        let batch = store
            .delete_finished(before, BATCH)
            .await
            .context("deleting finished evaluations")?;
        if batch.is_empty() {
            break;
        }
        swept.evaluations += batch.len() as u64;
        let results: Vec<_> = stream::iter(batch)
            .map(|d| async move {
                let r = delete_objects(blobs, &d).await;
                (d, r)
            })
            .buffer_unordered(BLOB_CONCURRENCY)
            .collect()
            .await;
        let mut left = Vec::new();
        let mut first_error = None;
        for (d, r) in results {
            match r {
                Ok((objects, bytes)) => {
                    swept.blobs += objects;
                    swept.bytes += bytes;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    left.push(format!("{}/", output_prefix(&d.id)));
                    left.extend(d.blobs);
                }
            }
        }
        if let Some(e) = first_error {
            left.sort();
            left.dedup();
            return Err(anyhow!(
                "the blob store failed: {e}; objects of deleted evaluations are left behind, \
                 referenced by nothing (delete them by hand): {}",
                left.join(", ")
            ));
        }
        // A sweep shares the runtime with the API: let others run between batches.
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Deletes the blob objects of a deleted evaluation: those under its prefix and those its
/// result referenced. How many there were, and their bytes (objects already gone count for
/// nothing).
async fn delete_objects(blobs: &Blobs, d: &Deleted) -> Result<(u64, u64), BlobError> {
    let prefix = output_prefix(&d.id);
    let mut objects: BTreeMap<String, Option<u64>> = retrying(|| blobs.list(&prefix))
        .await?
        .into_iter()
        .map(|(key, size)| (key, Some(size)))
        .collect();
    for key in &d.blobs {
        objects.entry(key.clone()).or_insert(None);
    }
    let (mut count, mut bytes) = (0, 0);
    for (key, size) in objects {
        let size = match size {
            Some(size) => size,
            None => match retrying(|| blobs.size(&key)).await? {
                Some(size) => size,
                None => continue,
            },
        };
        retrying(|| blobs.delete(&key)).await?;
        count += 1;
        bytes += size;
    }
    Ok((count, bytes))
}

/// `op`, tried again (up to [`BLOB_TRIES`] in all) while the blob store fails for a moment.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, BlobError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BlobError>>,
{
    let mut tries = 1;
    loop {
        match op().await {
            Err(e) if e.is_retryable() && tries < BLOB_TRIES => {
                tokio::time::sleep(Duration::from_millis(200) * tries).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// What [`sweep`] would delete now, deleting nothing: every evaluation created before `before`
/// is read (one that finished before it was created before it), and those that finished
/// before it are counted, with the blob objects their results reference (objects that
/// unfinished attempts left under their prefixes are not listed: a sweep deletes those too).
pub async fn count(store: &dyn Store, before: Millis) -> Result<Swept> {
    let mut swept = Swept::default();
    let mut filter = ListFilter {
        created_before: Some(before),
        limit: COUNT_PAGE,
        ..ListFilter::default()
    };
    loop {
        let page = store
            .list(&filter)
            .await
            .context("listing finished evaluations")?;
        for e in &page.items {
            let old = e.status.is_terminal() && e.finished_at.is_some_and(|t| t < before);
            if !old {
                continue;
            }
            swept.evaluations += 1;
            if let Some(r) = &e.result {
                for b in [&r.stdout_blob, &r.stderr_blob].into_iter().flatten() {
                    swept.blobs += 1;
                    swept.bytes += b.size;
                }
            }
        }
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => return Ok(swept),
        }
    }
}

/// Starts `assay serve`'s retention task: a sweep now, then one every `policy.interval`, until
/// `shutdown` (a sweep under way stops after its current batch; await the handle for it). It
/// never ends the server: a failed (or panicking) sweep is logged and the next one tries again.
pub fn start(
    store: Arc<dyn Store>,
    blobs: Blobs,
    policy: Policy,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    eprintln!(
        "assay: retention: deleting evaluations finished more than {} ago, every {}",
        human(policy.older_than),
        human(policy.interval)
    );
    tokio::spawn(async move {
        loop {
            // A task of its own: a panic ends this sweep, not the retention task.
            let run = tokio::spawn(run_once(
                store.clone(),
                blobs.clone(),
                policy,
                shutdown.clone(),
            ));
            if let Err(e) = run.await {
                eprintln!(
                    "assay: retention: the sweep failed ({e}); next try in {}",
                    human(policy.interval)
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(policy.interval) => {}
            }
        }
    })
}

async fn run_once(
    store: Arc<dyn Store>,
    blobs: Blobs,
    policy: Policy,
    shutdown: CancellationToken,
) {
    let before = match cutoff(now_millis(), policy.older_than) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("assay: retention: {e:#}");
            return;
        }
    };
    let mut swept = Swept::default();
    let result = sweep(store.as_ref(), &blobs, before, &shutdown, &mut swept).await;
    if swept.evaluations > 0 {
        eprintln!(
            "assay: retention: deleted {}",
            swept.describe(before, policy.older_than)
        );
    }
    if let Err(e) = result {
        eprintln!(
            "assay: retention: {e:#}; next try in {}",
            human(policy.interval)
        );
    }
}

/// A duration as the settings write it: `30d`, `1h30m`, `500ms` (`0s` for nothing).
pub fn human(d: Duration) -> String {
    const UNITS: [(&str, u128); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = d.as_millis();
    if rest == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// `1 evaluation`, `2 evaluations`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::parse_duration;

    #[test]
    fn durations_read_back_as_written() {
        for (d, text) in [
            (Duration::from_secs(30 * 86_400), "30d"),
            (Duration::from_secs(86_400 + 7_200), "1d2h"),
            (Duration::from_secs(5_400), "1h30m"),
            (Duration::from_millis(1_500), "1s500ms"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(human(d), text);
            assert_eq!(parse_duration(text).unwrap(), d, "{text}");
        }
    }

    #[test]
    fn the_cutoff_is_now_minus_the_age() {
        let day = Duration::from_secs(86_400);
        assert_eq!(cutoff(100 * 86_400_000, day).unwrap(), 99 * 86_400_000);
        assert_eq!(cutoff(5, Duration::ZERO).unwrap(), 5);
        // Before 1970 is fine (nothing is that old); past the range of times is an error.
        assert_eq!(cutoff(0, day).unwrap(), -86_400_000);
        assert!(cutoff(i64::MIN, day).is_err());
        assert!(cutoff(0, Duration::MAX).is_err());
    }

    #[test]
    fn what_was_swept_is_described() {
        let s = Swept {
            evaluations: 1,
            blobs: 2,
            bytes: 300_000,
        };
        assert_eq!(
            s.describe(86_400_000, Duration::from_secs(30 * 86_400)),
            "1 evaluation that finished before 1970-01-02T00:00:00.000Z (more than 30d ago), \
             their events, and 2 blob objects (300000 bytes)"
        );
        assert!(
            Swept::default()
                .describe(0, Duration::from_secs(1))
                .starts_with("0 evaluations that")
        );
    }

    /// A real SQLite store and a `file://` blob store, with explicit times: the count finds what
    /// the sweep deletes; rows go, then their blobs (left-overs under the prefix too); queued and
    /// recent evaluations stay.
    #[tokio::test]
    async fn a_sweep_deletes_what_the_count_counts() {
        use assay_blob::BlobUrl;
        use assay_domain::{
            Language, LimitPolicy, Program, RetryPolicy, RunResult, RunStatus, Submission,
        };
        use assay_store::{BlobRef, ClaimPolicy, NewEvaluation, RunRecord, StoreUrl};

        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&StoreUrl::default_for(dir.path()))
            .await
            .unwrap();
        let blobs = Blobs::open_env(&BlobUrl::file(&dir.path().join("blobs")).unwrap())
            .await
            .unwrap();
        let new = || NewEvaluation {
            tenant: "default".into(),
            submission: Submission {
                language: Language::Python,
                program: Program::single("print(1)\n"),
                stdin: String::new(),
                limits: LimitPolicy::default().defaults,
                priority: 0,
                labels: Default::default(),
            },
            idempotency_key: None,
            max_attempts: 1,
        };
        let result = RunResult {
            status: RunStatus::Succeeded,
            exit_code: Some(0),
            signal: None,
            wall_ms: 1,
            cpu_ms: 1,
            peak_memory_bytes: 1,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            runtime: "test".into(),
            error: None,
        };
        // Submitted at `at`, finished at `at + 100`, its stdout (`size` bytes) in a blob.
        let finished = async |at: Millis, size: usize| {
            store.submit(new(), at).await.unwrap();
            let claim = store
                .claim("w1", Duration::from_secs(30), &ClaimPolicy::default(), at)
                .await
                .unwrap()
                .unwrap();
            let id = claim.evaluation.id.clone();
            let key = format!("outputs/{id}/1.{}/stdout", claim.token);
            let mut w = blobs.writer(&key).await.unwrap();
            w.write(&vec![b'x'; size]).await.unwrap();
            let info = w.finish().await.unwrap();
            let mut record = RunRecord::of(&result);
            record.stdout_blob = Some(BlobRef {
                key: key.clone(),
                size: info.size,
                sha256: info.sha256,
            });
            store
                .finish_record(
                    &id,
                    &claim.token,
                    &record,
                    &RetryPolicy::default(),
                    at + 100,
                )
                .await
                .unwrap();
            (id, key)
        };
        let (old, old_blob) = finished(1_000, 1_500).await;
        let (recent, recent_blob) = finished(5_000, 10).await;
        let queued = store
            .submit(new(), 1_000)
            .await
            .unwrap()
            .into_evaluation()
            .id;
        // What an attempt that never finished left under the old one's prefix: nothing
        // references it, it goes with the evaluation all the same.
        let zombie = format!("outputs/{old}/1.lost/stderr");
        let mut w = blobs.writer(&zombie).await.unwrap();
        w.write(&[b'z'; 7]).await.unwrap();
        w.finish().await.unwrap();

        let referenced = Swept {
            evaluations: 1,
            blobs: 1,
            bytes: 1_500,
        };
        assert_eq!(count(store.as_ref(), 3_000).await.unwrap(), referenced);
        assert!(
            store.get(&old).await.unwrap().is_some(),
            "a count deletes nothing"
        );
        let mut swept = Swept::default();
        let stop = CancellationToken::new();
        sweep(store.as_ref(), &blobs, 3_000, &stop, &mut swept)
            .await
            .unwrap();
        let all = Swept {
            evaluations: 1,
            blobs: 2,
            bytes: 1_507,
        };
        assert_eq!(swept, all, "the referenced object and the left-over one");
        assert_eq!(store.get(&old).await.unwrap(), None);
        assert_eq!(blobs.size(&old_blob).await.unwrap(), None);
        assert_eq!(blobs.size(&zombie).await.unwrap(), None);
        assert!(store.get(&recent).await.unwrap().is_some());
        assert_eq!(blobs.size(&recent_blob).await.unwrap(), Some(10));
        assert!(store.get(&queued).await.unwrap().is_some());
        // Again: nothing is left; a stopped sweep does nothing.
        let mut again = Swept::default();
        sweep(store.as_ref(), &blobs, 3_000, &stop, &mut again)
            .await
            .unwrap();
        assert_eq!(again, Swept::default());
        stop.cancel();
        sweep(store.as_ref(), &blobs, 10_000, &stop, &mut again)
            .await
            .unwrap();
        assert!(store.get(&recent).await.unwrap().is_some());
    }
}
