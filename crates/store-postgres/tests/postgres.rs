//! What the conformance suite cannot show about PostgreSQL: the database's clock, migrations
//! shared with SQLite and applied by several servers at once, the audit log's protection in the
//! database itself, wake-ups between servers, several servers claiming under caps, and errors.

mod common;

use assay_domain::{EvaluationStatus, RetryPolicy, RunStatus};
use assay_store::audit::AuditOutcome;
use assay_store::bus::LocalBus;
use assay_store::conformance::{T0, audit_entry, new_eval, run_result};
use assay_store::{ClaimPolicy, Store, StoreError, SubmitOutcome, now_millis};
use assay_store_postgres::{Clock, PgOptions, PgStore, migration_versions};
use common::{Database, Fixture, fresh, fresh_with};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;

/// A plain connection to the fixture's database, as an intruder (or an operator) would have.
async fn raw(fx: &Fixture) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(&fx.db.url)
        .await
        .expect("connect to the test database")
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff_ms: 1_000,
        max_backoff_ms: 60_000,
    }
}

/// With the database's clock, a node whose clock runs an hour ahead cannot reap a live lease,
/// and a short lease does expire by the database's time (whatever the reaping node says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_clock_decides_when_a_lease_expires() {
    let fx = fresh_with(Clock::Database).await;
    let ahead = now_millis() + HOUR_MS;
    // The callers' times are nonsense on purpose: the store ignores them.
    let long = fx.submit(new_eval("t", 0), 0).await.expect("submit");
    let created = long.evaluation().created_at;
    assert!(
        (created - now_millis()).abs() < 60_000,
        "created_at is the database's time, not the caller's 0: {created}"
    );
    let c = fx
        .claim("w-1", Duration::from_secs(30), &ClaimPolicy::default(), 0)
        .await
        .expect("claim")
        .expect("a job");
    assert!((c.lease_expires_at - (now_millis() + 30_000)).abs() < 60_000);
    assert_eq!(
        fx.reap_expired(&policy(), ahead).await.expect("reap"),
        0,
        "a node an hour ahead must not reap a lease that is live by the database's clock"
    );
    assert_eq!(
        fx.get(&c.evaluation.id).await.unwrap().unwrap().status,
        EvaluationStatus::Running
    );
    fx.heartbeat(&c.evaluation.id, &c.token, Duration::from_secs(30), ahead)
        .await
        .expect("the lease is still held");

    // A 200 ms lease expires by the database's time, even for a node whose clock is behind.
    let short = fx.submit(new_eval("t", 0), 0).await.expect("submit");
    let claimed_at = Instant::now();
    let s = fx
        .claim(
            "w-2",
            Duration::from_millis(200),
            &ClaimPolicy::default(),
            ahead,
        )
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(s.evaluation.id, short.evaluation().id);
    let deadline = claimed_at + Duration::from_secs(10);
    let mut reaped = 0;
    while reaped == 0 {
        assert!(Instant::now() < deadline, "the short lease never expired");
        reaped = fx.reap_expired(&policy(), 0).await.expect("reap");
        if reaped == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        claimed_at.elapsed() >= Duration::from_millis(150),
        "reaped after {:?}, before the lease ran out",
        claimed_at.elapsed()
    );
    assert_eq!(reaped, 1, "only the short lease");
    let e = fx.get(&s.evaluation.id).await.unwrap().unwrap();
    assert_eq!(
        e.status,
        EvaluationStatus::Queued,
        "retried after a lost lease"
    );
    assert_eq!(
        fx.get(&c.evaluation.id).await.unwrap().unwrap().status,
        EvaluationStatus::Running
    );
    // The zombie of the reaped attempt is fenced.
    assert!(matches!(
        fx.heartbeat(&s.evaluation.id, &s.token, Duration::from_secs(1), 0)
            .await,
        Err(StoreError::LeaseLost(_))
    ));
}

/// The migrations carry the SQLite backend's versions and names, one for one.
#[test]
fn migrations_have_the_versions_and_names_of_sqlite() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store-sqlite/migrations");
    let mut sqlite: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .expect("the SQLite backend's migrations")
        .map(|entry| {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let (version, rest) = name.split_once('_').expect("NNNN_name.sql");
            let name = rest.strip_suffix(".sql").expect(".sql").replace('_', " ");
            (version.parse().expect("a version"), name)
        })
        .collect();
    sqlite.sort();
    let ours: Vec<(i64, String)> = migration_versions()
        .into_iter()
        .map(|(v, d)| (v, d.to_string()))
        .collect();
    assert_eq!(ours, sqlite);
}

/// Servers that start at once on a new database all open it: one migrates under the advisory
/// lock, the others wait and find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_starting_at_once_migrate_once() {
    let db = Database::create().await;
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move {
                PgStore::open(
                    &url,
                    PgOptions {
                        max_connections: 2,
                        ..Default::default()
                    },
                )
                .await
            })
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
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("applied migrations");
    let expected: Vec<i64> = migration_versions().into_iter().map(|(v, _)| v).collect();
    assert_eq!(applied, expected, "each migration applied once");
    // Reopening finds nothing to do either.
    let again = db.open(Clock::Caller).await;
    assert!(again.get(&out.evaluation().id).await.unwrap().is_some());
    for s in stores {
        s.close().await;
    }
}

/// The database itself refuses to edit the audit log, whoever connects.
#[tokio::test]
async fn the_audit_log_refuses_update_delete_and_truncate() {
    let fx = fresh().await;
    for i in 0..3 {
        fx.append_audit(audit_entry(
            T0 + i,
            Some("key-a"),
            Some("acme"),
            "evaluation.submit",
            AuditOutcome::Ok,
        ))
        .await
        .expect("append");
    }
    let mut conn = raw(&fx).await;
    for sql in [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 3",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let v = fx.verify_audit().await.expect("verify");
    assert_eq!((v.entries, v.head_seq, v.broken), (3, 3, None));
    // What the triggers do not stop (someone dropping them) the chain reports.
    sqlx::raw_sql(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update; \
         UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
    )
    .execute(&mut conn)
    .await
    .expect("an owner can disable the trigger");
    let v = fx.verify_audit().await.expect("verify");
    assert_eq!(v.broken.map(|b| b.seq()), Some(2));
}

/// A write through one server wakes the listeners of another (two pools: two nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_wakes_listeners_on_another() {
    let fx = fresh().await;
    let other = fx.db.open(Clock::Caller).await;
    let bus = LocalBus::new();
    let mut events = bus.subscribe_events();
    let listener = fx.listen(bus.clone());
    // The listener signals the queue once it listens (whatever was queued before is
    // claimable): that is when it is ready.
    tokio::time::timeout(Duration::from_secs(10), bus.queue_notified())
        .await
        .expect("the listener connects");
    let id = other
        .submit(new_eval("t", 0), T0)
        .await
        .expect("submit")
        .into_evaluation()
        .id;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if events.recv().await.expect("bus open") == id {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no notification for {id} within 10 s");
    tokio::time::timeout(Duration::from_secs(10), bus.queue_notified())
        .await
        .expect("the queue was signalled");
    // A claim on the other node is heard too.
    let c = other
        .claim(
            "w",
            Duration::from_secs(30),
            &ClaimPolicy::default(),
            T0 + 1,
        )
        .await
        .expect("claim")
        .expect("a job");
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if events.recv().await.expect("bus open") == c.evaluation.id {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no notification of the claim");
    listener.abort();
    other.close().await;
}

/// Two servers claiming at once, each with its own pool, never exceed a tenant's cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claiming_keep_the_caps() {
    let fx = fresh().await;
    let other = fx.db.open(Clock::Caller).await;
    let caps = BTreeMap::from([("a", 2u32), ("b", 3), ("c", 1)]);
    let mut items = Vec::new();
    for i in 0..90 {
        items.push(new_eval(["a", "b", "c"][i % 3], 0));
    }
    fx.submit_batch(items, T0).await.expect("batch");
    let policy = ClaimPolicy {
        max_running: None,
        tenants: caps
            .iter()
            .map(|(t, c)| (t.to_string(), Some(*c)))
            .collect(),
    };
    let running: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, store) in [fx.store.clone(), other.clone()].into_iter().enumerate() {
        for w in 0..4 {
            let (store, policy, running, seen) =
                (store.clone(), policy.clone(), running.clone(), seen.clone());
            let caps = caps.clone();
            tasks.push(tokio::spawn(async move {
                let worker = format!("n{n}w{w}");
                let mut idle = 0;
                while idle < 20 {
                    let Some(c) = store
                        .claim(&worker, Duration::from_secs(30), &policy, T0 + 1)
                        .await
                        .expect("claim")
                    else {
                        idle += 1;
                        tokio::task::yield_now().await;
                        continue;
                    };
                    idle = 0;
                    let tenant = c.evaluation.tenant.clone();
                    {
                        let mut r = running.lock().unwrap();
                        let now = r.entry(tenant.clone()).or_default();
                        *now += 1;
                        assert!(
                            *now <= caps[tenant.as_str()],
                            "{tenant} over its cap: {r:?}"
                        );
                        assert!(seen.lock().unwrap().insert(c.evaluation.id.clone()));
                    }
                    tokio::task::yield_now().await;
                    // Released from the count before the finish: the store may hand the slot
                    // out as soon as the finish commits.
                    *running.lock().unwrap().get_mut(&tenant).unwrap() -= 1;
                    store
                        .finish(
                            &c.evaluation.id,
                            &c.token,
                            &run_result(RunStatus::Succeeded),
                            &policy_retry(),
                            T0 + 2,
                        )
                        .await
                        .expect("finish");
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("claimer");
    }
    assert_eq!(seen.lock().unwrap().len(), 90, "every job claimed once");
    let st = fx.queue_stats(None, T0 + 3).await.expect("stats");
    assert_eq!(st.counts[&EvaluationStatus::Succeeded], 90);
    other.close().await;
}

fn policy_retry() -> RetryPolicy {
    policy()
}

/// Concurrent submissions with one idempotency key, through two servers: one evaluation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_raced_by_two_nodes_makes_one_evaluation() {
    let fx = fresh().await;
    let other = fx.db.open(Clock::Caller).await;
    for round in 0..5 {
        let key = format!("k{round}");
        let mut n = new_eval("t", 0);
        n.idempotency_key = Some(key.clone());
        let (a, b) = tokio::join!(fx.submit(n.clone(), T0), other.submit(n, T0));
        let (a, b) = (a.expect("first"), b.expect("second"));
        assert_eq!(a.evaluation().id, b.evaluation().id, "round {round}");
        assert_eq!(
            u8::from(a.is_created()) + u8::from(b.is_created()),
            1,
            "exactly one created: {a:?} {b:?}"
        );
        assert!(matches!(
            a,
            SubmitOutcome::Created(_) | SubmitOutcome::Existing(_)
        ));
    }
    assert_eq!(fx.count_queued(None).await.unwrap(), 5);
    other.close().await;
}

/// A server that cannot be reached is `Unavailable` (retry later); a database that does not
/// exist is `Backend` (a person must act); a closed store is `Unavailable`.
#[tokio::test]
async fn errors_say_whether_a_retry_may_help() {
    let err = PgStore::open(
        "postgres://postgres@127.0.0.1:1/nothing",
        PgOptions::default(),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert!(
        matches!(&err, StoreError::Unavailable(_)) && err.is_retryable(),
        "{err:?}"
    );
    use assay_store_postgres::testing::{server_url, with_database};
    let missing = with_database(&server_url(), "assay_no_such_database");
    let err = PgStore::open(&missing, PgOptions::default())
        .await
        .expect_err("no such database");
    assert!(matches!(&err, StoreError::Backend(_)), "{err:?}");
    let err = PgStore::open("mysql://x/y", PgOptions::default())
        .await
        .expect_err("not a PostgreSQL URL");
    assert!(matches!(&err, StoreError::Backend(_)), "{err:?}");
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

/// The password option is used when the URL has none (the server here trusts every local
/// connection, so this only shows that it is accepted and not shown).
#[tokio::test]
async fn a_password_option_is_accepted_and_never_printed() {
    let db = Database::create().await;
    let options = PgOptions {
        max_connections: 1,
        clock: Clock::Caller,
        password: Some("s3cret".into()),
    };
    assert!(!format!("{options:?}").contains("s3cret"));
    let store = PgStore::open(&db.url, options).await.expect("open");
    assert!(!format!("{store:?}").contains("s3cret"));
    store.close().await;
}
