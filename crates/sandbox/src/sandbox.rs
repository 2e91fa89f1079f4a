//! The seam between Assay and whatever runs programs: the [`Sandbox`] trait and its vocabulary
//! ([`RunRequest`] in, [`RunEvent`]s while it runs, a [`RunResult`] out).
//!
//! [`crate::Engine`] implements it with real OCI sandboxes; the `fake` feature's
//! `ScriptedSandbox` implements it without root, for the tests of the crates above. Both pass
//! the same conformance suite (`conformance` feature).

use crate::runtime::RuntimeKind;
use assay_domain::{Limits, OutputStream, Program, RunResult};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// One program to run.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub program: Program,
    /// Name of a registered environment (`python` by default).
    pub environment: String,
    /// Extra arguments after the entrypoint.
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    pub limits: Limits,
    /// Bytes of each stream the result keeps (`None`: all of it, up to the output limit).
    /// Every byte under the limit is sent as [`RunEvent::Output`] either way, so a caller that
    /// stores the events itself (the worker, to the blob store) keeps only a preview in memory.
    pub retain_output: Option<u64>,
    /// Bytes of output events the receiver may have waiting (see [`OutputBudget`]); `None`:
    /// no bound (the receiver keeps up, or holds the whole output anyway).
    pub output_budget: Option<OutputBudget>,
}

/// How many bytes of [`RunEvent::Output`] may be on their way to the receiver before it has
/// stored them. The engine takes budget before it reads a pipe and the receiver gives back
/// each chunk's bytes once stored ([`OutputBudget::release`]): a program that writes faster
/// than its output is stored then waits on its pipe, as on a slow terminal, instead of the
/// output piling up in memory. The wall-time limit and cancellation still end it meanwhile.
#[derive(Clone, Debug)]
pub struct OutputBudget(Arc<tokio::sync::Semaphore>);

impl OutputBudget {
    pub fn new(bytes: usize) -> OutputBudget {
        OutputBudget(Arc::new(tokio::sync::Semaphore::new(bytes)))
    }

    /// The receiver stored `bytes` of output events: the sandbox may send that many more.
    pub fn release(&self, bytes: usize) {
        self.0.add_permits(bytes);
    }

    /// The receiver stopped taking output (it gave up on the run): the sandbox reads on
    /// without waiting for budget.
    pub fn close(&self) {
        self.0.close();
    }

    /// Waits until `bytes` may be sent, and takes them (at once when closed).
    pub(crate) async fn take(&self, bytes: u32) {
        if let Ok(permit) = self.0.acquire_many(bytes).await {
            permit.forget();
        }
    }

    /// Bytes taken by [`OutputBudget::take`] and not sent after all.
    pub(crate) fn unused(&self, bytes: usize) {
        if bytes > 0 {
            self.0.add_permits(bytes);
        }
    }
}

/// What a running sandbox reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The runtime process started (its host PID, for diagnostics and crash tests). Only the
    /// engine sends it; a sandbox without a runtime process (a fake) does not.
    Started {
        runtime: RuntimeKind,
        sandbox_id: String,
        runtime_pid: u32,
    },
    /// A chunk of output, in order per stream, never beyond the output limit. The result's
    /// `stdout`/`stderr` are the concatenation of these chunks (as lossy UTF-8), cut at
    /// `RunRequest::retain_output` bytes.
    Output { stream: OutputStream, data: Vec<u8> },
}

/// Runs programs in single-use sandboxes. Object-safe: the worker holds an
/// `Arc<dyn Sandbox>`.
#[async_trait::async_trait]
pub trait Sandbox: Send + Sync + 'static {
    /// The runtime's name as results and worker registrations report it (`runc`, `crun`,
    /// `runsc`; a fake says `fake`).
    fn runtime_name(&self) -> &str;

    /// Runs one program in a fresh sandbox; output chunks go to `events` as they come; `cancel`
    /// kills it at once. Never panics, never loses a run: platform failures are an `errored`
    /// RunResult. Nothing of the run outlives the call.
    async fn run(
        &self,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult;
}

/// A shared sandbox is a sandbox, so that code generic over `S: Sandbox` takes an
/// `Arc<dyn Sandbox>` too.
#[async_trait::async_trait]
impl<S: Sandbox + ?Sized> Sandbox for Arc<S> {
    fn runtime_name(&self) -> &str {
        (**self).runtime_name()
    }

    async fn run(
        &self,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult {
        (**self).run(req, events, cancel).await
    }
}
