-- Sessions: every event carries its session; the sessions table holds one live row per session.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS session_id String AFTER user_id,
    ADD COLUMN IF NOT EXISTS session_seq UInt32 AFTER session_id
;;
-- Each update of a session writes the previous row again with sign -1 (same version) and the new
-- state with sign +1 (the next version); pairs collapse on merge. Query with sum(sign) or FINAL:
-- see docs/schema.md.
CREATE TABLE IF NOT EXISTS {db}.sessions
(
    project_id      LowCardinality(String),
    session_id      String,
    visitor_id      String,
    user_id         String,
    start_at        DateTime64(3, 'UTC'),
    end_at          DateTime64(3, 'UTC'),
    duration_s      UInt32,
    pageviews       UInt32,
    events          UInt32,
    entry_page      String CODEC(ZSTD(3)),
    exit_page       String CODEC(ZSTD(3)),
    referrer        String CODEC(ZSTD(3)),
    referrer_source LowCardinality(String),
    referrer_medium LowCardinality(String),
    utm_source      LowCardinality(String),
    utm_medium      LowCardinality(String),
    utm_campaign    LowCardinality(String),
    utm_term        String,
    utm_content     String,
    country         LowCardinality(String),
    device          LowCardinality(String),
    browser         LowCardinality(String),
    os              LowCardinality(String),
    is_bounce       Bool,
    is_new_visitor  Bool,
    sign            Int8,
    version         UInt32,
    kafka_partition UInt16,  -- where the row came from in the sessions topic
    kafka_offset    UInt64
)
ENGINE = VersionedCollapsingMergeTree(sign, version)
PARTITION BY toYYYYMM(start_at)
ORDER BY (toDate(start_at), visitor_id, session_id)
SETTINGS non_replicated_deduplication_window = 10000
