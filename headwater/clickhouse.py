"""ClickHouse access. Every role talks to ClickHouse through clickhouse-driver's native protocol."""

from __future__ import annotations

import re

from clickhouse_driver import Client

from headwater.settings import Settings

_PROJECT_ID = re.compile(r"[a-z0-9_]{1,48}")


def make_client(settings: Settings, database: str = "default", **settings_overrides) -> Client:
    return Client(
        settings.clickhouse_host,
        port=settings.clickhouse_port,
        user=settings.clickhouse_user,
        password=settings.clickhouse_password,
        database=database,
        secure=settings.clickhouse_secure,
        ca_certs=settings.clickhouse_ca_certs or None,
        settings=settings_overrides,
    )


def project_database(project_id: str) -> str:
    """The ClickHouse database that holds one project's tables."""
    if not isinstance(project_id, str) or not _PROJECT_ID.fullmatch(project_id):
        raise ValueError(f"project id {project_id!r} must match {_PROJECT_ID.pattern}")
    return f"hw_{project_id}"
