-- Output is stored once: in the event log (`stdout` and `stderr` events), which is what
-- `Store::output` reads. The SQLite backend's 0004 strips the copies that earlier versions kept
-- in the `result` column and the `result` event; no PostgreSQL database ever held them, so this
-- version changes nothing here. It exists so that both backends number their schemas alike.
SELECT 1;
