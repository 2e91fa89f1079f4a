//! Who is calling, and from where.

use assay_api::ApiError;
use assay_domain::Role;
use assay_store::Millis;

/// The caller, as authenticated (an API key, or an external identity).
///
/// What a role may do: `admin` everything, in every tenant; `member` submit, read and cancel
/// its own tenant's evaluations; `viewer` read its own tenant's evaluations. Operations on one
/// evaluation first resolve the id within the caller's tenants (another tenant's evaluation is
/// a 404, exactly like one that does not exist), then check the role (403 `forbidden`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (or `jwt:<sub>`).
    pub key_id: String,
    /// The key's name.
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub expires_at: Option<Millis>,
}

impl Caller {
    /// The tenant filter for reads: admins see every tenant.
    pub fn tenant_scope(&self) -> Option<String> {
        (self.role != Role::Admin).then(|| self.tenant.clone())
    }

    pub fn can_see(&self, tenant: &str) -> bool {
        self.role == Role::Admin || self.tenant == tenant
    }

    /// 403 `forbidden` unless the caller's role allows what `needed` allows.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        Err(ApiError::forbidden(match needed {
            Role::Admin => "admin key required",
            Role::Member | Role::Viewer => "this key is read-only",
        }))
    }
}

/// What is known of a request before authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestMeta {
    /// The id the answer carries (`X-Request-Id`) and the audit log records.
    pub request_id: String,
    /// The peer's IP address.
    pub source: Option<String>,
}

/// An authenticated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub meta: RequestMeta,
    pub caller: Caller,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            key_id: "key_1".into(),
            name: "n".into(),
            tenant: "acme".into(),
            role,
            expires_at: None,
        }
    }

    #[test]
    fn roles_and_tenants() {
        let viewer = caller(Role::Viewer);
        assert_eq!(viewer.tenant_scope().as_deref(), Some("acme"));
        assert!(viewer.can_see("acme") && !viewer.can_see("other"));
        assert!(viewer.require(Role::Viewer).is_ok());
        let e = viewer.require(Role::Member).unwrap_err();
        assert_eq!(
            (e.status(), e.message.as_str()),
            (403, "this key is read-only")
        );
        let member = caller(Role::Member);
        assert_eq!(
            member.require(Role::Admin).unwrap_err().message,
            "admin key required"
        );
        let admin = caller(Role::Admin);
        assert_eq!(admin.tenant_scope(), None);
        assert!(admin.can_see("other") && admin.require(Role::Admin).is_ok());
    }
}
