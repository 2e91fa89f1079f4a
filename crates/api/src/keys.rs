//! API keys on the wire (`/v1/keys`, `/v1/me`). No answer ever carries a key's hash, and only
//! the answer that creates a key carries the key itself.

use assay_domain::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The tenant the key belongs to: `[a-z0-9][a-z0-9-_.]{0,62}`.
    #[schema(example = "acme")]
    pub tenant: String,
    /// `admin`, `member` or `viewer` (anything else: 422 `invalid_role`).
    #[schema(value_type = Role)]
    pub role: String,
    /// 1 to 100 characters, to recognise the key by.
    #[schema(example = "ci runner")]
    pub name: String,
    /// RFC 3339, in the future; absent or null: the key does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Whether a key authenticates now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Expired,
    Revoked,
}

/// An API key as listed: never the key itself, never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub state: KeyState,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Recorded at most once a minute.
    pub last_used_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// Oldest first, revoked and expired keys included.
    pub items: Vec<KeyView>,
}

/// A new API key. `key` is shown only in this answer: store it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewKeyView {
    pub id: String,
    /// The secret to send as `Authorization: Bearer <key>`.
    pub key: String,
    pub tenant: String,
    pub role: Role,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// The key (or external identity) making the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// The key's id, or `jwt:<sub>` for an external identity.
    pub key_id: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    /// RFC 3339; null: never.
    pub expires_at: Option<String>,
}

/// Query of `GET /v1/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    /// Only this tenant's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}
