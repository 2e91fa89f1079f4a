//! The `Command` trait and the one executor of commands.

use crate::audit::Audited;
use crate::{Action, Caller, Context, Service};
use assay_api::ApiError;
use assay_domain::Role;
use tracing::Instrument;

/// A state-changing operation.
#[async_trait::async_trait]
pub trait Command: Send + Sync + Sized + 'static {
    /// What the audit log calls it.
    const ACTION: Action;
    /// The least role that may run it.
    const ROLE: Role;
    type Output: Send;

    /// The resource it acts on, when the request names one (cancel, requeue, revoke).
    fn target(&self) -> Option<&str> {
        None
    }

    /// Checks that the caller may see what the command acts on (before the role: another
    /// tenant's evaluation is a 404 for every role, exactly like one that does not exist).
    async fn resolve(&self, _svc: &Service, _caller: &Caller) -> Result<(), ApiError> {
        Ok(())
    }

    /// Runs it; the role was checked.
    async fn run(self, svc: &Service, caller: &Caller) -> Result<Self::Output, ApiError>;

    /// What the audit log records of a success.
    fn audited(out: &Self::Output) -> Audited;
}

impl Service {
    /// Runs a command for an authenticated caller and records it in the audit log.
    pub async fn execute<C: Command>(&self, ctx: &Context, cmd: C) -> Result<C::Output, ApiError> {
        let span = tracing::info_span!(
            "command",
            action = C::ACTION.as_str(),
            request_id = %ctx.meta.request_id,
            caller = %ctx.caller.key_id,
        );
        async {
            let target = cmd.target().map(str::to_string);
            let result = async {
                cmd.resolve(self, &ctx.caller).await?;
                ctx.caller.require(C::ROLE)?;
                cmd.run(self, &ctx.caller).await
            }
            .await;
            match &result {
                Ok(out) => {
                    let mut audited = C::audited(out);
                    audited.target = audited.target.or(target);
                    self.record_ok(&ctx.meta, &ctx.caller, C::ACTION, audited)
                        .await;
                }
                Err(e) => {
                    self.record_failure(&ctx.meta, &ctx.caller, C::ACTION, target.as_deref(), e)
                        .await;
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    /// A request for command `C` that could not even be read (malformed body, query or header):
    /// recorded like a failed command. A caller whose role may not run `C` at all is told so
    /// (403) rather than what was wrong with the request.
    pub async fn rejected<C: Command>(
        &self,
        ctx: &Context,
        target: Option<&str>,
        err: ApiError,
    ) -> ApiError {
        let err = match ctx.caller.require(C::ROLE) {
            Err(denied) => denied,
            Ok(()) => err,
        };
        self.record_failure(&ctx.meta, &ctx.caller, C::ACTION, target, &err)
            .await;
        err
    }
}
