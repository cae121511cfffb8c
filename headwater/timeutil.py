"""Parsing and formatting the ISO-8601 times that events carry. Everything is UTC."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime, or ``None`` when absent or unreadable.

    A time without a zone is taken as UTC.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def epoch_ms(value: object) -> int | None:
    parsed = parse_time(value)
    return None if parsed is None else int(parsed.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@functools.lru_cache(maxsize=4096)  # the collector formats one request's receive time for each of its events
def iso_ms(ms: int) -> str:
    """``2026-11-22T06:44:05.123Z``"""
    return from_epoch_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
