"""What a GeoIP database's licence asks of whoever shows data derived from it.

MaxMind's GeoLite2 (its End User License Agreement) and DB-IP's Lite databases (Creative Commons
Attribution 4.0) both require an attribution wherever the data is shown; MaxMind's paid GeoIP2
databases do not. The database's own metadata names its type; a database that cannot be read (the
dashboard may run where the file is not mounted) is recognised by its file name, as the two
publishers name their files.
"""

from __future__ import annotations

from pathlib import Path

import maxminddb

MAXMIND = ("This product includes GeoLite2 data created by MaxMind, available from "
           "https://www.maxmind.com")
DB_IP = "IP Geolocation by DB-IP: https://db-ip.com (CC BY 4.0)"


def attribution(path: str) -> str:
    """The attribution the database at ``path`` requires; empty when it requires none or is unknown."""
    if not path:
        return ""
    kind = Path(path).name
    try:
        with maxminddb.open_database(path) as reader:
            kind = reader.metadata().database_type
    except (OSError, ValueError, maxminddb.InvalidDatabaseError):
        pass
    lowered = kind.lower()
    if lowered.startswith("geolite2"):
        return MAXMIND
    if lowered.startswith("dbip") or "db-ip" in lowered:
        return DB_IP
    return ""
