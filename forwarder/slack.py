"""The Slack destination: each batch is one message to a Slack incoming webhook (or any service that
takes Slack's ``{"text": ...}``, such as Mattermost's or Rocket.Chat's).

Settings: ``webhook_url`` (a secret: the URL is the credential). Made for alerts (a destination with
``"source": "alerts"``): each alert is a line, ``*rule* text``. An event of the project's own stream
is a line ``event by visitor``. Slack takes about one message a second per webhook and answers 429
with ``Retry-After`` beyond it, which the forwarder honours; a batch (``batch.max_events``) is one
message, at most :data:`MAX_LINES` lines, the rest counted in a last line.
"""

from __future__ import annotations

import orjson

from forwarder.http import Poster, check_url
from forwarder.outcomes import Item, Outcome
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SETTINGS = frozenset({"webhook_url"})
MAX_LINES = 20
MAX_LINE = 500  # characters: a message stays well under Slack's 40,000


def line(event: dict) -> str:
    """One event or alert as a line of a Slack message (mrkdwn), its characters escaped."""
    raw = event.get("properties")
    properties: dict = raw if isinstance(raw, dict) else {}
    if event.get("event") == "Alert" and "rule" in properties:
        text = f"*{_escape(properties['rule'])}* {_escape(properties.get('text', ''))}"
    else:
        who = event.get("userId") or event.get("anonymousId") or "someone"
        text = f"{_escape(event.get('event') or event.get('type') or 'event')} by {_escape(who)}"
    return text[:MAX_LINE]


def _escape(value: object) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(items: list[Item]) -> bytes:
    lines = [line(item.event) for item in items[:MAX_LINES]]
    if len(items) > MAX_LINES:
        lines.append(f"… and {len(items) - MAX_LINES} more")
    return orjson.dumps({"text": "\n".join(lines)})


class Slack:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        problems = check_url(settings.get("webhook_url"), "webhook_url")
        if set(settings) - SETTINGS:
            problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; slack has {sorted(SETTINGS)}")
        return problems

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.url = spec.settings["webhook_url"]
        self.poster = Poster(settings)

    async def start(self) -> None:
        pass

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        return await self.poster.post(self.url, message(items), {})

    async def stop(self) -> None:
        await self.poster.close()
