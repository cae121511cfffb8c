"""Projects: write keys, allowed origins and the enabled flag, kept in a compacted Kafka topic.

Why a compacted topic rather than a ClickHouse table: every collector replica already talks to Kafka,
and a consumer that tails the topic sees each change within milliseconds, with no polling and no
ClickHouse credentials on the public edge. Compaction keeps the latest record per project forever,
so the topic is the whole, durable state (replicated like any topic in a real cluster).
"""
