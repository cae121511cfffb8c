-- For the dashboard's overview (measured on 10M events: docs/performance.md, "Dashboard overview"):
-- sessions get the visitor hash the events have, so counting a session's visitors hashes no strings
-- (uniqExact over the String id took 100 ms per million sessions, over the hash 34 ms); and the events'
-- timestamp, which every query filters on, is stored with LZ4 instead of ZSTD(1): decoding it was the
-- largest part of a month's scan (+1.6 bytes per event on disk). Parts written before keep ZSTD
-- until they are merged.
ALTER TABLE {db}.sessions
    ADD COLUMN IF NOT EXISTS visitor_hash UInt64 MATERIALIZED cityHash64(visitor_id) AFTER visitor_id
;;
ALTER TABLE {db}.events
    MODIFY COLUMN timestamp DateTime64(3, 'UTC') CODEC(LZ4)
