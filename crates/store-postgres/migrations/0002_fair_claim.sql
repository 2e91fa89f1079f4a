-- Fair claiming (ADR 0006): the claim skips tenants at their running cap and prefers the
-- tenant with the fewest running evaluations, then priority, then age (assay_store::claim).

-- The queue by tenant, each tenant's range in claim order: the tenants with queued work are
-- found with one seek each (a skip scan), and a tenant's best job is the first entry of its
-- range that is out of backoff (not_before is in the index, so jobs in backoff are skipped
-- without reading the rows).
CREATE INDEX queue_tenant ON queue (tenant, priority DESC, created_at, pk) INCLUDE (not_before);

-- Claims take turns on a transaction-scoped advisory lock (assay-store-postgres, claim.rs):
-- the fair pick depends on every tenant's running count, so the decision is serialised; no
-- table holds the lock, and nothing but a claim takes it.
