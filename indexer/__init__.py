"""The indexer: batched, idempotent loads from the index topic into ClickHouse."""
