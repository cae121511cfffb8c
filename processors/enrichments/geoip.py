"""IP -> country, region, city, latitude and longitude from any MaxMind-format database (GeoLite2
City, DB-IP Lite City, or one you build), read with maxminddb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import maxminddb


class GeoIPError(Exception):
    """The database is missing or unreadable: a start-up error."""


class GeoIP:
    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise GeoIPError(f"GeoIP database {path!r} does not exist")
        try:
            self.reader = maxminddb.open_database(path)
            self.reader.get("127.0.0.1")
        except (maxminddb.InvalidDatabaseError, OSError, ValueError) as exc:
            raise GeoIPError(f"GeoIP database {path!r} is not a readable MaxMind database: {exc}") from exc

    def lookup(self, ip: str) -> dict | None:
        try:
            record: Any = self.reader.get(ip)
        except ValueError:  # not an IP address
            return None
        if not isinstance(record, dict):
            return None
        location = record.get("location") or {}
        subdivisions = record.get("subdivisions") or [{}]
        return {
            "country": (record.get("country") or {}).get("iso_code", ""),
            "region": (subdivisions[0].get("names") or {}).get("en", ""),
            "city": ((record.get("city") or {}).get("names") or {}).get("en", ""),
            "latitude": location.get("latitude"),
            "longitude": location.get("longitude"),
        }
