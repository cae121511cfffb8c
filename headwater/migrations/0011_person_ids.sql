-- Which person each merged distinct id belongs to (headwater/identity.py), loaded from the identity
-- role's changelog (headwater.identity). A ReplacingMergeTree on version: an id's row with the highest
-- version is its person now; older rows, until merged away, are the persons it had before. The current
-- mapping is
--     SELECT visitor_hash, argMax(person_hash, version) AS person_hash FROM person_ids GROUP BY visitor_hash
-- and an id without a row (never merged) is a person of its own: person_hash = visitor_hash. Joined to
-- events (or sessions) on visitor_hash, that counts persons without rewriting an event.
CREATE TABLE IF NOT EXISTS {db}.person_ids
(
    distinct_id      String,
    visitor_hash     UInt64 MATERIALIZED cityHash64(distinct_id),
    person_id        String,
    person_hash      UInt64 MATERIALIZED cityHash64(person_id),
    is_identified    Bool,
    version          UInt64,
    merged_at        DateTime64(3, 'UTC'),
    kafka_partition  UInt16,
    kafka_offset     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY visitor_hash
