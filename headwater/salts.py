"""Daily-rotating random salts for cookieless visitor ids, shared by every anonymize replica.

Salts live in the compacted topic ``headwater.salts``, keyed by UTC date, sealed when ``secret_key`` is
set (headwater/sealing.py). A replica that needs the
salt of a day that has none writes a random candidate; all replicas read the topic in the same order
and keep the *first* record of each date, so they agree even when two wrote at once. Today's and
tomorrow's salts are made ahead of time; salts older than yesterday are deleted (a tombstone, then
compaction), so an old visitor id can no longer be recomputed from an IP and a user agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import secrets

import structlog

from headwater.kafka import make_producer
from headwater.sealing import Sealer
from headwater.settings import Settings
from headwater.tailing import TopicTail
from headwater.topics import salts_topic

log = structlog.get_logger()
KEEP_DAYS = 2  # today and yesterday


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class DailySalts:
    def __init__(self, settings: Settings) -> None:
        self.topic = salts_topic(settings)
        self.salts: dict[dt.date, bytes] = {}
        self.sealer = Sealer(settings.secret_key)
        self.tail = TopicTail(settings, self.topic, self.apply)
        self.producer = make_producer(settings, linger_ms=0)
        self._maintenance: asyncio.Task | None = None

    def apply(self, key: str, value: bytes | None) -> None:
        day = dt.date.fromisoformat(key)
        if value is None:
            self.salts.pop(day, None)
        elif day not in self.salts:  # the first record of a date wins
            self.salts[day] = bytes.fromhex(self.sealer.open(value.decode()))

    def salt_for(self, day: dt.date) -> bytes:
        """The salt of ``day`` while it is kept, else today's."""
        return self.salts.get(day) or self.salts[utc_today()]

    async def start(self) -> None:
        await self.producer.start()
        await self.tail.start()
        await self.maintain()
        self._maintenance = asyncio.create_task(self._maintain_forever())

    async def maintain(self) -> None:
        """Make sure today's and tomorrow's salts exist; delete salts older than yesterday."""
        today = utc_today()
        for day in (today, today + dt.timedelta(days=1)):
            if day not in self.salts:
                await self.producer.send_and_wait(self.topic, self.sealer.seal(secrets.token_hex(32)).encode(),
                                                  key=day.isoformat().encode())
                await self.tail.wait_for(functools.partial(self.salts.__contains__, day))
        for day in [d for d in self.salts if d <= today - dt.timedelta(days=KEEP_DAYS)]:
            await self.producer.send_and_wait(self.topic, None, key=day.isoformat().encode())

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await self.maintain()
            except Exception as exc:  # retried in a minute; tomorrow's salt was made a day early
                log.warning("salt_maintenance_failed", error=str(exc))

    async def stop(self) -> None:
        if self._maintenance:
            self._maintenance.cancel()
        await self.tail.stop()
        await self.producer.stop()
