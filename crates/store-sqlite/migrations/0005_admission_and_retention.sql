-- Admission across processes (ADR 0010): each API key's token bucket lives in the store, charged
-- in the transaction that inserts the submission.
CREATE TABLE rate_buckets (
    bucket TEXT    PRIMARY KEY,
    units  INTEGER NOT NULL,
    at_ms  INTEGER NOT NULL
);

-- Retention (`assay gc`): the oldest finished evaluations first, without scanning the rest.
CREATE INDEX evaluations_finished ON evaluations (finished_at) WHERE finished_at IS NOT NULL;
