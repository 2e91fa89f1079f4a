//! Who may do what: the role of an API key (or of an external identity).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A caller's role. `admin`: everything, in every tenant; `member`: submit, read and cancel its
/// own tenant's evaluations; `viewer`: read its own tenant's evaluations.
///
/// Roles are ordered by what they allow: `Viewer < Member < Admin`, so "at least a member" is
/// `role >= Role::Member`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role includes everything `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_by_power() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert!(Role::Admin.allows(Role::Member) && Role::Member.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Member) && !Role::Member.allows(Role::Admin));
    }
}
