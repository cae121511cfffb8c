-- One row per accepted event. Times are UTC with millisecond precision.
-- The layout is refined by later migrations; see docs/schema.md for how to query it.
CREATE TABLE IF NOT EXISTS {db}.events
(
    project_id     LowCardinality(String),
    message_id     String,
    type           LowCardinality(String),
    event          LowCardinality(String),
    anonymous_id   String,
    user_id        String,
    timestamp      DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    sent_at        Nullable(DateTime64(3, 'UTC')),
    received_at    DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    context        String CODEC(ZSTD(3)),
    properties     String CODEC(ZSTD(3)),
    traits         String CODEC(ZSTD(3)),
    user_agent     String CODEC(ZSTD(3)),
    request_id     String,
    kafka_partition UInt16,
    kafka_offset   UInt64,
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), event, cityHash64(anonymous_id), timestamp)
SETTINGS non_replicated_deduplication_window = 10000
