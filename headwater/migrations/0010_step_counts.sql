-- Events in and out of each step of the project's flow, a minute at a time (processing time), as the
-- processes that run the steps counted them (headwater/step_counts.py). One row per process, step and
-- minute it flushed: sum them. step is the slip name (validate, transform:NAME, ...) or mediator.
-- Counted at least once: a poll read again after a crash is counted again. Kept 90 days.
CREATE TABLE IF NOT EXISTS {db}.step_counts
(
    minute           DateTime('UTC'),
    step             LowCardinality(String),
    events_in        UInt64,
    events_out       UInt64,
    dropped          UInt64,
    dead_lettered    UInt64,
    kafka_partition  UInt16,
    kafka_offset     UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, step)
TTL minute + INTERVAL 90 DAY
