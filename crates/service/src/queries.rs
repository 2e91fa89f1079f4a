//! Reads: one evaluation, lists, the queue, keys, the caller, the audit log. Each checks the
//! caller's tenant and role like a command does; a read refused for the role is recorded in
//! the audit log (successful reads are not). Parameters come as the front end could read them
//! (`Result`): the role is checked before a malformed request is refused.

use crate::{Action, Caller, Context, Service, Watch, store_error, views};
use assay_api::audit::{AuditPage, AuditParams};
use assay_api::evaluation::{EvaluationPage, EvaluationView, ListParams, PageParams, page_size};
use assay_api::keys::{KeyList, KeyListParams, MeView};
use assay_api::queue::QueueView;
use assay_api::time::parse_time;
use assay_api::{ApiError, ErrorCode};
use assay_domain::{EvaluationStatus, Role};
use assay_store::{AuditFilter, AuditOutcome, Evaluation, ListFilter, Output, now_millis};
use std::time::Duration;

/// Workers heartbeat every few seconds; one silent for longer than this is gone (killed, or its
/// machine is) and is not shown as capacity.
const WORKER_STALE_MS: i64 = 30_000;

impl Service {
    /// The caller's role must allow `needed`; a refusal is recorded as `action`.
    pub(crate) async fn allow(
        &self,
        ctx: &Context,
        action: Action,
        needed: Role,
    ) -> Result<(), ApiError> {
        if let Err(e) = ctx.caller.require(needed) {
            self.record_failure(&ctx.meta, &ctx.caller, action, None, &e)
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Loads an evaluation the caller may see; another tenant's is a 404, like a missing one.
    pub(crate) async fn visible(&self, caller: &Caller, id: &str) -> Result<Evaluation, ApiError> {
        match self.store().get(id).await.map_err(store_error)? {
            Some(ev) if caller.can_see(&ev.tenant) => Ok(ev),
            _ => Err(ApiError::not_found("evaluation")),
        }
    }

    /// The evaluation as `GET` shows it: with its output when it has a result.
    pub(crate) async fn full_view(&self, ev: Evaluation) -> Result<EvaluationView, ApiError> {
        let output = if ev.result.is_some() {
            self.store().output(&ev.id).await.map_err(store_error)?
        } else {
            Output::default()
        };
        Ok(views::evaluation(&ev, output))
    }

    /// One evaluation the caller may see, as `GET` shows it (with its output), in one read.
    pub(crate) async fn visible_view(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<EvaluationView, ApiError> {
        match self
            .store()
            .get_with_output(id)
            .await
            .map_err(store_error)?
        {
            Some((ev, output)) if caller.can_see(&ev.tenant) => Ok(views::evaluation(&ev, output)),
            _ => Err(ApiError::not_found("evaluation")),
        }
    }

    /// One evaluation, with its whole output.
    pub async fn evaluation(&self, ctx: &Context, id: &str) -> Result<EvaluationView, ApiError> {
        self.visible_view(&ctx.caller, id).await
    }

    /// Waits until the evaluation is finished or `max` passed; returns it as it is then.
    pub async fn wait_finished(
        &self,
        ctx: &Context,
        id: &str,
        max: Duration,
    ) -> Result<EvaluationView, ApiError> {
        let deadline = tokio::time::Instant::now() + max;
        let mut rx = self.bus().subscribe_events();
        loop {
            let ev = self.visible(&ctx.caller, id).await?;
            if ev.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return self.visible_view(&ctx.caller, id).await;
            }
            // Woken by this process's workers at once; polling covers workers elsewhere.
            let poll = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Ok(x) if x == id => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    },
                    _ = &mut poll => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    /// Evaluations, newest first: the caller's tenant's (an admin's: every tenant's).
    pub async fn evaluations(
        &self,
        ctx: &Context,
        params: Result<ListParams, ApiError>,
    ) -> Result<EvaluationPage, ApiError> {
        self.allow(ctx, Action::EvaluationList, Role::Viewer)
            .await?;
        let filter = list_filter(params?, &ctx.caller)?;
        self.page(&filter).await
    }

    /// Dead letters (admin): platform failures that used up their attempts, with reasons.
    pub async fn dead_letters(
        &self,
        ctx: &Context,
        params: Result<PageParams, ApiError>,
    ) -> Result<EvaluationPage, ApiError> {
        self.allow(ctx, Action::DeadLetterList, Role::Admin).await?;
        let params = params?;
        let filter = ListFilter {
            tenant: ctx.caller.tenant_scope(),
            status: Some(EvaluationStatus::Dead),
            cursor: params.cursor,
            limit: page_size(params.limit)?,
            ..ListFilter::default()
        };
        self.page(&filter).await
    }

    async fn page(&self, filter: &ListFilter) -> Result<EvaluationPage, ApiError> {
        let page = self.store().list(filter).await.map_err(store_error)?;
        Ok(EvaluationPage {
            items: page.items.iter().map(views::summary).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Counts by status and the oldest queued age (the caller's tenant; an admin: all), and
    /// the live workers.
    pub async fn queue(&self, ctx: &Context) -> Result<QueueView, ApiError> {
        self.allow(ctx, Action::QueueGet, Role::Viewer).await?;
        let now = now_millis();
        let scope = ctx.caller.tenant_scope();
        let mut stats = self
            .store()
            .queue_stats(scope.as_deref(), now)
            .await
            .map_err(store_error)?;
        stats
            .workers
            .retain(|w| now - w.last_seen <= WORKER_STALE_MS);
        Ok(views::queue(&stats))
    }

    /// API keys (admin), oldest first; never a key or its hash.
    pub async fn keys(
        &self,
        ctx: &Context,
        params: Result<KeyListParams, ApiError>,
    ) -> Result<KeyList, ApiError> {
        self.allow(ctx, Action::KeyList, Role::Admin).await?;
        let params = params?;
        let now = now_millis();
        let keys = self
            .store()
            .list_keys(params.tenant.as_deref())
            .await
            .map_err(store_error)?;
        Ok(KeyList {
            items: keys.iter().map(|k| views::key(k, now)).collect(),
        })
    }

    /// The caller.
    pub fn me(&self, ctx: &Context) -> MeView {
        views::me(&ctx.caller)
    }

    /// The audit log (admin).
    pub async fn audit_log(
        &self,
        ctx: &Context,
        params: Result<AuditParams, ApiError>,
    ) -> Result<AuditPage, ApiError> {
        self.allow(ctx, Action::AuditList, Role::Admin).await?;
        let filter = audit_filter(params?)?;
        let page = self
            .store()
            .list_audit(&filter)
            .await
            .map_err(store_error)?;
        Ok(AuditPage {
            items: page.items.iter().map(views::audit_entry).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The live events of an evaluation the caller may see, after the sequence number
    /// `after`.
    pub async fn watch(
        &self,
        ctx: &Context,
        id: &str,
        after: Result<i64, ApiError>,
    ) -> Result<Watch, ApiError> {
        self.allow(ctx, Action::EvaluationEvents, Role::Viewer)
            .await?;
        self.visible(&ctx.caller, id).await?;
        Ok(Watch::new(self.clone(), id.to_string(), after?))
    }

    /// Readiness: the store answers. The cause of a failure goes to the log, not the answer.
    pub async fn ready(&self) -> Result<(), ApiError> {
        self.store().count_keys().await.map(drop).map_err(|e| {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            ApiError::new(ErrorCode::NotReady, "the store does not answer")
        })
    }
}

fn time_param(s: Option<String>, name: &str) -> Result<Option<i64>, ApiError> {
    s.map(|s| {
        parse_time(&s)
            .ok_or_else(|| ApiError::invalid_query(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// The store's filter for a list request.
pub fn list_filter(p: ListParams, caller: &Caller) -> Result<ListFilter, ApiError> {
    let status = p
        .status
        .map(|s| {
            EvaluationStatus::parse(&s)
                .ok_or_else(|| ApiError::invalid_query(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let label = p
        .label
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::invalid_query("label must be key=value"))
        })
        .transpose()?;
    Ok(ListFilter {
        tenant: caller.tenant_scope(),
        status,
        label,
        created_after: time_param(p.created_after, "created_after")?,
        created_before: time_param(p.created_before, "created_before")?,
        cursor: p.cursor,
        limit: page_size(p.limit)?,
    })
}

/// The store's filter for an audit request.
pub fn audit_filter(p: AuditParams) -> Result<AuditFilter, ApiError> {
    let outcome = p
        .outcome
        .map(|o| {
            AuditOutcome::parse(&o).ok_or_else(|| {
                ApiError::invalid_query(format!("outcome must be ok, denied or error, not {o:?}"))
            })
        })
        .transpose()?;
    let oldest_first = match p.order.as_deref() {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(o) => {
            return Err(ApiError::invalid_query(format!(
                "order must be newest or oldest, not {o:?}"
            )));
        }
    };
    Ok(AuditFilter {
        actor: p.actor,
        tenant: p.tenant,
        action: p.action,
        target: p.target,
        outcome,
        after: time_param(p.after, "after")?,
        before: time_param(p.before, "before")?,
        oldest_first,
        cursor: p.cursor,
        limit: page_size(p.limit)?,
    })
}
