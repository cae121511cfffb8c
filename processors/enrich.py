"""The enrich step: user agent, GeoIP, page URL and campaign, referrer. It runs before anonymize,
because GeoIP needs the raw IP.

Results go into ``envelope.enriched``: ``ua``, ``geo``, ``page``, ``campaign`` and ``referrer``.
Per project (``project.enrich``): ``{"geoip": false}`` turns the GeoIP lookup off. The database is
set once for the deployment (``geoip_path``); when it is set but missing or unreadable, the processor
refuses to start. When it is not set, GeoIP is off everywhere (logged at start).
"""

from __future__ import annotations

from headwater.envelope import Envelope
from headwater.options import check_options
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from processors.base import Processor
from processors.enrichments.geoip import GeoIP, GeoIPError
from processors.enrichments.referrers import classify_referrer
from processors.enrichments.urls import campaign, split_url
from processors.enrichments.useragent import make_parser

ENRICH_OPTIONS = {"geoip"}


def check_enrich(raw: object) -> list[str]:
    return check_options("enrich", raw, ENRICH_OPTIONS, flags=("geoip",))


def check_project(project: Project) -> list[str]:
    return check_enrich(project.enrich)


def check_settings(settings: Settings) -> list[str]:
    """The deployment-wide configuration of this processor."""
    errors = []
    if settings.geoip_path:
        try:
            GeoIP(settings.geoip_path)
        except GeoIPError as exc:
            errors.append(str(exc))
    if settings.ua_cache_size < 0:
        errors.append("ua_cache_size must be >= 0")
    return errors


def _context(event: dict) -> dict:
    context = event.get("context")
    return context if isinstance(context, dict) else {}


def _page_fields(event: dict) -> tuple[object, object]:
    page = _context(event).get("page")
    page = page if isinstance(page, dict) else {}
    given = event.get("properties")
    properties: dict = given if isinstance(given, dict) else {}
    return page.get("url") or properties.get("url"), page.get("referrer") or properties.get("referrer")


class Enrich(Processor):
    name = "enrich"

    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        super().__init__(settings)
        self.store = store
        self.geoip = GeoIP(settings.geoip_path, settings.geoip_reload_s) if settings.geoip_path else None
        self.user_agent = make_parser(settings.ua_cache_size)

    def _geoip_on(self, project: Project | None) -> bool:
        return self.geoip is not None and (project is None or project.enrich.get("geoip", True))

    def process(self, envelope: Envelope) -> Envelope | None:
        event, enriched = envelope.event, envelope.enriched
        context = _context(event)
        user_agent = context.get("userAgent") or envelope.user_agent
        if isinstance(user_agent, str) and user_agent:
            enriched["ua"] = self.user_agent(user_agent[:1000])
        ip = context.get("ip") or envelope.ip
        if isinstance(ip, str) and self.geoip is not None and self._geoip_on(self.store.get(envelope.project_id)):
            if geo := self.geoip.lookup(ip):
                enriched["geo"] = geo
        url, referrer = _page_fields(event)
        page = split_url(url)
        if page:
            enriched["page"] = page
            enriched["campaign"] = campaign(page["query"])
        ref = split_url(referrer) or {"url": "", "host": "", "path": "/"}
        medium, source = classify_referrer(ref["host"], page["host"] if page else "",
                                           enriched.get("campaign", {}).get("medium", ""), ref["path"])
        enriched["referrer"] = {"url": ref["url"], "host": ref["host"], "medium": medium, "source": source}
        return envelope
