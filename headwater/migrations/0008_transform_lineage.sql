-- Lineage of the project's transformations: NAME@VERSION of each transform step an event went
-- through, in order (processors/transform.py; docs/schema.md).
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS transforms Array(LowCardinality(String)) CODEC(ZSTD(1))
