"""A GeoIP database replaced by its updater is used without a restart, a half-written one is not, and
the attribution its licence requires is known from the database (or its file name)."""

from __future__ import annotations

import os

import pytest

from headwater.geodata import DB_IP, MAXMIND, attribution
from processors.enrichments.geoip import GeoIP
from tests.geoip import PLACES, build_city_database


def replace(path, places=None, database_type="GeoLite2-City") -> None:
    """As geoipupdate does: write a new file beside it, then rename it over the old one."""
    build_city_database(path.with_suffix(".new"), places, database_type)
    os.replace(path.with_suffix(".new"), path)


def test_a_replaced_database_is_used_at_the_next_check(tmp_path):
    path = build_city_database(tmp_path / "GeoLite2-City.mmdb")
    geoip = GeoIP(str(path), reload_s=3600)
    assert geoip.lookup("81.2.69.10")["city"] == "London"
    replace(path, {**PLACES, "81.2.69.0/24": ("GB", "England", "Leeds", 53.8, -1.55)})
    assert geoip.lookup("81.2.69.10")["city"] == "London"  # not checked yet
    geoip.reload_s = 0
    assert geoip.lookup("81.2.69.10")["city"] == "Leeds"


def test_a_half_written_database_keeps_the_previous_one(tmp_path):
    path = build_city_database(tmp_path / "GeoLite2-City.mmdb")
    geoip = GeoIP(str(path), reload_s=0)
    path.with_suffix(".new").write_bytes(path.read_bytes()[:100])
    os.replace(path.with_suffix(".new"), path)
    assert geoip.lookup("203.0.113.7")["city"] == "Sydney"
    replace(path, {"203.0.113.0/24": ("AU", "Victoria", "Melbourne", -37.8, 144.9)})
    assert geoip.lookup("203.0.113.7")["city"] == "Melbourne"  # and the next good one is taken


@pytest.mark.parametrize("database_type, expected", [
    ("GeoLite2-City", MAXMIND), ("DBIP-City-Lite", DB_IP), ("GeoIP2-City", ""), ("Headwater-Test", ""),
])
def test_the_attribution_comes_from_the_database_type(tmp_path, database_type, expected):
    path = build_city_database(tmp_path / "city.mmdb", database_type=database_type)
    assert attribution(str(path)) == expected


def test_an_unreadable_database_is_known_by_its_publishers_file_name(tmp_path):
    assert attribution(str(tmp_path / "dbip-city-lite-2026-12.mmdb")) == DB_IP
    assert attribution(str(tmp_path / "GeoLite2-City.mmdb")) == MAXMIND
    assert attribution("") == ""


def test_every_dashboard_page_shows_the_attribution_the_licence_requires(tmp_path):
    from dashboard.rendering import templates

    path = build_city_database(tmp_path / "GeoLite2-City.mmdb")
    page = templates(str(path)).env.get_template("login.html").render(viewer=None, error="", next="/")
    assert f'<footer class="attribution">{MAXMIND}</footer>' in page
    assert "attribution" not in templates("").env.get_template("login.html").render(viewer=None, error="", next="/")
