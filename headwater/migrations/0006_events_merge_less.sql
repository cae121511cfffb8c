-- Events parts are merged in steps of about ten similar parts instead of five (ClickHouse's default):
-- each row is rewritten fewer times as its part grows, for a few more parts per partition. At a
-- steady 20,000 events/s on two cores, with everything sharing them, ClickHouse used 12.3 µs of CPU
-- an event against 18.0–24.8 (docs/performance.md, "Merging in larger steps"). An expert setting
-- (`merge_selector_base`) of recent ClickHouse releases: 26.9 here, in the compose file and in the
-- chart. Setting it again is harmless.
ALTER TABLE {db}.events MODIFY SETTING merge_selector_base = 10
