"""A small MaxMind-format City database built for the tests with mmdb-writer."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# Documentation and test ranges, with made-up but plausible places.
PLACES = {
    "81.2.69.0/24": ("GB", "England", "London", 51.5142, -0.0931),
    "203.0.113.0/24": ("AU", "New South Wales", "Sydney", -33.8688, 151.2093),
    "2001:db8:1::/48": ("DE", "Berlin", "Berlin", 52.52, 13.405),
}


def build_city_database(path: Path, places: dict | None = None, database_type: str = "GeoLite2-City") -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type, languages=["en"],
                        description={"en": "Headwater test database"})
    for network, (country, region, city, lat, lon) in (places or PLACES).items():
        writer.insert_network(IPSet([network]), {
            "country": {"iso_code": country}, "subdivisions": [{"names": {"en": region}}],
            "city": {"names": {"en": city}}, "location": {"latitude": lat, "longitude": lon},
        })
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path
