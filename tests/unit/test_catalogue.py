"""The event catalogue's document: rows of the catalogue query nested by event, with schemas."""

from __future__ import annotations

from datetime import UTC, datetime

from analytics.catalogue import catalogue_document


def at(day: int) -> datetime:
    return datetime(2026, 12, day, 10, tzinfo=UTC)


def test_rows_nest_by_event_with_types_volumes_and_schemas():
    rows = [("Order Completed", "track", "", "", 6, at(1), at(3)),
            ("Order Completed", "track", "coupon", "string", 4, at(1), at(2)),
            ("Order Completed", "track", "total", "double", 2, at(2), at(2)),
            ("Order Completed", "track", "total", "int64", 4, at(1), at(3)),
            ("page", "page", "", "", 9, at(4), at(4))]
    columns = ("event", "type", "property", "value_type", "events", "first_seen", "last_seen")
    document = catalogue_document([dict(zip(columns, row)) for row in rows], {"Order Completed": [{"version": "1-0-0"}, {"version": "1-0-1"}]})
    assert [(e["event"], e["events"]) for e in document] == [("page", 9), ("Order Completed", 6)]
    order = document[1]
    assert order["schema_versions"] == ["1-0-0", "1-0-1"] and document[0]["schema_versions"] == []
    assert order["first_seen"] == "2026-12-01T10:00:00.000Z" and order["last_seen"] == "2026-12-03T10:00:00.000Z"
    assert order["properties"] == [
        {"name": "total", "types": {"double": 2, "int64": 4}, "events": 6, "first_seen": "2026-12-01T10:00:00.000Z",
         "last_seen": "2026-12-03T10:00:00.000Z"},
        {"name": "coupon", "types": {"string": 4}, "events": 4, "first_seen": "2026-12-01T10:00:00.000Z",
         "last_seen": "2026-12-02T10:00:00.000Z"}]
