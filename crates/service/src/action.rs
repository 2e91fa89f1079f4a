//! What the audit log calls each operation.

use std::fmt;

/// Every operation the service runs, by the name the audit log records. Commands change
/// state and are always recorded; queries are recorded only when refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    EvaluationSubmit,
    EvaluationBatch,
    EvaluationCancel,
    EvaluationRequeue,
    KeyCreate,
    KeyRevoke,
    EvaluationList,
    EvaluationGet,
    EvaluationEvents,
    EvaluationOutput,
    QueueGet,
    DeadLetterList,
    KeyList,
    MeGet,
    AuditList,
    /// A call that authentication refused.
    AuthFailed,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::EvaluationSubmit,
        Action::EvaluationBatch,
        Action::EvaluationCancel,
        Action::EvaluationRequeue,
        Action::KeyCreate,
        Action::KeyRevoke,
        Action::EvaluationList,
        Action::EvaluationGet,
        Action::EvaluationEvents,
        Action::EvaluationOutput,
        Action::QueueGet,
        Action::DeadLetterList,
        Action::KeyList,
        Action::MeGet,
        Action::AuditList,
        Action::AuthFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::EvaluationSubmit => "evaluation.submit",
            Action::EvaluationBatch => "evaluation.batch",
            Action::EvaluationCancel => "evaluation.cancel",
            Action::EvaluationRequeue => "evaluation.requeue",
            Action::KeyCreate => "key.create",
            Action::KeyRevoke => "key.revoke",
            Action::EvaluationList => "evaluation.list",
            Action::EvaluationGet => "evaluation.get",
            Action::EvaluationEvents => "evaluation.events",
            Action::EvaluationOutput => "evaluation.output",
            Action::QueueGet => "queue.get",
            Action::DeadLetterList => "dead_letter.list",
            Action::KeyList => "key.list",
            Action::MeGet => "me.get",
            Action::AuditList => "audit.list",
            Action::AuthFailed => "auth.failed",
        }
    }

    /// Whether it changes state (a command).
    pub fn is_command(self) -> bool {
        matches!(
            self,
            Action::EvaluationSubmit
                | Action::EvaluationBatch
                | Action::EvaluationCancel
                | Action::EvaluationRequeue
                | Action::KeyCreate
                | Action::KeyRevoke
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_resource_dot_verb() {
        let mut seen = std::collections::BTreeSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a.as_str()), "{a}");
            let (resource, verb) = a.as_str().split_once('.').unwrap();
            assert!(!resource.is_empty() && !verb.is_empty());
        }
    }
}
