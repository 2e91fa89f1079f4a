//! The service layer over a real (in-memory SQLite) store: commands check tenants and roles and
//! write their own audit entries whatever the outcome; refused reads are recorded, successful
//! ones are not; authentication failures are recorded without the credential; batch retries
//! with an idempotency key create nothing new; the live stream ends with the full result.

use assay_api::evaluation::{ListParams, PageParams, SubmitRequest};
use assay_api::events::StreamEvent;
use assay_api::keys::CreateKeyRequest;
use assay_api::{ApiError, ErrorCode};
use assay_domain::{EvaluationStatus, OutputStream, RetryPolicy, Role, RunResult, RunStatus};
use assay_service::commands::{Cancel, CreateKey, Requeue, Submit, SubmitBatch};
use assay_service::{Caller, Context, RequestMeta, Service, ServiceConfig};
use assay_store::bus::LocalBus;
use assay_store::{AuditEntry, AuditFilter, ClaimPolicy, Store, now_millis};
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    svc: Service,
    store: Arc<dyn Store>,
}

async fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(
        assay_store_sqlite::SqliteStore::open_in_memory()
            .await
            .expect("store"),
    );
    let svc = Service::new(store.clone(), LocalBus::new(), ServiceConfig::default());
    Fixture { svc, store }
}

fn ctx(tenant: &str, role: Role, request: &str) -> Context {
    Context {
        meta: RequestMeta {
            request_id: request.into(),
            source: Some("127.0.0.1".into()),
        },
        caller: Caller {
            key_id: format!("key_{tenant}_{}", role.as_str()),
            name: "test".into(),
            tenant: tenant.into(),
            role,
            expires_at: None,
        },
    }
}

fn py(code: &str) -> SubmitRequest {
    SubmitRequest {
        language: "python".into(),
        code: Some(code.into()),
        ..SubmitRequest::default()
    }
}

fn submit(code: &str) -> Submit {
    Submit {
        request: py(code),
        idempotency_key: None,
    }
}

impl Fixture {
    async fn audit(&self) -> Vec<AuditEntry> {
        self.store
            .list_audit(&AuditFilter {
                oldest_first: true,
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .unwrap()
            .items
    }

    async fn entry(&self, request: &str) -> AuditEntry {
        let all = self.audit().await;
        let found: Vec<_> = all
            .into_iter()
            .filter(|e| e.entry.request_id == request)
            .collect();
        assert_eq!(found.len(), 1, "one entry for {request}: {found:#?}");
        found.into_iter().next().unwrap()
    }
}

#[tokio::test]
async fn commands_write_their_own_audit_entries_whatever_the_outcome() {
    let f = fixture().await;
    let member = ctx("acme", Role::Member, "r1");
    let out = f.svc.execute(&member, submit("print(1)")).await.unwrap();
    assert!(out.created);
    assert_eq!(out.evaluation.status, EvaluationStatus::Queued);
    let e = f.entry("r1").await.entry;
    assert_eq!(
        (
            e.action.as_str(),
            e.actor.as_deref(),
            e.tenant.as_deref(),
            e.target.as_deref(),
            e.status,
            e.outcome.as_str(),
            e.source.as_deref()
        ),
        (
            "evaluation.submit",
            Some("key_acme_member"),
            Some("acme"),
            Some(out.evaluation.id.as_str()),
            202,
            "ok",
            Some("127.0.0.1")
        )
    );

    // A viewer may not submit: refused and recorded with the code.
    let viewer = ctx("acme", Role::Viewer, "r2");
    let err = f
        .svc
        .execute(&viewer, submit("print(1)"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let e = f.entry("r2").await.entry;
    assert_eq!(
        (e.outcome.as_str(), e.status, e.detail.as_deref()),
        ("denied", 403, Some("forbidden"))
    );

    // Invalid programs are refused by the command, recorded as errors.
    let err = f
        .svc
        .execute(&ctx("acme", Role::Member, "r3"), submit("def f(:"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::SyntaxError);
    let e = f.entry("r3").await.entry;
    assert_eq!(
        (e.outcome.as_str(), e.status, e.detail.as_deref()),
        ("error", 422, Some("syntax_error"))
    );
}

#[tokio::test]
async fn another_tenants_evaluation_is_not_found_before_the_role_is_checked() {
    let f = fixture().await;
    let id = f
        .svc
        .execute(&ctx("acme", Role::Member, "r1"), submit("print(1)"))
        .await
        .unwrap()
        .evaluation
        .id;
    // Another tenant's viewer: 404 (not 403), like an id that does not exist.
    for (tenant, role, code) in [
        ("other", Role::Viewer, ErrorCode::NotFound),
        ("other", Role::Member, ErrorCode::NotFound),
        ("acme", Role::Viewer, ErrorCode::Forbidden),
    ] {
        let c = ctx(tenant, role, &format!("{tenant}-{role}"));
        let err = f
            .svc
            .execute(&c, Cancel { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code, code, "{tenant} {role}");
        let e = f.entry(&c.meta.request_id).await.entry;
        assert_eq!(e.target.as_deref(), Some(id.as_str()), "the id is recorded");
        assert_eq!(e.action, "evaluation.cancel");
    }
    let err = f
        .svc
        .execute(
            &ctx("acme", Role::Member, "req"),
            Requeue { id: id.clone() },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden, "requeue is for admins");
    let cancelled = f
        .svc
        .execute(&ctx("acme", Role::Member, "ok"), Cancel { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(cancelled.status, EvaluationStatus::Cancelled);
    let again = f
        .svc
        .execute(&ctx("acme", Role::Member, "again"), Cancel { id })
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::AlreadyFinished);
}

#[tokio::test]
async fn an_unreadable_request_is_recorded_and_the_role_comes_first() {
    let f = fixture().await;
    let bad = ApiError::new(ErrorCode::InvalidJson, "malformed JSON");
    let err = f
        .svc
        .rejected::<Submit>(&ctx("acme", Role::Viewer, "v"), None, bad.clone())
        .await;
    assert_eq!(err.code, ErrorCode::Forbidden, "a viewer is refused first");
    let err = f
        .svc
        .rejected::<Submit>(&ctx("acme", Role::Member, "m"), None, bad)
        .await;
    assert_eq!(err.code, ErrorCode::InvalidJson);
    let e = f.entry("m").await.entry;
    assert_eq!(
        (e.action.as_str(), e.status, e.detail.as_deref()),
        ("evaluation.submit", 400, Some("invalid_json"))
    );
}

#[tokio::test]
async fn refused_reads_are_recorded_and_successful_ones_are_not() {
    let f = fixture().await;
    let viewer = ctx("acme", Role::Viewer, "dl");
    let err = f
        .svc
        .dead_letters(&viewer, Ok(PageParams::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert_eq!(f.entry("dl").await.entry.action, "dead_letter.list");
    // The role is checked before a malformed query is refused.
    let err = f
        .svc
        .dead_letters(
            &ctx("acme", Role::Viewer, "dl2"),
            Err(ApiError::invalid_query("x")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let page = f
        .svc
        .evaluations(
            &ctx("acme", Role::Viewer, "list"),
            Ok(ListParams::default()),
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert!(
        f.audit().await.iter().all(|e| e.entry.request_id != "list"),
        "a successful read is not recorded"
    );
    let err = f
        .svc
        .evaluations(
            &ctx("acme", Role::Viewer, "bad"),
            Ok(ListParams {
                status: Some("exploded".into()),
                ..ListParams::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidQuery);
}

#[tokio::test]
async fn authentication_failures_are_recorded_without_the_credential() {
    let f = fixture().await;
    let admin = ctx("default", Role::Admin, "mk");
    let created = f
        .svc
        .execute(
            &admin,
            CreateKey {
                request: CreateKeyRequest {
                    tenant: "acme".into(),
                    role: "member".into(),
                    name: "ci".into(),
                    expires_at: None,
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(f.entry("mk").await.entry.status, 201);
    let meta = |id: &str| RequestMeta {
        request_id: id.into(),
        source: None,
    };
    let caller = f
        .svc
        .authenticate_key(&meta("ok"), &created.key)
        .await
        .unwrap();
    assert_eq!(
        (caller.tenant.as_str(), caller.role),
        ("acme", Role::Member)
    );
    let wrong = "ak_0123456789abcdef0123456789abcdef01234567";
    let err = f
        .svc
        .authenticate_key(&meta("bad"), wrong)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let e = f.entry("bad").await.entry;
    assert_eq!(
        (e.action.as_str(), e.outcome.as_str(), e.actor),
        ("auth.failed", "denied", None)
    );
    let detail = e.detail.unwrap();
    assert!(
        detail.starts_with("invalid API key (credential sha256 "),
        "{detail}"
    );
    assert!(!detail.contains(wrong));
    assert!(f.audit().await.iter().all(|e| e.entry.request_id != "ok"));
}

#[tokio::test]
async fn a_batch_retried_with_its_key_creates_nothing_new() {
    let f = fixture().await;
    let c = ctx("acme", Role::Member, "b");
    let batch = |n: usize, key: &str| SubmitBatch {
        items: (0..n).map(|i| py(&format!("print({i})"))).collect(),
        idempotency_key: Some(key.into()),
    };
    let first = f.svc.execute(&c, batch(5, "k1")).await.unwrap();
    let again = f.svc.execute(&c, batch(5, "k1")).await.unwrap();
    let ids = |r: &assay_api::evaluation::BatchResponse| {
        r.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again), "the same evaluations, in order");
    let all = f
        .svc
        .evaluations(
            &c,
            Ok(ListParams {
                limit: Some(100),
                ..ListParams::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5, "not 10");
    for (n, why) in [(6, "a larger batch"), (4, "a smaller batch")] {
        let err = f.svc.execute(&c, batch(n, "k1")).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::IdempotencyConflict, "{why}");
    }
    // Another key, or another tenant with the same key, is a new batch.
    f.svc.execute(&c, batch(2, "k2")).await.unwrap();
    let other = f
        .svc
        .execute(&ctx("globex", Role::Member, "g"), batch(5, "k1"))
        .await
        .unwrap();
    assert!(other.items.iter().all(|e| e.tenant == "globex"));
}

#[tokio::test]
async fn the_live_stream_replays_history_and_ends_with_the_full_result() {
    let f = fixture().await;
    let c = ctx("acme", Role::Member, "s");
    let id = f
        .svc
        .execute(&c, submit("print('hi')"))
        .await
        .unwrap()
        .evaluation
        .id;
    // A worker's part, played by hand.
    let now = now_millis();
    let claim = f
        .store
        .claim("w", Duration::from_secs(30), &ClaimPolicy::default(), now)
        .await
        .unwrap()
        .unwrap();
    f.store
        .append_output(&id, &claim.token, OutputStream::Stdout, "hi\n", now)
        .await
        .unwrap();
    let mut result = RunResult::platform_error("fake", "x");
    (result.status, result.error, result.exit_code, result.stdout) =
        (RunStatus::Succeeded, None, Some(0), "hi\n".into());
    f.store
        .finish(&id, &claim.token, &result, &RetryPolicy::default(), now + 1)
        .await
        .unwrap();

    let mut watch = f.svc.watch(&c, &id, Ok(0)).await.unwrap();
    let mut seen = Vec::new();
    while let Some(batch) = watch.next().await.unwrap() {
        seen.extend(batch);
    }
    let names: Vec<&str> = seen.iter().map(|(_, e)| e.name()).collect();
    assert_eq!(names, ["status", "status", "stdout", "status", "result"]);
    let seqs: Vec<i64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    match &seen[4].1 {
        StreamEvent::Result(view) => {
            assert_eq!(view.status, EvaluationStatus::Succeeded);
            assert_eq!(view.result.as_ref().unwrap().stdout, "hi\n");
        }
        other => panic!("{other:?}"),
    }
    // Resuming after 3 gives the rest only.
    let mut watch = f.svc.watch(&c, &id, Ok(3)).await.unwrap();
    let rest = watch.next().await.unwrap().unwrap();
    assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5]);
    // Another tenant cannot watch it.
    let err = f
        .svc
        .watch(&ctx("other", Role::Admin, "x"), &id, Ok(0))
        .await
        .map(drop);
    assert!(err.is_ok(), "admins see every tenant");
    let err = f
        .svc
        .watch(&ctx("other", Role::Viewer, "y"), &id, Ok(0))
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    // The full view from GET has the output, the summary in lists does not carry it.
    let view = f.svc.evaluation(&c, &id).await.unwrap();
    assert_eq!(view.result.unwrap().stdout, "hi\n");
    let waited = f
        .svc
        .wait_finished(&c, &id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(waited.status, EvaluationStatus::Succeeded);
}
