//! What a run measured, as the phases hand it to the report.

use crate::baseline::SandboxBatch;
use crate::batch::BatchReport;
use crate::get::GetReport;
use crate::latency::E2e;
use crate::sse::SseReport;

/// The settings of a run (the flags, with the defaults of `--quick` or of a full run).
pub(crate) struct Settings {
    pub(crate) runs: usize,
    pub(crate) evaluations: usize,
    pub(crate) get_time: std::time::Duration,
    pub(crate) get_slices: usize,
    pub(crate) connections: usize,
    pub(crate) sse_lines: usize,
    /// End-to-end runs on the API-and-workers topology.
    pub(crate) remote_runs: usize,
    pub(crate) warmup: usize,
    pub(crate) workers: usize,
    pub(crate) worker_slots: usize,
}

/// A batch, and the sandbox-alone measurements taken just before and just after it.
pub(crate) struct Batch {
    pub(crate) report: BatchReport,
    /// How the store was served (`serve --slots 2`, `API + 2 workers x 1 slot`).
    pub(crate) topology: String,
    /// Indexes into [`Measured::baselines`].
    pub(crate) before: usize,
    pub(crate) after: usize,
}

/// What was measured on one store.
pub(crate) struct StoreResult {
    pub(crate) label: String,
    pub(crate) shown: String,
    pub(crate) postgres: bool,
    /// One process (`serve --slots 2`).
    pub(crate) e2e: E2e,
    /// Own CPU of the PostgreSQL backends per end-to-end run, ms (idle polling included).
    pub(crate) e2e_pg_cpu: Option<f64>,
    pub(crate) get: Option<GetReport>,
    pub(crate) sse_local: SseReport,
    pub(crate) batch_local: Option<Batch>,
    /// An API node and worker processes.
    pub(crate) batch_workers: Option<Batch>,
    pub(crate) e2e_workers: Option<E2e>,
    pub(crate) sse_workers: Option<SseReport>,
}

/// Everything measured, for the report.
pub(crate) struct Measured {
    /// The sandbox alone, `print('hello')` one at a time, interleaved with the end-to-end runs.
    pub(crate) hello: SandboxBatch,
    /// The sandbox alone, `print(1)` two at a time, around each batch.
    pub(crate) baselines: Vec<(String, SandboxBatch)>,
    pub(crate) stores: Vec<StoreResult>,
    pub(crate) load_start: Option<f64>,
    pub(crate) load_end: Option<f64>,
}
