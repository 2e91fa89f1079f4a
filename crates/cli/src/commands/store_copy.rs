//! `assay store copy --from URL --to URL [--from-blob URL --to-blob URL]`: moves an
//! installation (typically a single machine's `sqlite://…/assay.db`) into another, empty store
//! (typically PostgreSQL), then checks that the target holds the same installation.
//!
//! What is copied, through the store contract only: every evaluation whole (program, queue
//! state, result, events; `export_evaluations` → `import_evaluations`, page by page), every API
//! key with its hash (so every key keeps working), and the audit log entry for entry with its
//! hashes (`list_audit` oldest first → `import_audit`). With two different blob stores, every
//! output object the evaluations reference is copied too, each checked against its reference
//! (size and SHA-256), before the evaluations that name it are written.
//!
//! Nothing is written to a target that already holds evaluations, keys or audit entries, nor
//! when the source's audit chain is broken. After the copy, both stores are read again and
//! compared ([`compare`]): evaluation by evaluation, key by key, and the audit chain is verified
//! on the target (as `assay audit verify` does); any difference is an error.

mod compare;

use crate::args::{blob_url_arg, store_url_arg};
use crate::audit_chain;
use crate::render::out_write;
use anyhow::{Context, Result, bail};
use assay_blob::{BlobUrl, Blobs};
use assay_store::{AuditFilter, BlobRef, Store, StoreUrl, now_millis};
use compare::{BLOB_CONCURRENCY, BlobStores, PAGE, blob_refs, check_blob, count, verify};
use futures::stream::{self, StreamExt, TryStreamExt};

/// Audit entries per page (one import transaction each).
const AUDIT_PAGE: u32 = 1000;
/// A large copy says how far it got every this many evaluations (on standard error).
const PROGRESS_EVERY: u64 = 10_000;

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy a whole installation into another, empty store, then verify the copy.
    ///
    /// Copies every evaluation (with its program, queue state, result and events), every API
    /// key (keys keep working) and the audit log (its hash chain intact), and, with
    /// --from-blob and --to-blob naming two blob stores, the output objects the evaluations
    /// reference. Stop the servers and workers of the source first. Refuses (writing nothing)
    /// a target that holds evaluations, keys or audit entries. Then compares both stores and
    /// verifies the target's audit chain: exit status 0 only when everything matches.
    ///
    /// Example: assay store copy --from sqlite:///var/lib/assay/assay.db --to
    /// postgres://assay@db.internal/assay
    Copy(CopyArgs),
}

#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// The store to copy (it must exist): sqlite://PATH or postgres://USER@HOST[:PORT]/DB.
    #[arg(long, value_name = "URL", value_parser = store_url_arg)]
    from: StoreUrl,
    /// The store to copy into (a SQLite database is created; a PostgreSQL database must exist,
    /// its schema is created). Must be empty. The password of a PostgreSQL store is in its URL
    /// or in the file ASSAY_STORE_PASSWORD_FILE names.
    #[arg(long, value_name = "URL", value_parser = store_url_arg)]
    to: StoreUrl,
    /// The source's blob store (file:///DIR or s3://BUCKET[/PREFIX]), to copy the output
    /// objects from. Without --from-blob and --to-blob nothing is copied there: the target
    /// must then use the source's blob store.
    #[arg(long, value_name = "URL", value_parser = blob_url_arg, requires = "to_blob")]
    from_blob: Option<BlobUrl>,
    /// The target's blob store, to copy the output objects into.
    #[arg(long, value_name = "URL", value_parser = blob_url_arg, requires = "from_blob")]
    to_blob: Option<BlobUrl>,
}

pub async fn run(cmd: StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Copy(a) => copy(a).await,
    }
}

async fn copy(a: CopyArgs) -> Result<()> {
    if a.from == a.to {
        bail!("--from and --to name the same store ({})", a.from);
    }
    let source = crate::store::open_existing(&a.from).await?;
    let target = match crate::store::open(&a.to).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    let result = copy_and_verify(source.as_ref(), target.as_ref(), &a).await;
    source.close().await;
    target.close().await;
    result
}

/// The blob stores `--from-blob` and `--to-blob` name (opened once the stores are checked:
/// a `file://` store's directory is created on opening).
async fn open_blob_stores(a: &CopyArgs) -> Result<Option<BlobStores>> {
    let (Some(from), Some(to)) = (&a.from_blob, &a.to_blob) else {
        return Ok(None);
    };
    Ok(Some(BlobStores {
        target: crate::store::open_blobs(to).await?,
        source: match from == to {
            true => None,
            false => Some(crate::store::open_blobs(from).await?),
        },
    }))
}

async fn copy_and_verify(source: &dyn Store, target: &dyn Store, a: &CopyArgs) -> Result<()> {
    let chain = audit_chain::verify(source)
        .await
        .context("checking the source")?;
    if chain.broken.is_some() {
        bail!(
            "the source's {}; nothing was copied (a copy would carry the break along)",
            audit_chain::describe(&chain).replace('\n', " ")
        );
    }
    ensure_empty(target, &a.to).await?;
    let blobs = open_blob_stores(a).await?;
    let copied = copy_all(source, target, blobs.as_ref()).await.context(
        "the copy stopped part-way: the target may hold part of the installation; empty it \
             (e.g. drop and create the database again) before copying again",
    )?;
    let mut text = format!("copied {} to {}: {copied}\n", a.from, a.to);
    let report = verify(source, target, blobs.as_ref()).await?;
    text.push_str(&report.text);
    out_write(text.as_bytes())?;
    if !report.problems.is_empty() {
        bail!(
            "the copy does not match the source: {}",
            report.problems.join("; ")
        );
    }
    Ok(())
}

/// Refuses a target that holds anything an installation is made of.
async fn ensure_empty(target: &dyn Store, url: &StoreUrl) -> Result<()> {
    let evaluations: u64 = target
        .queue_stats(None, now_millis())
        .await
        .context("reading the target")?
        .counts
        .values()
        .sum();
    let keys = target.count_keys().await.context("reading the target")?;
    let audit = target
        .verify_audit()
        .await
        .context("reading the target")?
        .entries;
    let mut held = Vec::new();
    for (n, what) in [
        (evaluations, "evaluation"),
        (keys, "API key"),
        (audit, "audit entry"),
    ] {
        if n > 0 {
            held.push(count(n, what));
        }
    }
    if !held.is_empty() {
        bail!(
            "the target {url} already holds {}: a copy goes only into an empty store; nothing \
             was written",
            held.join(", ")
        );
    }
    Ok(())
}

/// What [`copy_all`] wrote.
#[derive(Default)]
struct Copied {
    evaluations: u64,
    keys: u64,
    audit: u64,
    blobs: u64,
    bytes: u64,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {}, {}, {} ({} bytes)",
            count(self.evaluations, "evaluation"),
            count(self.keys, "API key"),
            count(self.audit, "audit entry"),
            count(self.blobs, "blob object"),
            self.bytes
        )
    }
}

async fn copy_all(
    source: &dyn Store,
    target: &dyn Store,
    blobs: Option<&BlobStores>,
) -> Result<Copied> {
    let mut copied = Copied::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = source
            .export_evaluations(cursor.as_deref(), PAGE)
            .await
            .context("reading evaluations from the source")?;
        // The objects first: no evaluation of the target ever names a missing object.
        if let Some(BlobStores {
            target: to,
            source: Some(from),
        }) = blobs
        {
            let refs: Vec<(String, BlobRef)> = page.items.iter().flat_map(blob_refs).collect();
            copied.blobs += refs.len() as u64;
            copied.bytes += refs.iter().map(|(_, b)| b.size).sum::<u64>();
            stream::iter(refs)
                .map(|(id, b)| async move {
                    copy_blob(from, to, &b)
                        .await
                        .with_context(|| format!("blob object {} of evaluation {id}", b.key))
                })
                .buffer_unordered(BLOB_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
        }
        let before = copied.evaluations;
        copied.evaluations += page.items.len() as u64;
        target
            .import_evaluations(page.items)
            .await
            .context("writing evaluations to the target")?;
        if copied.evaluations / PROGRESS_EVERY > before / PROGRESS_EVERY {
            eprintln!("assay: {} evaluations copied so far", copied.evaluations);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for key in source.list_keys(None).await.context("reading API keys")? {
        target
            .create_key(&key)
            .await
            .with_context(|| format!("writing API key {}", key.id))?;
        copied.keys += 1;
    }
    let mut filter = AuditFilter {
        oldest_first: true,
        limit: AUDIT_PAGE,
        ..AuditFilter::default()
    };
    loop {
        let page = source
            .list_audit(&filter)
            .await
            .context("reading the audit log")?;
        if !page.items.is_empty() {
            copied.audit += page.items.len() as u64;
            target
                .import_audit(page.items)
                .await
                .context("writing the audit log")?;
        }
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => break,
        }
    }
    Ok(copied)
}

/// Copies one object, streaming, and checks it: what was read must be what the reference
/// says (size, and SHA-256 when recorded), and the target must then hold that many bytes.
async fn copy_blob(from: &Blobs, to: &Blobs, b: &BlobRef) -> Result<()> {
    let read = from
        .read(&b.key, None)
        .await
        .context("reading it from the source's blob store")?;
    let mut writer = to.writer(&b.key).await?;
    let mut chunks = read.stream;
    // On an error the writer is dropped, which aborts it: nothing is left under the key.
    while let Some(chunk) = chunks.try_next().await.context("reading it")? {
        writer.write(&chunk).await.context("writing it")?;
    }
    let info = writer.finish().await.context("writing it")?;
    if info.size != b.size || (!b.sha256.is_empty() && info.sha256 != b.sha256) {
        to.delete(&b.key).await.ok();
        bail!(
            "the source's object ({} bytes, SHA-256 {}) is not the one the evaluation references \
             ({} bytes, SHA-256 {})",
            info.size,
            info.sha256,
            b.size,
            b.sha256
        );
    }
    check_blob(to, b).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::{Language, LimitPolicy, Program, Role, Submission};
    use assay_store::{ApiKey, AuditOutcome, NewAuditEntry, NewEvaluation};
    use sqlx::Connection;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    fn sqlite_url(dir: &Path, name: &str) -> StoreUrl {
        StoreUrl::parse(&format!("sqlite://{}", dir.join(name).display())).unwrap()
    }

    async fn sqlite(dir: &Path, name: &str) -> Arc<dyn Store> {
        crate::store::open(&sqlite_url(dir, name)).await.unwrap()
    }

    fn submission() -> NewEvaluation {
        NewEvaluation {
            tenant: "default".into(),
            submission: Submission {
                language: Language::Python,
                program: Program::single("print(1)\n"),
                stdin: String::new(),
                limits: LimitPolicy::default().defaults,
                priority: 0,
                labels: BTreeMap::new(),
            },
            idempotency_key: None,
            max_attempts: 3,
        }
    }

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            name: "ci".into(),
            tenant: "default".into(),
            role: Role::Member,
            hash: format!("hash-of-{id}"),
            created_at: 1_000,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn entry(action: &str) -> NewAuditEntry {
        NewAuditEntry {
            at: 1_000,
            actor: Some("key_1".into()),
            tenant: Some("default".into()),
            action: action.into(),
            target: None,
            outcome: AuditOutcome::Ok,
            status: 200,
            source: None,
            request_id: "req_1".into(),
            detail: None,
        }
    }

    /// Two real SQLite stores: the copy verifies, and every kind of later difference is found.
    #[tokio::test]
    async fn a_copy_verifies_and_differences_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (
            sqlite(dir.path(), "source.db").await,
            sqlite(dir.path(), "target.db").await,
        );
        let first = source.submit(submission(), 1_000).await.unwrap();
        source.submit(submission(), 1_001).await.unwrap();
        source.create_key(&key("key_1")).await.unwrap();
        source.append_audit(entry("key.create")).await.unwrap();
        source
            .append_audit(entry("evaluation.submit"))
            .await
            .unwrap();

        let url = sqlite_url(dir.path(), "target.db");
        ensure_empty(target.as_ref(), &url).await.unwrap();
        let copied = copy_all(source.as_ref(), target.as_ref(), None)
            .await
            .unwrap();
        assert_eq!(
            copied.to_string(),
            "2 evaluations, 1 API key, 2 audit entries, 0 blob objects (0 bytes)"
        );
        let report = verify(source.as_ref(), target.as_ref(), None)
            .await
            .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(
            report.text.starts_with("verified")
                && report.text.contains("evaluations   2 (queued 2)")
                && report.text.contains("audit log OK: 2 entries"),
            "{}",
            report.text
        );
        let refused = ensure_empty(target.as_ref(), &url).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("already holds 2 evaluations, 1 API key, 2 audit entries"),
            "{refused}"
        );

        // The target drifts: each difference is named.
        let id = &first.evaluation().id;
        target.cancel(id, 2_000).await.unwrap();
        target.revoke_key("key_1", 2_000).await.unwrap();
        target.append_audit(entry("key.revoke")).await.unwrap();
        let report = verify(source.as_ref(), target.as_ref(), None)
            .await
            .unwrap();
        assert!(
            report.text.starts_with("verification FAILED"),
            "{}",
            report.text
        );
        let problems = report.problems.join("\n");
        for expected in [
            "events: 2 in the source, ",
            "evaluations by status: 2 (queued 2) in the source, 2 (queued 1, cancelled 1)",
            &format!("evaluation {id} differs in the target: its state or result, its events"),
            "(key key_1 differs or is missing)",
            "audit log: 2 entries",
        ] {
            assert!(problems.contains(expected), "{expected:?} in:\n{problems}");
        }
    }

    #[tokio::test]
    async fn a_source_with_a_broken_audit_chain_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let source = sqlite(dir.path(), "source.db").await;
        source.append_audit(entry("key.create")).await.unwrap();
        source.append_audit(entry("key.revoke")).await.unwrap();
        source.close().await;
        let from = sqlite_url(dir.path(), "source.db");
        let mut conn = sqlx::SqliteConnection::connect(&from.to_string())
            .await
            .unwrap();
        for sql in [
            "DROP TRIGGER audit_log_no_update",
            "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
        let a = CopyArgs {
            from: from.clone(),
            to: sqlite_url(dir.path(), "target.db"),
            from_blob: None,
            to_blob: None,
        };
        let err = format!("{:#}", copy(a).await.unwrap_err());
        assert!(
            err.contains("the source's audit log BROKEN at entry 1")
                && err.contains("nothing was copied"),
            "{err}"
        );
        let target = sqlite(dir.path(), "target.db").await;
        assert_eq!(target.verify_audit().await.unwrap().entries, 0);
        assert_eq!(target.count_keys().await.unwrap(), 0);
    }

    /// With two blob stores: objects are copied and checked; one missing from the target
    /// afterwards is named by the verification; a source object that is not what its
    /// evaluation references stops the copy before the evaluation is written.
    #[tokio::test]
    async fn output_objects_are_copied_checked_and_verified() {
        use assay_domain::{RetryPolicy, RunResult, RunStatus};
        use assay_store::{ClaimPolicy, RunRecord};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let source = sqlite(dir.path(), "source.db").await;
        let open = async |name: &str| {
            let url = BlobUrl::file(&dir.path().join(name)).unwrap();
            crate::store::open_blobs(&url).await.unwrap()
        };
        let (from, to) = (open("blobs-a").await, open("blobs-b").await);
        source.submit(submission(), 1_000).await.unwrap();
        let claim = source
            .claim(
                "w1",
                Duration::from_secs(30),
                &ClaimPolicy::default(),
                1_000,
            )
            .await
            .unwrap()
            .unwrap();
        let key = format!("outputs/{}/1.{}/stdout", claim.evaluation.id, claim.token);
        let mut w = from.writer(&key).await.unwrap();
        w.write(&[b'x'; 70_000]).await.unwrap();
        let info = w.finish().await.unwrap();
        let mut record = RunRecord::of(&RunResult {
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
        });
        record.stdout_blob = Some(BlobRef {
            key: key.clone(),
            size: info.size,
            sha256: info.sha256,
        });
        let id = claim.evaluation.id.clone();
        source
            .finish_record(&id, &claim.token, &record, &RetryPolicy::default(), 1_100)
            .await
            .unwrap();
        let blobs = BlobStores {
            target: to.clone(),
            source: Some(from.clone()),
        };

        // A source object that is not the one referenced: nothing of it is written.
        let first = sqlite(dir.path(), "first.db").await;
        from.put(&key, vec![b'y'; 70_000].into()).await.unwrap();
        let err = format!(
            "{:#}",
            copy_all(source.as_ref(), first.as_ref(), Some(&blobs))
                .await
                .err()
                .unwrap()
        );
        assert!(
            err.contains(&format!("blob object {key} of evaluation {id}"))
                && err.contains("is not the one the evaluation references"),
            "{err}"
        );
        assert_eq!(to.size(&key).await.unwrap(), None);
        assert_eq!(first.get(&id).await.unwrap(), None, "its row waits for it");

        // The right object: copied, checked, verified.
        from.put(&key, vec![b'x'; 70_000].into()).await.unwrap();
        let target = sqlite(dir.path(), "target.db").await;
        let copied = copy_all(source.as_ref(), target.as_ref(), Some(&blobs))
            .await
            .unwrap();
        assert_eq!((copied.blobs, copied.bytes), (1, 70_000));
        assert_eq!(
            to.read_all(&key).await.unwrap(),
            from.read_all(&key).await.unwrap()
        );
        let report = verify(source.as_ref(), target.as_ref(), Some(&blobs))
            .await
            .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(
            report
                .text
                .contains("blob objects  1 (70000 bytes), each in the target's"),
            "{}",
            report.text
        );
        to.delete(&key).await.unwrap();
        let report = verify(source.as_ref(), target.as_ref(), Some(&blobs))
            .await
            .unwrap();
        assert_eq!(
            report.problems,
            [format!(
                "blob object {key} of evaluation {id}: the target's blob store does not hold it"
            )]
        );
    }
}
