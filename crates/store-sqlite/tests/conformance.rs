//! The `assay-store` conformance suite against SQLite on a temporary database file, plus checks
//! specific to SQLite (atomic batches, several processes on one file, reopening).

use assay_domain::{EvaluationStatus, OutputStream, RunStatus};
use assay_store::conformance::{self, T0, new_eval, run_result};
use assay_store::{Store, StoreError, SubmitOutcome};
use assay_store_sqlite::SqliteStore;
use std::collections::BTreeSet;
use std::ops::Deref;
use std::time::Duration;

/// A store on a fresh database file; the directory lives as long as the fixture.
struct Fixture {
    store: SqliteStore,
    dir: tempfile::TempDir,
}

impl Deref for Fixture {
    type Target = SqliteStore;
    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("assay.db"))
        .await
        .expect("open");
    Fixture { store, dir }
}

assay_store::conformance_tests!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_suite_in_memory() {
    conformance::run_all(|| async { SqliteStore::open_in_memory().await.expect("open") }).await;
}

async fn count(store: &SqliteStore) -> usize {
    store
        .list(&assay_store::ListFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .items
        .len()
}

#[tokio::test]
async fn batch_is_all_or_nothing() {
    let fx = fresh().await;
    // Make the database refuse one item of the batch.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", fx.dir.path().join("assay.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON evaluations \
             WHEN NEW.tenant = 'boom' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&mut conn)
        .await
        .expect("trigger");
        conn.close().await.expect("close");
    }
    fx.submit(new_eval("ok", 0), T0).await.expect("submit");
    let items = vec![
        new_eval("ok", 0),
        new_eval("ok", 0),
        new_eval("boom", 0),
        new_eval("ok", 0),
    ];
    let err = fx.submit_batch(items, T0 + 1).await;
    assert!(
        matches!(&err, Err(e @ StoreError::Backend(_)) if !e.is_retryable()),
        "the batch must fail, and a retry would not help: {err:?}"
    );
    assert_eq!(count(&fx).await, 1, "nothing of the failed batch remains");
    // The store is still usable and its queue intact.
    let ok = fx
        .submit_batch(vec![new_eval("ok", 0), new_eval("ok", 0)], T0 + 2)
        .await
        .expect("batch");
    assert_eq!(ok.len(), 2);
    assert_eq!(count(&fx).await, 3);
    for _ in 0..3 {
        assert!(
            fx.claim("w", Duration::from_secs(30), &Default::default(), T0 + 3)
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(
        fx.claim("w", Duration::from_secs(30), &Default::default(), T0 + 3)
            .await
            .unwrap()
            .is_none()
    );
}

/// Several processes (here: several stores, each with its own writer connection) on one file
/// never hand out the same job.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn several_stores_on_one_file_never_share_a_job() {
    let fx = fresh().await;
    let path = fx.dir.path().join("assay.db");
    const JOBS: usize = 200;
    fx.submit_batch(
        (0..JOBS)
            .map(|i| new_eval("t", i32::try_from(i % 7).unwrap()))
            .collect(),
        T0,
    )
    .await
    .expect("batch");
    let mut tasks = Vec::new();
    for s in 0..4 {
        let store = SqliteStore::open(&path).await.expect("open again");
        for w in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let worker = format!("s{s}w{w}");
                while let Some(c) = store
                    .claim(
                        &worker,
                        Duration::from_secs(30),
                        &Default::default(),
                        T0 + 1,
                    )
                    .await
                    .expect("claim")
                {
                    store
                        .append_output(
                            &c.evaluation.id,
                            &c.token,
                            OutputStream::Stdout,
                            "x",
                            T0 + 2,
                        )
                        .await
                        .expect("append");
                    store
                        .finish(
                            &c.evaluation.id,
                            &c.token,
                            &run_result(RunStatus::Succeeded),
                            &Default::default(),
                            T0 + 3,
                        )
                        .await
                        .expect("finish");
                    got.push(c.evaluation.id);
                }
                got
            }));
        }
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        for id in t.await.expect("task") {
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!(seen.len(), JOBS);
    let stats = fx.queue_stats(None, T0 + 4).await.expect("stats");
    assert_eq!(
        stats.counts[&EvaluationStatus::Succeeded],
        u64::try_from(JOBS).unwrap()
    );
    for id in seen.iter().take(20) {
        let evs = fx.events(id, 0, 100).await.expect("events");
        let seqs: Vec<i64> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }
}

/// Processes that open a new file at the same moment (here: stores with their own
/// connections) all migrate it without error: one applies the migrations, the others wait for
/// its write lock and find nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_stores_open_a_new_file_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.db");
    let opening: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opening {
        stores.push(o.await.expect("task").expect("open at once"));
    }
    let out = stores[0]
        .submit(new_eval("t", 0), T0)
        .await
        .expect("submit");
    for s in &stores {
        assert_eq!(
            s.get(&out.evaluation().id).await.expect("get").as_ref(),
            Some(out.evaluation())
        );
    }
}

/// Calls on a closed store fail as `Unavailable`: a caller may retry (e.g. on a new store).
#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let fx = fresh().await;
    fx.close().await;
    for err in [
        fx.get("x").await.map(|_| ()),
        fx.submit(new_eval("t", 0), T0).await.map(|_| ()),
    ] {
        assert!(
            matches!(&err, Err(e @ StoreError::Unavailable(_)) if e.is_retryable()),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data/sub/nested.db");
    let id = {
        let store = SqliteStore::open(&path).await.expect("open");
        let out = store.submit(new_eval("t", 0), T0).await.expect("submit");
        let SubmitOutcome::Created(e) = out else {
            panic!("{out:?}")
        };
        store.close().await;
        e.id
    };
    let store = SqliteStore::open(&path)
        .await
        .expect("reopen (migrations are idempotent)");
    let e = store.get(&id).await.expect("get").expect("still there");
    assert_eq!(e.status, EvaluationStatus::Queued);
}

/// Batches are written with multi-row statements of a few fixed sizes: every size, including
/// the boundaries, stores every item intact.
#[tokio::test]
async fn batches_of_every_size() {
    let fx = fresh().await;
    let mut expected = Vec::new();
    for (b, size) in [0usize, 1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 85, 130]
        .into_iter()
        .enumerate()
    {
        let items: Vec<_> = (0..size)
            .map(|i| {
                let mut n = new_eval(&format!("tenant{b}"), i32::try_from(i % 3).unwrap());
                n.submission.stdin = format!("{b}/{i}");
                n.submission
                    .labels
                    .insert("item".into(), format!("{b}/{i}"));
                if i % 2 == 0 {
                    n.submission.labels.insert("batch".into(), b.to_string());
                    n.submission.labels.insert("parity".into(), "even".into());
                }
                n
            })
            .collect();
        let out = fx
            .submit_batch(items, T0 + i64::try_from(b).unwrap())
            .await
            .expect("batch");
        assert_eq!(out.len(), size);
        for (i, o) in out.iter().enumerate() {
            let SubmitOutcome::Created(e) = o else {
                panic!("{o:?}")
            };
            assert_eq!(e.labels["item"], format!("{b}/{i}"));
            assert_eq!(fx.get(&e.id).await.unwrap().as_ref(), Some(e));
            assert_eq!(fx.events(&e.id, 0, 10).await.unwrap().len(), 1);
            expected.push(e.id.clone());
        }
        let labelled = fx
            .list(&assay_store::ListFilter {
                label: Some(("batch".into(), b.to_string())),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(labelled.items.len(), size.div_ceil(2), "batch {b}");
    }
    assert_eq!(count(&fx).await, expected.len());
    // Every item's input went in whole, at its place.
    let mut claimed = 0;
    while let Some(c) = fx
        .claim("w", Duration::from_secs(30), &Default::default(), T0 + 100)
        .await
        .unwrap()
    {
        assert_eq!(c.input.stdin, c.evaluation.labels["item"]);
        claimed += 1;
    }
    assert_eq!(claimed, expected.len());
}
