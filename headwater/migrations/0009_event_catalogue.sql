-- The event catalogue: per day, each event name (with its call type), each top-level property (and,
-- for identify and group calls, trait as "traits.NAME") with the JSON type it was seen with, how many
-- events carried it and when first and last. Kept by ClickHouse as events are inserted (a
-- materialized view), so reading it never scans `events`; rows written before this migration are
-- not in it (docs/schema.md says how to fill it from them). property = '' is the event itself.
-- The columns the view reads, for databases from before 0001 took its current form (a no-op on others)
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS type LowCardinality(String),
    ADD COLUMN IF NOT EXISTS properties String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS traits String CODEC(ZSTD(3))
;;
CREATE TABLE IF NOT EXISTS {db}.event_catalogue
(
    day         Date,
    event       LowCardinality(String),
    type        LowCardinality(String),
    property    LowCardinality(String),
    value_type  LowCardinality(String),
    events      SimpleAggregateFunction(sum, UInt64),
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (event, type, property, value_type, day)
;;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.event_catalogue_mv TO {db}.event_catalogue AS
SELECT toDate(timestamp) AS day, event, type, field.1 AS property,
       if(property = '', '', lower(toString(JSONType(field.2)))) AS value_type,
       count() AS events, min(timestamp) AS first_seen, max(timestamp) AS last_seen
FROM {db}.events
ARRAY JOIN arrayConcat([('', '')], JSONExtractKeysAndValuesRaw(properties),
                       if(type IN ('identify', 'group'),
                          arrayMap(t -> ('traits.' || t.1, t.2), JSONExtractKeysAndValuesRaw(traits)), [])) AS field
GROUP BY day, event, type, property, value_type
