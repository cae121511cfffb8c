-- Databases created before 0001–0003 took their current form get the columns those now create:
-- the visitor hash the queries group by, and the Kafka position of every row, which the indexer
-- uses to never load a record twice. On newer databases every statement is a no-op. (The events
-- table's engine and sorting key, ReplacingMergeTree by message id, cannot change in place: see
-- docs/operations.md, "Upgrading an events table".)
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS visitor_hash UInt64 MATERIALIZED cityHash64(if(anonymous_id != '', anonymous_id, user_id))
        AFTER user_id
;;
ALTER TABLE {db}.sessions
    ADD COLUMN IF NOT EXISTS kafka_partition UInt16,
    ADD COLUMN IF NOT EXISTS kafka_offset UInt64
;;
ALTER TABLE {db}.failed_events
    ADD COLUMN IF NOT EXISTS kafka_partition UInt16 AFTER payload,
    ADD COLUMN IF NOT EXISTS kafka_offset UInt64 AFTER kafka_partition
