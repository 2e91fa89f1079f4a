-- Output is stored once: in the event log (`stdout` and `stderr` events), which is what
-- `Store::output` reads. Until now every finished evaluation also held it in its `result`
-- column and in its `result` event. Strip both copies; nothing else changes shape.

-- The result record without its output (`assay_store::record::RunRecord`). Its byte counts
-- (`stdout_bytes`, `stderr_bytes`, added with this version) stay absent on these rows: unknown.
UPDATE evaluations
SET result = json_remove(result, '$.stdout', '$.stderr')
WHERE result IS NOT NULL AND json_valid(result);

-- The result event says how the evaluation ended and nothing more (`EventPayload::Result`); it
-- also held the final row (result with output, error, attempts), which the row itself keeps.
-- A scan of the whole log, once: `kind` comes before `data` in the row, so output chunks are
-- not read.
UPDATE events
SET data = json_object('status', json_extract(data, '$.status'))
WHERE kind = 'result' AND json_valid(data);
