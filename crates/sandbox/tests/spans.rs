//! The engine's tracing: one span per run, one child span per phase. A test binary of its own:
//! `tracing` caches whether a call site is wanted across threads, and tests running beside this
//! one (with no subscriber) could make it skip spans that this test's subscriber wants.

use assay_domain::{LimitPolicy, Program, RunStatus};
use assay_sandbox::{CancellationToken, Engine, EngineConfig, RunRequest};
use std::sync::{Arc, Mutex};

/// A span seen: its name, its parent's name and its fields (as `name=value`).
type SpanSeen = (String, Option<String>, Vec<String>);

/// Records every span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanSeen>>>);

struct Fields<'a>(&'a mut Vec<String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_string());
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_string(), parent, fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(name) = ctx.span(id).map(|s| s.name().to_string()) else {
            return;
        };
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = spans.iter_mut().rev().find(|s| s.0 == name) {
            values.record(&mut Fields(&mut span.2));
        }
    }
}

/// One run is a `sandbox.run` span (runtime, run id, status) with a child span per phase.
#[test]
fn a_run_is_traced_by_phase() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The subscriber is this thread's, and a current-thread runtime runs the whole run here.
    let (kind, r) = tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let t = tempfile::tempdir().unwrap();
            let e = Engine::new(EngineConfig {
                state_dir: t.path().to_path_buf(),
                ..EngineConfig::default()
            })
            .await
            .expect("engine starts");
            let req = RunRequest {
                program: Program::single("print('traced')"),
                environment: "python".into(),
                args: Vec::new(),
                stdin: Vec::new(),
                limits: LimitPolicy::default().defaults,
                retain_output: None,
                output_budget: None,
            };
            (
                e.runtime(),
                e.run(req, None, CancellationToken::new()).await,
            )
        })
    });
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let spans = spans.0.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|s| s.0 == "sandbox.run").collect();
    assert_eq!(runs.len(), 1, "{spans:?}");
    let fields = &runs[0].2;
    assert!(
        fields.contains(&format!("runtime={:?}", kind.name())),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("run_id=")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"status=succeeded".to_string()),
        "{fields:?}"
    );
    for phase in [
        "sandbox.prepare",
        "sandbox.start",
        "sandbox.program",
        "sandbox.teardown",
    ] {
        let found: Vec<_> = spans.iter().filter(|s| s.0 == phase).collect();
        assert_eq!(found.len(), 1, "{phase}: {spans:?}");
        assert_eq!(
            found[0].1.as_deref(),
            Some("sandbox.run"),
            "{phase} is a child of the run"
        );
    }
}
