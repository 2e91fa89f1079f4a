//! `assay batch`: many programs at once (every `*.py` of a directory, or each line of a JSONL
//! file), uploaded in chunks of the API's largest batch, each chunk under its own
//! `Idempotency-Key` so that a retried upload never queues anything twice; with `--wait`, a
//! progress bar and a summary.

use crate::args::{LimitArgs, label_arg};
use crate::http::{Api, ApiFailure, Reported};
use crate::program::{BatchItem, batch_from_dir, batch_from_jsonl};
use crate::render::{err_write, out_write, print_json, render_batch_summary};
use anyhow::{Context, Result, anyhow, bail};
use assay_api::evaluation::{BatchRequest, BatchResponse, EvaluationSummary, ListParams};
use assay_api::{ApiError, ErrorCode, IDEMPOTENCY_KEY_HEADER, LimitOverrides, MAX_BATCH};
use assay_domain::{EvaluationStatus, LimitPolicy};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Time limit of one batch upload (up to 1000 programs).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Invalid items named in the refusal, at most.
const SHOWN: usize = 20;

#[derive(clap::Args, Debug)]
pub struct BatchArgs {
    /// A directory (each *.py file in it is one submission, labelled file=NAME) or a JSONL
    /// file (one submission object per line, as the body of POST /v1/evaluations).
    source: PathBuf,
    /// Wait until every evaluation has ended, then print a summary.
    #[arg(long)]
    wait: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// Label every evaluation (repeatable; a batch=ID label is always added).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label_arg)]
    labels: Vec<(String, String)>,
    /// Priority of each program that does not set its own, -100..=100.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Print JSON (`{"batch": ID, "items": [...]}`) instead of text.
    #[arg(long)]
    json: bool,
    // Last: a help heading carries on to the flags declared after it.
    #[command(
        flatten,
        next_help_heading = "Limits of every program that does not set its own"
    )]
    limits: LimitArgs,
}

/// What `--json` prints: the batch's id and its evaluations.
fn print_batch(batch: &str, items: &[impl Serialize]) -> Result<()> {
    #[derive(Serialize)]
    struct BatchOutput<'a, T: Serialize> {
        batch: &'a str,
        items: &'a [T],
    }
    print_json(&BatchOutput { batch, items })
}

pub async fn run(a: BatchArgs, api: &Api) -> Result<u8> {
    let mut items = if a.source.is_dir() {
        batch_from_dir(&a.source)?
    } else {
        let text = std::fs::read_to_string(&a.source)
            .with_context(|| format!("reading {}", a.source.display()))?;
        batch_from_jsonl(&text).map_err(|e| anyhow!("{}: {e}", a.source.display()))?
    };
    let batch_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let defaults = a.limits.overrides()?;
    apply_batch_defaults(&mut items, &a.labels, &batch_id, &defaults, a.priority);
    let errors = precheck(&items);
    if !errors.is_empty() {
        let mut msg = format!(
            "{} of {} submissions are invalid; nothing was sent:",
            errors.len(),
            items.len()
        );
        for e in errors.iter().take(SHOWN) {
            msg.push_str(&format!("\n  {e}"));
        }
        if errors.len() > SHOWN {
            msg.push_str(&format!("\n  … and {} more", errors.len() - SHOWN));
        }
        bail!("{msg}");
    }
    let concurrency = usize::try_from(a.concurrency).unwrap_or(1);
    let pb = progress_bar(items.len());
    pb.set_prefix("submitting");
    pb.enable_steady_tick(Duration::from_millis(250));
    let submitted = match upload(api, &items, &batch_id, concurrency, &pb).await {
        Ok(s) => s,
        Err(e) => {
            pb.finish_and_clear();
            return Err(e);
        }
    };
    if !a.wait {
        pb.finish_and_clear();
        if a.json {
            print_batch(&batch_id, &submitted)?;
        } else {
            let mut s = String::new();
            for (e, item) in submitted.iter().zip(&items) {
                s.push_str(&format!("{}\t{}\n", e.id, item.source));
            }
            out_write(s.as_bytes())?;
            let note = format!(
                "submitted {} evaluations · label batch={batch_id} \
                 · see: assay list --label batch={batch_id}\n",
                submitted.len()
            );
            err_write(note.as_bytes())?;
        }
        return Ok(0);
    }

    pb.reset();
    pb.set_prefix("running");
    let ids: Vec<String> = submitted.into_iter().map(|e| e.id).collect();
    let finals = poll_batch(api, &ids, &batch_id, &pb).await;
    pb.finish_and_clear();
    let finals = finals?;
    if a.json {
        print_batch(&batch_id, &finals)?;
    } else {
        let with_sources: Vec<(String, EvaluationSummary)> = items
            .iter()
            .map(|item| item.source.clone())
            .zip(finals.iter().cloned())
            .collect();
        out_write(render_batch_summary(&with_sources).as_bytes())?;
    }
    let all_ok = finals
        .iter()
        .all(|e| e.status == EvaluationStatus::Succeeded);
    Ok(if all_ok { 0 } else { 1 })
}

/// Adds labels and default limits and priority to every item (an item's own values win, limit
/// by limit; the `batch` label is always the client's).
fn apply_batch_defaults(
    items: &mut [BatchItem],
    labels: &[(String, String)],
    batch_id: &str,
    limits: &LimitOverrides,
    priority: Option<i32>,
) {
    for item in items {
        let req = &mut item.request;
        let l = req.labels.get_or_insert_default();
        for (k, v) in labels {
            l.entry(k.clone()).or_insert_with(|| v.clone());
        }
        l.insert("batch".into(), batch_id.to_string());
        if *limits != LimitOverrides::default() {
            let own = req.limits.unwrap_or_default();
            req.limits = Some(LimitOverrides {
                wall_time_ms: own.wall_time_ms.or(limits.wall_time_ms),
                cpu_time_ms: own.cpu_time_ms.or(limits.cpu_time_ms),
                memory_bytes: own.memory_bytes.or(limits.memory_bytes),
                pids: own.pids.or(limits.pids),
                output_bytes: own.output_bytes.or(limits.output_bytes),
                tmpfs_bytes: own.tmpfs_bytes.or(limits.tmpfs_bytes),
                open_files: own.open_files.or(limits.open_files),
                file_size_bytes: own.file_size_bytes.or(limits.file_size_bytes),
                cpu_millicores: own.cpu_millicores.or(limits.cpu_millicores),
            });
        }
        req.priority = req.priority.or(priority);
    }
}

/// Checks what does not depend on the server's policy (shape, syntax, labels, priority, stdin),
/// so that a large batch is not half-submitted before one bad item is found. Limits are left to
/// the server, whose maxima this client does not know.
fn precheck(items: &[BatchItem]) -> Vec<String> {
    let policy = LimitPolicy::default();
    items
        .iter()
        .filter_map(|item| {
            let e = ApiError::from(item.request.validate(&policy).err()?);
            let server_decides =
                matches!(e.code, ErrorCode::LimitExceeded | ErrorCode::InvalidLimit);
            (!server_decides).then(|| format!("{}: {} ({})", item.source, e.message, e.code))
        })
        .collect()
}

fn progress_bar(total: usize) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(u64::try_from(total).ok(), target);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}

/// Uploads the items in chunks of [`MAX_BATCH`], `concurrency` at once; the evaluations in the
/// items' order. A refused chunk is reported (its items named) and the whole upload fails with
/// [`Reported`], saying how many were queued all the same.
async fn upload(
    api: &Api,
    items: &[BatchItem],
    batch_id: &str,
    concurrency: usize,
    pb: &ProgressBar,
) -> Result<Vec<assay_api::evaluation::EvaluationView>> {
    let results: Vec<(usize, usize, Result<BatchResponse, ApiFailure>)> =
        futures::stream::iter(items.chunks(MAX_BATCH).enumerate())
            .map(|(n, chunk)| async move {
                let body = BatchRequest {
                    items: chunk.iter().map(|it| it.request.clone()).collect(),
                };
                let r = api
                    .call::<BatchResponse>(
                        api.req(Method::POST, &["v1", "evaluations", "batch"])
                            .header(IDEMPOTENCY_KEY_HEADER, format!("batch-{batch_id}-{n}"))
                            .json(&body)
                            .timeout(UPLOAD_TIMEOUT),
                    )
                    .await
                    .and_then(|r| {
                        if r.items.len() == chunk.len() {
                            Ok(r)
                        } else {
                            Err(ApiFailure::BadResponse(format!(
                                "sent {} items, got {} back",
                                chunk.len(),
                                r.items.len()
                            )))
                        }
                    });
                if r.is_ok() {
                    pb.inc(u64::try_from(chunk.len()).unwrap_or(0));
                }
                (n * MAX_BATCH, chunk.len(), r)
            })
            .buffered(concurrency)
            .collect()
            .await;
    let mut submitted = Vec::new();
    let mut failures = Vec::new();
    for (start, len, r) in results {
        match r {
            Ok(resp) => submitted.extend(resp.items),
            Err(f) => failures.push((start, len, f)),
        }
    }
    if failures.is_empty() {
        return Ok(submitted);
    }
    pb.finish_and_clear();
    let mut code = 0;
    for (start, len, mut f) in failures {
        // Item indices are relative to the chunk: name the items instead.
        if let ApiFailure::Status {
            details: Some(d), ..
        } = &mut f
            && let Some(errors) = d.get_mut("errors").and_then(Value::as_array_mut)
        {
            for e in errors {
                let index = e.get("index").and_then(Value::as_u64);
                if let Some(item) = index
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| items.get(start + i))
                {
                    e["source"] = Value::from(item.source.clone());
                }
            }
        }
        if items.len() > MAX_BATCH {
            eprintln!(
                "items {} to {} ({} … {}) were refused:",
                start + 1,
                start + len,
                items[start].source,
                items[start + len - 1].source
            );
        }
        eprintln!("{}", f.report());
        code = code.max(f.exit_code());
    }
    eprintln!(
        "{} of {} evaluations were submitted (label batch={batch_id})",
        submitted.len(),
        items.len()
    );
    Err(Reported(code).into())
}

/// Waits until every evaluation of the batch is terminal and returns them in `ids` order, as
/// lists show them (exit codes and times, no output). Counts the batch's queued and running
/// evaluations (by its label) until there are none, then lists them all.
async fn poll_batch(
    api: &Api,
    ids: &[String],
    batch_id: &str,
    pb: &ProgressBar,
) -> Result<Vec<EvaluationSummary>> {
    let filter = |status: Option<EvaluationStatus>| ListParams {
        label: Some(format!("batch={batch_id}")),
        status: status.map(|s| s.as_str().to_string()),
        ..ListParams::default()
    };
    let total = ids.len();
    let mut pause = Duration::from_millis(250);
    loop {
        let queued = api
            .list_all(&filter(Some(EvaluationStatus::Queued)))
            .await?
            .len();
        let running = api
            .list_all(&filter(Some(EvaluationStatus::Running)))
            .await?
            .len();
        let pending = queued + running;
        pb.set_position(u64::try_from(total.saturating_sub(pending)).unwrap_or(0));
        pb.set_message(format!("queued {queued} · running {running}"));
        if pending == 0 {
            let mut by_id: HashMap<String, EvaluationSummary> = api
                .list_all(&filter(None))
                .await?
                .into_iter()
                .map(|e| (e.id.clone(), e))
                .collect();
            if let Some(missing) = ids.iter().find(|id| !by_id.contains_key(*id)) {
                bail!(
                    "evaluation {missing} of batch {batch_id} is not listed under its label \
                     batch={batch_id} any more (see: assay get {missing})"
                );
            }
            // A status counted in neither list between its two requests: look again.
            if by_id.values().all(|e| e.status.is_terminal()) {
                pb.set_position(u64::try_from(total).unwrap_or(0));
                return Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect());
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn directory_batches_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.py"), "print(2)\n").unwrap();
        std::fs::write(dir.path().join("a.py"), "print(1)\n").unwrap();
        std::fs::write(dir.path().join("notes.md"), "# no").unwrap();
        std::fs::create_dir(dir.path().join("sub.py")).unwrap();
        let mut items = batch_from_dir(dir.path()).unwrap();
        assert_eq!(
            items.iter().map(|i| i.source.as_str()).collect::<Vec<_>>(),
            ["a.py", "b.py"]
        );
        items[1].request.limits = Some(LimitOverrides {
            wall_time_ms: Some(10),
            ..LimitOverrides::default()
        });
        let limits = LimitOverrides {
            wall_time_ms: Some(2000),
            memory_bytes: Some(64 << 20),
            ..LimitOverrides::default()
        };
        apply_batch_defaults(
            &mut items,
            &[("team".into(), "x".into())],
            "abc123",
            &limits,
            Some(5),
        );
        let a = &items[0].request;
        assert_eq!(a.code.as_deref(), Some("print(1)\n"));
        assert_eq!(
            a.labels,
            Some(BTreeMap::from(
                [("file", "a.py"), ("team", "x"), ("batch", "abc123")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            ))
        );
        assert_eq!(a.limits, Some(limits));
        assert_eq!(a.priority, Some(5));
        // An item's own limit wins over the default.
        let b = items[1].request.limits.unwrap();
        assert_eq!(b.wall_time_ms, Some(10));
        assert_eq!(b.memory_bytes, Some(67108864));
        assert!(precheck(&items).is_empty());

        let empty = tempfile::tempdir().unwrap();
        assert!(
            batch_from_dir(empty.path())
                .unwrap_err()
                .to_string()
                .contains("no *.py")
        );
    }

    #[test]
    fn precheck_names_bad_items_but_leaves_limits_to_the_server() {
        let mut items = batch_from_jsonl(
            "{\"code\": \"print(1)\"}\n{\"code\": \"def f(:\\n\"}\n{\"code\": \"print(1)\", \"limits\": {\"memory_bytes\": 1099511627776}}\n{\"code\": \"x\", \"priority\": 1000}\n",
        )
        .unwrap();
        apply_batch_defaults(&mut items, &[], "b", &LimitOverrides::default(), None);
        assert_eq!(items[0].request.limits, None, "no defaults, no limits");
        let errors = precheck(&items);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("line 2:") && errors[0].ends_with("(syntax_error)"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("line 4:") && errors[1].ends_with("(invalid_priority)"),
            "{errors:?}"
        );
    }
}
