-- What the processors derive (see docs/schema.md), and the failed_events table for dead letters.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS name String AFTER event,
    ADD COLUMN IF NOT EXISTS ip String AFTER user_agent,
    ADD COLUMN IF NOT EXISTS browser LowCardinality(String),
    ADD COLUMN IF NOT EXISTS browser_version LowCardinality(String),
    ADD COLUMN IF NOT EXISTS os LowCardinality(String),
    ADD COLUMN IF NOT EXISTS os_version LowCardinality(String),
    ADD COLUMN IF NOT EXISTS device LowCardinality(String),
    ADD COLUMN IF NOT EXISTS is_bot Bool,
    ADD COLUMN IF NOT EXISTS country LowCardinality(String),
    ADD COLUMN IF NOT EXISTS region LowCardinality(String),
    ADD COLUMN IF NOT EXISTS city LowCardinality(String),
    ADD COLUMN IF NOT EXISTS latitude Nullable(Float32),
    ADD COLUMN IF NOT EXISTS longitude Nullable(Float32),
    ADD COLUMN IF NOT EXISTS url String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS url_host LowCardinality(String),
    ADD COLUMN IF NOT EXISTS url_path String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS url_query String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS referrer String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS referrer_host LowCardinality(String),
    ADD COLUMN IF NOT EXISTS referrer_medium LowCardinality(String),
    ADD COLUMN IF NOT EXISTS referrer_source LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_source LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_medium LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_campaign LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_term String,
    ADD COLUMN IF NOT EXISTS utm_content String
;;
CREATE TABLE IF NOT EXISTS {db}.failed_events
(
    failed_at        DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    step             LowCardinality(String),
    reason           LowCardinality(String),
    path             String,
    detail           String,
    message_id       String,
    origin_topic     LowCardinality(String),
    origin_partition UInt16,
    origin_offset    UInt64,
    payload          String CODEC(ZSTD(3)),
    kafka_partition  UInt16,  -- where the dead letter sits in the dead-letter topic
    kafka_offset     UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (reason, failed_at)
TTL toDateTime(failed_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000
