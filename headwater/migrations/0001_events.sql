-- One row per accepted event. Times are UTC with millisecond precision.
-- The layout is refined by later migrations; docs/schema.md gives the reasons and how to query it.
-- ReplacingMergeTree with the message id last in the key: a client's retry of an event (same
-- messageId, day, event and visitor) collapses into one row when parts merge; read with FINAL (or
-- count distinct message ids) to see that before the merge. Replays of a Kafka range never insert
-- twice at all: see indexer/service.py.
CREATE TABLE IF NOT EXISTS {db}.events
(
    project_id     LowCardinality(String),
    message_id     String,
    type           LowCardinality(String),
    event          LowCardinality(String),
    anonymous_id   String,
    user_id        String,
    -- the visitor (anonymous id, else user id) as a number: what queries group and count visitors by
    visitor_hash   UInt64 MATERIALIZED cityHash64(if(anonymous_id != '', anonymous_id, user_id)),
    timestamp      DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    sent_at        Nullable(DateTime64(3, 'UTC')),
    received_at    DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    context        String CODEC(ZSTD(3)),
    properties     String CODEC(ZSTD(3)),
    traits         String CODEC(ZSTD(3)),
    user_agent     String CODEC(ZSTD(3)),
    request_id     String,
    kafka_partition UInt16,
    kafka_offset   UInt64,
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), event, visitor_hash, cityHash64(message_id))
SAMPLE BY visitor_hash
SETTINGS non_replicated_deduplication_window = 10000
