"""How numbers, shares, durations and times read on the page (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def count(value) -> str:
    return f"{int(value or 0):,}"


def percent(value) -> str:
    return f"{float(value or 0) * 100:.1f}%"


def duration(seconds) -> str:
    seconds = int(round(float(seconds or 0)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def change(value) -> str:
    """A relative change, signed; an em dash when there was nothing to compare to."""
    if value is None:
        return "—"
    return f"{'+' if value >= 0 else '−'}{abs(value) * 100:.0f}%"


def figure(value, kind: str) -> str:
    return {"count": count, "percent": percent, "duration": duration}[kind](value)


def when(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def when_ms(value) -> str:
    """Milliseconds since 1970 as a UTC time."""
    return when(datetime.fromtimestamp(value / 1000, UTC)) if isinstance(value, int) else ""


def number(value) -> str:
    """A count with thousands separators, or a measure with two decimals."""
    value = value or 0
    return f"{value:,}" if isinstance(value, int) else f"{float(value):,.2f}"


def period(epoch: int, interval: str, tz: str) -> str:
    """A trend's period start (seconds) as the page names it: an hour in the view's time zone, or a day
    (the start of a week or month)."""
    if interval == "hour":
        return datetime.fromtimestamp(epoch, ZoneInfo(tz)).strftime("%Y-%m-%d %H:00")
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


def plain(value):
    """A value as JSON can carry it."""
    return value.isoformat() if isinstance(value, (datetime, date)) else value


FILTERS = {"count": count, "percent": percent, "duration": duration, "change": change, "figure": figure,
           "when": when, "when_ms": when_ms, "number": number, "period": period}
