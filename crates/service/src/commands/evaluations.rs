//! Commands on evaluations: submit one, submit a batch, cancel, requeue a dead letter.

use super::command::Command;
use crate::audit::Audited;
use crate::quota;
use crate::{Action, Caller, Service, store_error};
use assay_api::evaluation::{BatchResponse, EvaluationView, SubmitRequest};
use assay_api::{ApiError, ErrorCode, MAX_BATCH};
use assay_domain::Role;
use assay_store::{NewEvaluation, Store, StoreError, SubmitOutcome, now_millis};
use serde_json::json;

/// Ids of a batch recorded in its audit entry, at most.
const MAX_AUDITED_IDS: usize = 1000;

/// The idempotency key of item `index` of a batch sent with `key`. The separator (U+001F) can
/// never come from an `Idempotency-Key` header (visible ASCII only), so a batch item's key can
/// never equal a single submission's.
pub fn batch_item_key(key: &str, index: usize) -> String {
    format!("{key}\u{1f}{index}")
}

/// Submit one evaluation in the caller's tenant.
pub struct Submit {
    pub request: SubmitRequest,
    /// A retry with the same key (per tenant) returns the first evaluation.
    pub idempotency_key: Option<String>,
}

/// A submission's outcome.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub evaluation: EvaluationView,
    /// False when the idempotency key was seen before (the evaluation is the first one's).
    pub created: bool,
}

#[async_trait::async_trait]
impl Command for Submit {
    const ACTION: Action = Action::EvaluationSubmit;
    const ROLE: Role = Role::Member;
    type Output = Submitted;

    async fn run(self, svc: &Service, caller: &Caller) -> Result<Submitted, ApiError> {
        let config = svc.config();
        let quota = config.quotas.for_tenant(&caller.tenant);
        let submission = self.request.validate(&quota.limit_policy(&config.limits))?;
        let new = NewEvaluation {
            tenant: caller.tenant.clone(),
            submission,
            idempotency_key: self.idempotency_key,
            max_attempts: config.retry.max_attempts,
        };
        let outcome = admit(svc, caller, vec![new])
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal("submit: no outcome"))?;
        let created = outcome.is_created();
        if created {
            tracing::debug!(key = %caller.key_id, evaluation = %outcome.evaluation().id, "submitted");
            svc.bus().notify_queue();
        }
        Ok(Submitted {
            evaluation: svc.full_view(outcome.into_evaluation()).await?,
            created,
        })
    }

    fn audited(out: &Submitted) -> Audited {
        Audited {
            status: 202,
            target: Some(out.evaluation.id.clone()),
            detail: None,
        }
    }
}

/// Submit up to 1000 evaluations at once; validation is all or nothing. With an idempotency
/// key, a retry of the same batch returns the evaluations the first one created.
pub struct SubmitBatch {
    pub items: Vec<SubmitRequest>,
    pub idempotency_key: Option<String>,
}

#[async_trait::async_trait]
impl Command for SubmitBatch {
    const ACTION: Action = Action::EvaluationBatch;
    const ROLE: Role = Role::Member;
    type Output = BatchResponse;

    async fn run(self, svc: &Service, caller: &Caller) -> Result<BatchResponse, ApiError> {
        let n = self.items.len();
        if n == 0 || n > MAX_BATCH {
            return Err(ApiError::new(
                ErrorCode::InvalidBatch,
                format!("a batch holds 1 to {MAX_BATCH} items, not {n}"),
            ));
        }
        let store = svc.store();
        let config = svc.config();
        let tenant = &caller.tenant;
        let quota = config.quotas.for_tenant(tenant);
        quota::check_burst(quota, u32::try_from(n).unwrap_or(u32::MAX))?;
        let limits = quota.limit_policy(&config.limits);
        let mut items = Vec::with_capacity(n);
        let mut errors = Vec::new();
        for (index, item) in self.items.iter().enumerate() {
            match item.validate(&limits) {
                Ok(submission) => items.push(NewEvaluation {
                    tenant: tenant.clone(),
                    submission,
                    idempotency_key: self
                        .idempotency_key
                        .as_deref()
                        .map(|k| batch_item_key(k, index)),
                    max_attempts: config.retry.max_attempts,
                }),
                Err(e) => {
                    let e = ApiError::from(e);
                    errors.push(json!({"index": index, "code": e.code, "message": e.message, "details": e.details}));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidBatch,
                format!(
                    "{} of {n} items are invalid; nothing was queued",
                    errors.len()
                ),
            )
            .with_details(json!({ "errors": errors })));
        }
        // A retry of a batch that was accepted inserts nothing and the store charges it
        // nothing.
        let outcomes = admit(svc, caller, items).await?;
        if let Some(key) = &self.idempotency_key {
            check_same_batch(store, tenant, key, &outcomes).await?;
        }
        if outcomes.iter().any(SubmitOutcome::is_created) {
            svc.bus().notify_queue();
        }
        let mut views = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            views.push(svc.full_view(o.into_evaluation()).await?);
        }
        Ok(BatchResponse { items: views })
    }

    fn audited(out: &BatchResponse) -> Audited {
        let ids: Vec<&str> = out
            .items
            .iter()
            .take(MAX_AUDITED_IDS)
            .map(|e| e.id.as_str())
            .collect();
        Audited {
            status: 202,
            target: None,
            detail: Some(format!(
                "{} evaluations: {}",
                out.items.len(),
                ids.join(",")
            )),
        }
    }
}

/// Inserts `items` if the caller's quotas admit them (checked by the store, in the inserting
/// transaction).
async fn admit(
    svc: &Service,
    caller: &Caller,
    items: Vec<NewEvaluation>,
) -> Result<Vec<SubmitOutcome>, ApiError> {
    let quotas = &svc.config().quotas;
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let admission = quota::admission(quotas, &caller.tenant, &caller.key_id);
    match svc.store().admit(items, &admission, now_millis()).await {
        Ok(outcomes) => Ok(outcomes),
        Err(StoreError::Refused(r)) => Err(quota::refusal_error(
            r,
            quotas.for_tenant(&caller.tenant),
            &caller.tenant,
            n,
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// A batch retried with its key must be the batch that key was first used for: the store
/// refuses a mix of known and new items; a retry with fewer items than the first is refused
/// here (the first batch's next item exists).
async fn check_same_batch(
    store: &dyn Store,
    tenant: &str,
    key: &str,
    outcomes: &[SubmitOutcome],
) -> Result<(), ApiError> {
    if outcomes.iter().any(SubmitOutcome::is_created) {
        return Ok(());
    }
    let beyond = store
        .find_by_idempotency_key(tenant, &batch_item_key(key, outcomes.len()))
        .await
        .map_err(store_error)?;
    if beyond.is_some() {
        return Err(ApiError::new(
            ErrorCode::IdempotencyConflict,
            "this Idempotency-Key was used for a larger batch; retry with the same items",
        ));
    }
    Ok(())
}

/// Cancel: a queued evaluation is cancelled at once; a running one is killed by its worker
/// within a second. A finished one is a 409.
pub struct Cancel {
    pub id: String,
}

#[async_trait::async_trait]
impl Command for Cancel {
    const ACTION: Action = Action::EvaluationCancel;
    const ROLE: Role = Role::Member;
    type Output = EvaluationView;

    fn target(&self) -> Option<&str> {
        Some(&self.id)
    }

    async fn resolve(&self, svc: &Service, caller: &Caller) -> Result<(), ApiError> {
        svc.visible(caller, &self.id).await.map(drop)
    }

    async fn run(self, svc: &Service, caller: &Caller) -> Result<EvaluationView, ApiError> {
        let ev = svc.visible(caller, &self.id).await?;
        if ev.status.is_terminal() {
            return Err(ApiError::new(
                ErrorCode::AlreadyFinished,
                format!(
                    "evaluation is {}; only queued or running evaluations can be cancelled",
                    ev.status
                ),
            ));
        }
        let ev = svc
            .store()
            .cancel(&self.id, now_millis())
            .await
            .map_err(store_error)?;
        svc.bus().publish_events(&self.id);
        svc.full_view(ev).await
    }

    fn audited(_: &EvaluationView) -> Audited {
        Audited {
            status: 200,
            ..Audited::default()
        }
    }
}

/// Requeue a dead-lettered evaluation (attempts reset).
pub struct Requeue {
    pub id: String,
}

#[async_trait::async_trait]
impl Command for Requeue {
    const ACTION: Action = Action::EvaluationRequeue;
    const ROLE: Role = Role::Admin;
    type Output = EvaluationView;

    fn target(&self) -> Option<&str> {
        Some(&self.id)
    }

    async fn resolve(&self, svc: &Service, caller: &Caller) -> Result<(), ApiError> {
        svc.visible(caller, &self.id).await.map(drop)
    }

    async fn run(self, svc: &Service, _caller: &Caller) -> Result<EvaluationView, ApiError> {
        let ev = svc
            .store()
            .requeue(&self.id, now_millis())
            .await
            .map_err(store_error)?;
        svc.bus().notify_queue();
        svc.bus().publish_events(&self.id);
        svc.full_view(ev).await
    }

    fn audited(_: &EvaluationView) -> Audited {
        Audited {
            status: 200,
            ..Audited::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_keys_never_equal_a_header_value() {
        let k = batch_item_key("retry-1", 7);
        assert_eq!(k, "retry-1\u{1f}7");
        assert!(k.bytes().any(|b| !(0x20..0x7f).contains(&b)));
    }
}
