//! Throughput smoke test (ignored by default; run with
//! `cargo test --release -p assay-store-sqlite --test perf -- --ignored --nocapture`).

use assay_store::conformance::{T0, new_eval};
use assay_store::{ListFilter, Store};
use assay_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
#[ignore]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("perf.db")).await.unwrap());

    let n = 20_000;
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..(n / 1_000) {
        let items = (0..1_000)
            .map(|i| {
                let mut e = new_eval("t", i % 10);
                e.submission
                    .labels
                    .insert("run".into(), format!("r{}", chunk % 4));
                e
            })
            .collect();
        let out = store.submit_batch(items, T0 + chunk as i64).await.unwrap();
        ids.extend(out.into_iter().map(|o| o.evaluation().id.clone()));
    }
    let s = start.elapsed().as_secs_f64();
    println!("submit_batch: {:.0} evaluations/s", n as f64 / s);

    let start = Instant::now();
    for i in 0..2_000 {
        store.submit(new_eval("t", 0), T0 + 100 + i).await.unwrap();
    }
    println!("submit: {:.0}/s", 2_000.0 / start.elapsed().as_secs_f64());

    let ids = Arc::new(ids);
    let start = Instant::now();
    let gets = 40_000;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..gets / 16 {
                let id = &ids[(i * 16 + t) % ids.len()];
                assert!(store.get(id).await.unwrap().is_some());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "get: {:.0}/s (16 tasks)",
        gets as f64 / start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    for _ in 0..200 {
        let p = store
            .list(&ListFilter {
                label: Some(("run".into(), "r1".into())),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(p.items.len(), 50);
    }
    println!(
        "list by label (50): {:.0}/s",
        200.0 / start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let mut claimed = 0;
    let p = Default::default();
    while claimed < 5_000 {
        let c = store
            .claim(
                "w",
                Duration::from_secs(30),
                &Default::default(),
                T0 + 10_000,
            )
            .await
            .unwrap()
            .unwrap();
        store
            .finish(
                &c.evaluation.id,
                &c.token,
                &assay_store::conformance::run_result(assay_domain::RunStatus::Succeeded),
                &p,
                T0 + 10_001,
            )
            .await
            .unwrap();
        claimed += 1;
    }
    println!(
        "claim+finish: {:.0}/s",
        claimed as f64 / start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    for _ in 0..100 {
        store.queue_stats(None, T0 + 20_000).await.unwrap();
    }
    println!(
        "queue_stats: {:.0}/s",
        100.0 / start.elapsed().as_secs_f64()
    );
}
