-- Admission across processes (ADR 0010): each API key's token bucket lives in the store, charged
-- (under the row's lock) in the transaction that inserts the submission.
CREATE TABLE rate_buckets (
    bucket TEXT   PRIMARY KEY,
    units  BIGINT NOT NULL,
    at_ms  BIGINT NOT NULL
);

-- Retention (`assay gc`): the oldest finished evaluations first, without scanning the rest.
CREATE INDEX evaluations_finished ON evaluations (finished_at, pk) WHERE finished_at IS NOT NULL;
