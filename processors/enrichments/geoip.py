"""IP -> country, region, city, latitude and longitude from any MaxMind-format database (GeoLite2
City, DB-IP Lite City, or one you build), read with maxminddb.

The file is refreshed in place by its publisher's updater (geoipupdate, or a monthly DB-IP download;
docs/operations.md): at most every ``reload_s`` a lookup checks whether it changed and, if so, opens
the new one, so a new database is used without a restart. One that cannot be read (still being
written) keeps the previous reader until the next check.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import maxminddb
import structlog

log = structlog.get_logger()


class GeoIPError(Exception):
    """The database is missing or unreadable: a start-up error."""


def _signature(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _open(path: str) -> maxminddb.Reader:
    if not Path(path).is_file():
        raise GeoIPError(f"GeoIP database {path!r} does not exist")
    try:
        reader = maxminddb.open_database(path)
        reader.get("127.0.0.1")
    except (maxminddb.InvalidDatabaseError, OSError, ValueError) as exc:
        raise GeoIPError(f"GeoIP database {path!r} is not a readable MaxMind database: {exc}") from exc
    return reader


class GeoIP:
    def __init__(self, path: str, reload_s: float = 60.0) -> None:
        self.path, self.reload_s = path, reload_s
        self.signature = _signature(path) if Path(path).is_file() else None
        self.reader = _open(path)
        self.checked = time.monotonic()

    def refresh(self) -> bool:
        """Open the file again if it changed since it was opened; True when the new one is in use."""
        self.checked = time.monotonic()
        try:
            signature = _signature(self.path)
        except OSError:  # being replaced: keep the database in hand
            return False
        if signature == self.signature:
            return False
        try:
            reader = _open(self.path)
        except GeoIPError as exc:
            log.warning("geoip_unreadable", path=self.path, error=str(exc), note="the previous database stays in use")
            return False
        previous, self.reader, self.signature = self.reader, reader, signature
        previous.close()
        log.info("geoip_reloaded", path=self.path, build_epoch=reader.metadata().build_epoch)
        return True

    def lookup(self, ip: str) -> dict | None:
        if time.monotonic() - self.checked >= self.reload_s:
            self.refresh()
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
