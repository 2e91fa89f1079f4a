//! `Store` for `PgStore`: each method is one function of the module that owns its concern.

use crate::connection::PgStore;
use crate::{audit, claim, evaluations, keys, queue, transfer, workers};
use assay_domain::{EvaluationStatus, OutputStream, RetryPolicy};
use assay_store::{
    Admission, ApiKey, AuditEntry, AuditFilter, AuditVerification, Claim, ClaimPolicy, Deleted,
    Evaluation, EvaluationDump, Event, LeaseState, ListFilter, Millis, NewAuditEntry,
    NewEvaluation, Output, Page, QueueStats, Result, RunRecord, Store, SubmitOutcome, WorkerInfo,
};
use std::time::Duration;

#[async_trait::async_trait]
impl Store for PgStore {
    async fn admit(
        &self,
        items: Vec<NewEvaluation>,
        admission: &Admission,
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>> {
        evaluations::admit(self, items, admission, now).await
    }

    async fn get(&self, id: &str) -> Result<Option<Evaluation>> {
        evaluations::get(self, id).await
    }

    async fn find_by_idempotency_key(&self, tenant: &str, key: &str) -> Result<Option<Evaluation>> {
        evaluations::find_by_idempotency_key(self, tenant, key).await
    }

    async fn output(&self, id: &str) -> Result<Output> {
        evaluations::output(self, id).await
    }

    async fn get_with_output(&self, id: &str) -> Result<Option<(Evaluation, Output)>> {
        evaluations::get_with_output(self, id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Page<Evaluation>> {
        evaluations::list(self, filter).await
    }

    async fn cancel(&self, id: &str, now: Millis) -> Result<Evaluation> {
        queue::cancel(self, id, now).await
    }

    async fn claim(
        &self,
        worker_id: &str,
        lease: Duration,
        policy: &ClaimPolicy,
        now: Millis,
    ) -> Result<Option<Claim>> {
        claim::claim(self, worker_id, lease, policy, now).await
    }

    async fn count_queued(&self, tenant: Option<&str>) -> Result<u64> {
        queue::count_queued(self, tenant).await
    }

    async fn heartbeat(
        &self,
        id: &str,
        token: &str,
        lease: Duration,
        now: Millis,
    ) -> Result<LeaseState> {
        queue::heartbeat(self, id, token, lease, now).await
    }

    async fn append_output(
        &self,
        id: &str,
        token: &str,
        stream: OutputStream,
        data: &str,
        now: Millis,
    ) -> Result<i64> {
        queue::append_output(self, id, token, stream, data, now).await
    }

    async fn finish_record(
        &self,
        id: &str,
        token: &str,
        record: &RunRecord,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<EvaluationStatus> {
        queue::finish_record(self, id, token, record, policy, now).await
    }

    async fn release(&self, id: &str, token: &str, now: Millis) -> Result<()> {
        queue::release(self, id, token, now).await
    }

    async fn reap_expired(&self, policy: &RetryPolicy, now: Millis) -> Result<u64> {
        queue::reap_expired(self, policy, now).await
    }

    async fn events(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        evaluations::events(self, id, after, limit).await
    }

    async fn queue_stats(&self, tenant: Option<&str>, now: Millis) -> Result<QueueStats> {
        workers::queue_stats(self, tenant, now).await
    }

    async fn requeue(&self, id: &str, now: Millis) -> Result<Evaluation> {
        queue::requeue(self, id, now).await
    }

    async fn worker_heartbeat(&self, info: &WorkerInfo) -> Result<()> {
        workers::heartbeat(self, info).await
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        workers::remove(self, id).await
    }

    async fn create_key(&self, key: &ApiKey) -> Result<()> {
        keys::create(self, key).await
    }

    async fn use_key(&self, hash: &str, now: Millis) -> Result<Option<ApiKey>> {
        keys::use_key(self, hash, now).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>> {
        keys::get_key(self, id).await
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        keys::list(self, tenant).await
    }

    async fn revoke_key(&self, id: &str, now: Millis) -> Result<ApiKey> {
        keys::revoke(self, id, now).await
    }

    async fn count_keys(&self) -> Result<u64> {
        keys::count(self).await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        audit::append(self, entry).await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditEntry>> {
        audit::list(self, filter).await
    }

    async fn verify_audit(&self) -> Result<AuditVerification> {
        audit::verify(self).await
    }

    async fn delete_finished(&self, before: Millis, limit: u32) -> Result<Vec<Deleted>> {
        transfer::delete_finished(self, before, limit).await
    }

    async fn export_evaluations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<EvaluationDump>> {
        transfer::export(self, after, limit).await
    }

    async fn import_evaluations(&self, dumps: Vec<EvaluationDump>) -> Result<()> {
        transfer::import(self, dumps).await
    }

    async fn import_audit(&self, entries: Vec<AuditEntry>) -> Result<()> {
        audit::import(self, entries).await
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }
}
