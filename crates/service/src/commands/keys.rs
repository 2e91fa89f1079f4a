//! Commands on API keys (admin keys only).

use super::command::Command;
use crate::audit::Audited;
use crate::keys::{new_key, parse_role};
use crate::{Action, Caller, Service, store_error, views};
use assay_api::keys::{CreateKeyRequest, KeyView, NewKeyView};
use assay_api::time::parse_time;
use assay_api::{ApiError, ErrorCode};
use assay_domain::Role;
use assay_store::{StoreError, now_millis};

/// Create an API key; the answer is the only time its secret is shown.
pub struct CreateKey {
    pub request: CreateKeyRequest,
}

#[async_trait::async_trait]
impl Command for CreateKey {
    const ACTION: Action = Action::KeyCreate;
    const ROLE: Role = Role::Admin;
    type Output = NewKeyView;

    async fn run(self, svc: &Service, caller: &Caller) -> Result<NewKeyView, ApiError> {
        let req = self.request;
        let role = parse_role(&req.role)?;
        let expires_at = req
            .expires_at
            .as_deref()
            .map(|s| {
                parse_time(s).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidExpiry,
                        "expires_at must be an RFC 3339 time (e.g. 2030-01-31T12:00:00Z)",
                    )
                })
            })
            .transpose()?;
        let (secret, key) = new_key(&req.tenant, role, &req.name, expires_at, now_millis())?;
        svc.store().create_key(&key).await.map_err(store_error)?;
        tracing::info!(by = %caller.key_id, key = %key.id, tenant = %key.tenant, role = key.role.as_str(), "API key created");
        Ok(views::new_key(&key, secret))
    }

    fn audited(out: &NewKeyView) -> Audited {
        Audited {
            status: 201,
            target: Some(out.id.clone()),
            detail: None,
        }
    }
}

/// Revoke an API key: the next request with it is a 401. Revoking a revoked key changes
/// nothing.
pub struct RevokeKey {
    pub id: String,
}

#[async_trait::async_trait]
impl Command for RevokeKey {
    const ACTION: Action = Action::KeyRevoke;
    const ROLE: Role = Role::Admin;
    type Output = KeyView;

    fn target(&self) -> Option<&str> {
        Some(&self.id)
    }

    async fn run(self, svc: &Service, caller: &Caller) -> Result<KeyView, ApiError> {
        let now = now_millis();
        let key = match svc.store().revoke_key(&self.id, now).await {
            Ok(k) => k,
            Err(StoreError::NotFound(_)) => return Err(ApiError::not_found("key")),
            Err(e) => return Err(store_error(e)),
        };
        tracing::info!(by = %caller.key_id, key = %key.id, tenant = %key.tenant, "API key revoked");
        Ok(views::key(&key, now))
    }

    fn audited(out: &KeyView) -> Audited {
        Audited {
            status: 200,
            target: Some(out.id.clone()),
            detail: None,
        }
    }
}
