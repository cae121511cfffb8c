"""``headwater import``: the team's own production data (PostgreSQL, MySQL, CSV, Parquet) loaded into a
project's ClickHouse database beside its events (docs/imports.md)."""
