-- Fair claiming (DESIGN.md 5, issue 4): the claim skips tenants at their running cap and
-- prefers the tenant with the fewest running evaluations, then priority, then age.

-- The queue by tenant, each tenant's range in claim order: the tenants with queued work are
-- found with one seek each, and a tenant's best job is the first entry of its range
-- (`not_before` is in the index so that jobs in backoff are skipped without reading the rows).
CREATE INDEX evaluations_queue_tenant
    ON evaluations (tenant, priority DESC, created_at, pk, not_before)
    WHERE status = 'queued';

-- Running evaluations per tenant: few entries (at most the slots of all workers).
CREATE INDEX evaluations_running_tenant ON evaluations (tenant) WHERE status = 'running';

-- The claim no longer walks the queue in one global priority order.
DROP INDEX evaluations_claim;
