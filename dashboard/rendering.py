"""Rendering pages: the templates, the navigation, and the error page every problem answers with."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from analytics.filters import FIELDS
from analytics.queries import OTHER
from dashboard import formatting
from dashboard.state import RANGES, WINDOWS
from headwater.geodata import attribution

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
NAV = (("overview", "Overview"), ("trends", "Trends"), ("funnels", "Funnels"), ("retention", "Retention"),
       ("revenue", "Revenue"),
       ("discover", "Discover"), ("live", "Live"), ("sessions", "Sessions"), ("people", "People"),
       ("failed", "Failed events"), ("flow", "Flow"), ("destinations", "Destinations"), ("alerts", "Alerts"),
       ("tags", "Tags"))
ADMIN_ONLY = {"failed", "flow", "destinations", "alerts", "tags"}


def templates(geoip_path: str = "") -> Jinja2Templates:
    """The pages' templates; every page carries the attribution the GeoIP database's licence requires."""
    env = Jinja2Templates(directory=str(HERE / "templates"))
    env.env.filters.update(formatting.FILTERS)
    env.env.globals.update(nav=NAV, ranges=RANGES, windows=WINDOWS, filter_names=list(FIELDS),
                           admin_only=ADMIN_ONLY, other=OTHER, built=(STATIC / "dashboard.js").is_file(),
                           geo_attribution=attribution(geoip_path))
    return env


def render(request: Request, name: str, context: dict, status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def problem(request: Request, status: int, title: str, message: str) -> Response:
    """A 4xx answer with its reason: JSON for the JSON endpoints, else a page."""
    if request.url.path.endswith(".json"):
        return JSONResponse({"error": title, "message": message}, status_code=status)
    return render(request, "problem.html", {"title": title, "message": message, "viewer": None}, status)


MAX_FORM_BYTES = 16 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    """A posted form's fields (``application/x-www-form-urlencoded``, the only kind the pages send),
    first value of each."""
    body = await request.body()
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}
