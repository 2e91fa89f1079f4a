//! Writing the audit trail: one typed entry per command (whatever its outcome), per refused
//! query and per failed authentication. Never a secret, a body or a query string: key ids and
//! error codes only.

use crate::{Action, Caller, RequestMeta, Service};
use assay_api::ApiError;
use assay_store::{AuditOutcome, NewAuditEntry, now_millis};
use sha2::{Digest, Sha256};

/// Longest target and detail recorded.
const MAX_FIELD: usize = 200;

/// What the audit log records of a successful command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audited {
    /// The status of the answer (200, 201, 202).
    pub status: u16,
    /// The evaluation or key acted on (created, for submissions and new keys).
    pub target: Option<String>,
    /// More: the ids of a batch.
    pub detail: Option<String>,
}

fn outcome_of(status: u16) -> AuditOutcome {
    match status {
        200..=399 => AuditOutcome::Ok,
        401 | 403 | 429 => AuditOutcome::Denied,
        _ => AuditOutcome::Error,
    }
}

pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Service {
    async fn append(&self, entry: NewAuditEntry) {
        if let Err(e) = self.store().append_audit(entry).await {
            tracing::error!(error = %e, "could not write the audit entry");
        }
    }

    /// Records a command's success.
    pub(crate) async fn record_ok(
        &self,
        meta: &RequestMeta,
        caller: &Caller,
        action: Action,
        audited: Audited,
    ) {
        self.append(NewAuditEntry {
            at: now_millis(),
            actor: Some(caller.key_id.clone()),
            tenant: Some(caller.tenant.clone()),
            action: action.as_str().into(),
            target: audited.target.as_deref().map(clip),
            outcome: outcome_of(audited.status),
            status: audited.status,
            source: meta.source.clone(),
            request_id: meta.request_id.clone(),
            detail: audited.detail.as_deref().map(clip),
        })
        .await;
    }

    /// Records a refused or failed operation: the error's code is the detail.
    pub(crate) async fn record_failure(
        &self,
        meta: &RequestMeta,
        caller: &Caller,
        action: Action,
        target: Option<&str>,
        err: &ApiError,
    ) {
        self.append(NewAuditEntry {
            at: now_millis(),
            actor: Some(caller.key_id.clone()),
            tenant: Some(caller.tenant.clone()),
            action: action.as_str().into(),
            target: target.map(clip),
            outcome: outcome_of(err.status()),
            status: err.status(),
            source: meta.source.clone(),
            request_id: meta.request_id.clone(),
            detail: Some(err.code.as_str().into()),
        })
        .await;
    }

    /// Records a call that authentication refused: why (the refusal's message) and, to tell
    /// repeated attempts apart, the first 6 hex digits of the SHA-256 of the presented
    /// credential (never the credential).
    pub async fn auth_failed(&self, meta: &RequestMeta, err: &ApiError, credential: Option<&str>) {
        let hint = credential
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| hex::encode(Sha256::digest(c.as_bytes()))[..6].to_string());
        let detail = match hint {
            Some(h) => format!("{} (credential sha256 {h}…)", clip(&err.message)),
            None => clip(&err.message),
        };
        let status = err.status();
        self.append(NewAuditEntry {
            at: now_millis(),
            actor: None,
            tenant: None,
            action: Action::AuthFailed.as_str().into(),
            target: None,
            outcome: if (400..500).contains(&status) {
                AuditOutcome::Denied
            } else {
                outcome_of(status)
            },
            status,
            source: meta.source.clone(),
            request_id: meta.request_id.clone(),
            detail: Some(clip(&detail)),
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_clipping() {
        assert_eq!(outcome_of(202), AuditOutcome::Ok);
        assert_eq!(outcome_of(403), AuditOutcome::Denied);
        assert_eq!(outcome_of(429), AuditOutcome::Denied);
        assert_eq!(outcome_of(409), AuditOutcome::Error);
        assert_eq!(outcome_of(500), AuditOutcome::Error);
        assert_eq!(clip(&"é".repeat(300)).chars().count(), MAX_FIELD + 1);
        assert_eq!(clip("short"), "short");
    }
}
