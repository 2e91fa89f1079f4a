-- Evaluations and their queue state live in one row: enqueueing is the insert itself, so the
-- queue can never disagree with the evaluations (DESIGN.md 5).
CREATE TABLE evaluations (
    -- Internal, insertion-ordered key: ties on created_at are broken by it (keyset pagination,
    -- FIFO claims).
    pk               INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    tenant           TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    language         TEXT    NOT NULL,
    entrypoint       TEXT    NOT NULL,
    files            TEXT    NOT NULL, -- JSON array of {path, content}
    stdin            TEXT    NOT NULL,
    limits           TEXT    NOT NULL, -- JSON Limits
    priority         INTEGER NOT NULL,
    labels           TEXT    NOT NULL, -- JSON object (also in evaluation_labels, for filtering)
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    result           TEXT,             -- JSON RunResult
    error            TEXT,
    worker_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key  TEXT,
    -- Queue state.
    not_before       INTEGER NOT NULL DEFAULT 0, -- claimable from (backoff)
    lease_token      TEXT,
    lease_expires_at INTEGER,
    -- Seq of the next event of this evaluation (events are gapless per evaluation).
    next_seq         INTEGER NOT NULL DEFAULT 1
);

-- Claim: best queued job first. Partial, so it only holds the queue, not the history.
CREATE INDEX evaluations_claim ON evaluations (priority DESC, created_at, pk, not_before)
    WHERE status = 'queued';
-- Reaper.
CREATE INDEX evaluations_leases ON evaluations (lease_expires_at) WHERE status = 'running';
-- Listing, newest first (the rowid `pk` ends every index entry, so ties are ordered too).
CREATE INDEX evaluations_created ON evaluations (created_at);
CREATE INDEX evaluations_tenant_created ON evaluations (tenant, created_at);
CREATE INDEX evaluations_status_created ON evaluations (status, created_at);
CREATE INDEX evaluations_tenant_status_created ON evaluations (tenant, status, created_at);
-- Idempotency keys are per tenant.
CREATE UNIQUE INDEX evaluations_idempotency ON evaluations (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Label filter: one row per label, ordered like the listing (created_at is copied from the
-- evaluation and never changes), so a label's newest evaluations are a range scan.
CREATE TABLE evaluation_labels (
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    pk         INTEGER NOT NULL REFERENCES evaluations (pk) ON DELETE CASCADE,
    PRIMARY KEY (key, value, created_at, pk)
) WITHOUT ROWID;
CREATE INDEX evaluation_labels_pk ON evaluation_labels (pk);

CREATE TABLE events (
    evaluation_id TEXT    NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (evaluation_id, seq)
) WITHOUT ROWID;

CREATE TABLE workers (
    id         TEXT    PRIMARY KEY,
    hostname   TEXT    NOT NULL,
    runtime    TEXT    NOT NULL,
    slots      INTEGER NOT NULL,
    running    INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
