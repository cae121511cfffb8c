-- The alerts each project's rules raised (headwater/alerts.py), loaded from headwater.alerts: one row
-- per alert, its id the same however often the alerts role worked it out, so a row loaded twice
-- collapses into one. `at` is the event time of what raised it (a threshold's window end), `raised_at`
-- when the role raised it; `quiet` marks one raised in the project's quiet hours (recorded, not sent).
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id         String,
    rule             LowCardinality(String),
    kind             LowCardinality(String),
    subject          String,
    at               DateTime64(3, 'UTC'),
    raised_at        DateTime64(3, 'UTC'),
    text             String,
    quiet            Bool,
    details          String CODEC(ZSTD(1)),
    kafka_partition  UInt16,
    kafka_offset     UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (toDate(at), rule, alert_id)
