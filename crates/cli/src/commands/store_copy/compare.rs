//! The verification that ends `assay store copy`: both stores read again and compared,
//! evaluation by evaluation (whole), key by key, the target's audit chain verified (as `assay
//! audit verify` does) and every referenced blob object looked for in the target's blob store.

use crate::audit_chain;
use anyhow::{Context, Result, bail};
use assay_blob::Blobs;
use assay_domain::EvaluationStatus;
use assay_store::{AuditVerification, BlobRef, EvaluationDump, Store};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

/// Evaluations per page (one import transaction each when copying); their events come with
/// them.
pub const PAGE: u32 = 100;
/// Blob objects copied (or checked) at once.
pub const BLOB_CONCURRENCY: usize = 8;
/// References gathered before they are checked (bounded memory however many there are).
const CHECK_BATCH: usize = 1000;

/// The blob stores of a copy: the target's (where references are checked), and the source's
/// when objects are to be copied (the two differ).
pub struct BlobStores {
    pub target: Blobs,
    pub source: Option<Blobs>,
}

/// The blob objects an evaluation's result references, with its id.
pub fn blob_refs(d: &EvaluationDump) -> Vec<(String, BlobRef)> {
    let Some(r) = &d.evaluation.result else {
        return Vec::new();
    };
    [&r.stdout_blob, &r.stderr_blob]
        .into_iter()
        .flatten()
        .map(|b| (d.evaluation.id.clone(), b.clone()))
        .collect()
}

/// The target's blob store holds the object, at its size.
pub async fn check_blob(to: &Blobs, b: &BlobRef) -> Result<()> {
    match to.size(&b.key).await.context("reading its size")? {
        Some(size) if size == b.size => Ok(()),
        Some(size) => bail!(
            "the target's blob store holds {size} bytes, the reference says {}",
            b.size
        ),
        None => bail!("the target's blob store does not hold it"),
    }
}

/// What one store holds, as far as the comparison counts it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Census {
    evaluations: u64,
    by_status: BTreeMap<EvaluationStatus, u64>,
    events: u64,
    blobs: u64,
    bytes: u64,
}

impl Census {
    fn add(&mut self, d: &EvaluationDump) {
        self.evaluations += 1;
        *self.by_status.entry(d.evaluation.status).or_default() += 1;
        self.events += d.events.len() as u64;
        for (_, b) in blob_refs(d) {
            self.blobs += 1;
            self.bytes += b.size;
        }
    }

    /// `3 (failed 1, succeeded 2)`.
    fn evaluations_text(&self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        match statuses.is_empty() {
            true => self.evaluations.to_string(),
            false => format!("{} ({})", self.evaluations, statuses.join(", ")),
        }
    }
}

/// The evaluations of a store, one at a time, in insertion order.
struct Dumps<'a> {
    store: &'a dyn Store,
    cursor: Option<String>,
    buffer: VecDeque<EvaluationDump>,
    done: bool,
}

impl<'a> Dumps<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Dumps {
            store,
            cursor: None,
            buffer: VecDeque::new(),
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<EvaluationDump>> {
        while self.buffer.is_empty() && !self.done {
            let page = self
                .store
                .export_evaluations(self.cursor.as_deref(), PAGE)
                .await?;
            self.buffer.extend(page.items);
            match page.next_cursor {
                Some(c) => self.cursor = Some(c),
                None => self.done = true,
            }
        }
        Ok(self.buffer.pop_front())
    }
}

/// What the verification found: the lines to print, and every difference.
pub struct Report {
    pub text: String,
    pub problems: Vec<String>,
}

/// Reads both stores again and compares them.
pub async fn verify(
    source: &dyn Store,
    target: &dyn Store,
    blobs: Option<&BlobStores>,
) -> Result<Report> {
    let mut problems = Vec::new();
    let census = compare_evaluations(source, target, blobs, &mut problems).await?;
    let keys = compare_keys(source, target, &mut problems).await?;
    let chain = compare_audit(source, target, &mut problems).await?;
    let mut text = String::new();
    let verdict = match problems.is_empty() {
        true => "verified: the source and the target hold the same installation",
        false => "verification FAILED: the source and the target differ",
    };
    let _ = writeln!(text, "{verdict}");
    let _ = writeln!(
        text,
        "  evaluations   {}, each compared whole (program, queue state, result, events)",
        census.evaluations_text()
    );
    let _ = writeln!(text, "  events        {}", census.events);
    let _ = writeln!(
        text,
        "  API keys      {keys}, each compared whole (hash, tenant, role, expiry, revocation)"
    );
    let _ = writeln!(
        text,
        "  audit log     on the target: {}",
        audit_chain::describe(&chain).replace('\n', " ")
    );
    let _ = write!(
        text,
        "  blob objects  {} ({} bytes), ",
        census.blobs, census.bytes
    );
    let _ = match blobs {
        Some(b) => writeln!(
            text,
            "each in the target's blob store {} at its size{}",
            b.target.url(),
            match b.source {
                Some(_) => ", its SHA-256 checked as it was copied",
                None => " (the source's: nothing copied)",
            }
        ),
        None => writeln!(
            text,
            "referenced, not copied (no --from-blob and --to-blob): the target must use the \
             source's blob store"
        ),
    };
    Ok(Report { text, problems })
}

/// Walks both stores' evaluations side by side: the counts, the first evaluation that differs,
/// and (with a target blob store) every referenced object the target's blob store lacks.
/// Returns the target's census.
async fn compare_evaluations(
    source: &dyn Store,
    target: &dyn Store,
    blobs: Option<&BlobStores>,
    problems: &mut Vec<String>,
) -> Result<Census> {
    const SHOWN: usize = 10;
    let (mut src, mut dst) = (Dumps::new(source), Dumps::new(target));
    let (mut s_census, mut t_census) = (Census::default(), Census::default());
    let mut first_difference = None;
    let (mut refs, mut missing, mut missing_count) = (Vec::new(), Vec::new(), 0);
    loop {
        let s = src.next().await.context("reading the source again")?;
        let t = dst.next().await.context("reading the target")?;
        if s.is_none() && t.is_none() {
            break;
        }
        if let Some(s) = &s {
            s_census.add(s);
        }
        if let Some(t) = &t {
            t_census.add(t);
            if blobs.is_some() {
                refs.extend(blob_refs(t));
            }
        }
        if first_difference.is_none() && s != t {
            first_difference = Some(difference(s.as_ref(), t.as_ref()));
        }
        if let Some(b) = blobs
            && refs.len() >= CHECK_BATCH
        {
            let found = check_blobs(&b.target, std::mem::take(&mut refs)).await;
            missing_count += found.len();
            missing.extend(found);
            missing.truncate(SHOWN);
        }
    }
    if let Some(b) = blobs {
        let found = check_blobs(&b.target, refs).await;
        missing_count += found.len();
        missing.extend(found);
        missing.truncate(SHOWN);
    }
    for (what, s, t) in [
        ("evaluations", s_census.evaluations, t_census.evaluations),
        ("events", s_census.events, t_census.events),
        ("blob references", s_census.blobs, t_census.blobs),
    ] {
        if s != t {
            problems.push(format!("{what}: {s} in the source, {t} in the target"));
        }
    }
    if s_census.by_status != t_census.by_status {
        problems.push(format!(
            "evaluations by status: {} in the source, {} in the target",
            s_census.evaluations_text(),
            t_census.evaluations_text()
        ));
    }
    problems.extend(first_difference);
    problems.extend(missing);
    if missing_count > SHOWN {
        problems.push(format!(
            "and {} more missing blob objects",
            missing_count - SHOWN
        ));
    }
    Ok(t_census)
}

/// Both stores' keys, compared whole. Returns how many the target has.
async fn compare_keys(
    source: &dyn Store,
    target: &dyn Store,
    problems: &mut Vec<String>,
) -> Result<usize> {
    let s_keys = source.list_keys(None).await.context("reading API keys")?;
    let t_keys = target.list_keys(None).await.context("reading API keys")?;
    if s_keys != t_keys {
        let differing = s_keys
            .iter()
            .find(|k| !t_keys.contains(k))
            .map(|k| format!(" (key {} differs or is missing)", k.id))
            .unwrap_or_default();
        problems.push(format!(
            "API keys: {} in the source, {} in the target{differing}",
            s_keys.len(),
            t_keys.len()
        ));
    }
    Ok(t_keys.len())
}

/// The target's audit chain must verify and end where the source's does. Returns the
/// target's verification.
async fn compare_audit(
    source: &dyn Store,
    target: &dyn Store,
    problems: &mut Vec<String>,
) -> Result<AuditVerification> {
    let s_chain = audit_chain::verify(source).await?;
    let t_chain = audit_chain::verify(target).await?;
    if t_chain.broken.is_some() {
        problems.push(format!(
            "the target's {}",
            audit_chain::describe(&t_chain).replace('\n', " ")
        ));
    } else if (s_chain.entries, s_chain.head_seq, &s_chain.head_hash)
        != (t_chain.entries, t_chain.head_seq, &t_chain.head_hash)
    {
        problems.push(format!(
            "audit log: {} entries up to {} in the source, {} up to {} in the target",
            s_chain.entries, s_chain.head_hash, t_chain.entries, t_chain.head_hash
        ));
    }
    Ok(t_chain)
}

/// Checks that the target's blob store holds each referenced object at its size: what is
/// wrong, one line per object.
async fn check_blobs(target: &Blobs, refs: Vec<(String, BlobRef)>) -> Vec<String> {
    stream::iter(refs)
        .map(|(id, r)| async move {
            check_blob(target, &r)
                .await
                .with_context(|| format!("blob object {} of evaluation {id}", r.key))
                .err()
                .map(|e| format!("{e:#}"))
        })
        .buffer_unordered(BLOB_CONCURRENCY)
        .filter_map(|failed| async move { failed })
        .collect()
        .await
}

/// Says how the first differing pair of evaluations (in insertion order) differs.
fn difference(s: Option<&EvaluationDump>, t: Option<&EvaluationDump>) -> String {
    match (s, t) {
        (Some(s), None) => format!("evaluation {} is missing in the target", s.evaluation.id),
        (None, Some(t)) => format!(
            "the target holds evaluation {}, which the source does not",
            t.evaluation.id
        ),
        (Some(s), Some(t)) if s.evaluation.id != t.evaluation.id => format!(
            "the target holds evaluation {} where the source holds {}",
            t.evaluation.id, s.evaluation.id
        ),
        (Some(s), Some(t)) => {
            let parts: Vec<&str> = [
                (s.evaluation != t.evaluation, "its state or result"),
                (s.input != t.input, "its program"),
                (s.events != t.events, "its events"),
                (
                    (s.not_before, &s.lease_token, s.lease_expires_at)
                        != (t.not_before, &t.lease_token, t.lease_expires_at),
                    "its queue state",
                ),
            ]
            .into_iter()
            .filter_map(|(differs, what)| differs.then_some(what))
            .collect();
            format!(
                "evaluation {} differs in the target: {}",
                s.evaluation.id,
                parts.join(", ")
            )
        }
        (None, None) => "no difference".into(),
    }
}

/// `1 evaluation`, `2 evaluations`, `2 audit entries`, `2 API keys`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        return format!("1 {what}");
    }
    let consonant_y = what
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u']));
    match consonant_y {
        Some(stem) => format!("{n} {stem}ies"),
        None => format!("{n} {what}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::{Language, LimitPolicy};
    use assay_store::{Evaluation, JobInput};

    fn dump(id: &str, status: EvaluationStatus) -> EvaluationDump {
        EvaluationDump {
            evaluation: Evaluation {
                id: id.into(),
                tenant: "default".into(),
                status,
                language: Language::Python,
                entrypoint: "main.py".into(),
                limits: LimitPolicy::default().defaults,
                priority: 0,
                labels: BTreeMap::new(),
                attempts: 1,
                max_attempts: 3,
                created_at: 1,
                started_at: None,
                finished_at: None,
                result: None,
                error: None,
                worker_id: None,
                cancel_requested: false,
                idempotency_key: None,
            },
            input: JobInput {
                entrypoint: "main.py".into(),
                files: Vec::new(),
                stdin: String::new(),
            },
            events: Vec::new(),
            not_before: 0,
            lease_token: None,
            lease_expires_at: None,
        }
    }

    #[test]
    fn counts_read_naturally() {
        assert_eq!(count(1, "audit entry"), "1 audit entry");
        assert_eq!(count(2, "audit entry"), "2 audit entries");
        assert_eq!(count(0, "API key"), "0 API keys");
    }

    #[test]
    fn the_census_counts_by_status() {
        let mut c = Census::default();
        assert_eq!(c.evaluations_text(), "0");
        c.add(&dump("a", EvaluationStatus::Succeeded));
        c.add(&dump("b", EvaluationStatus::Queued));
        c.add(&dump("c", EvaluationStatus::Succeeded));
        assert_eq!(c.evaluations_text(), "3 (queued 1, succeeded 2)");
    }

    #[test]
    fn a_difference_names_the_evaluation_and_what_differs() {
        let a = dump("ev_a", EvaluationStatus::Queued);
        let mut b = a.clone();
        b.lease_token = Some("t".into());
        b.input.stdin = "x".into();
        assert_eq!(
            difference(Some(&a), Some(&b)),
            "evaluation ev_a differs in the target: its program, its queue state"
        );
        assert_eq!(
            difference(Some(&a), None),
            "evaluation ev_a is missing in the target"
        );
        let c = dump("ev_c", EvaluationStatus::Queued);
        assert!(difference(Some(&a), Some(&c)).contains("ev_c where the source holds ev_a"));
        assert!(difference(None, Some(&c)).contains("ev_c, which the source does not"));
    }
}
