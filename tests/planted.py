"""Sessions with planted structure among noise, for discovery's tests (tests/integration/test_discovery.py
and the dashboard's Discover page): a funnel, a step that triples conversion, one that cuts it, a
campaign that doubles it, and pages and properties that do nothing."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from headwater.clickhouse import project_database

T0 = datetime(2026, 5, 4, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(days=7)
STATE = "?range=custom&from=2026-05-04&to=2026-05-10"  # the same range, as a dashboard URL
FUNNEL = ("/landing", "/signup", "/welcome")
TARGET = "Purchased"
NOISE = [f"/n{i}" for i in range(12)]
NULL_PAGES = ["/blog", "/about"]
VISITORS = 6000


def _conversion_rate(saw: set[str], utm_source: str) -> float:
    rate = 0.08
    if "/pricing" in saw:
        rate *= 3
    if "/error" in saw:
        rate *= 0.3
    if utm_source == "newsletter":
        rate *= 2
    return rate


def generate(seed: int = 5) -> list[dict]:
    """One session per visitor: a few noise pages, the planted funnel's steps in order for some, the
    planted causes and nulls, and the target last for those who convert."""
    rng, events = random.Random(seed), []
    for v in range(VISITORS):
        pages = [rng.choice(NOISE) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.5:
            walked = FUNNEL[:1 + (rng.random() < 0.6) + (rng.random() < 0.6 and rng.random() < 0.5 / 0.6)]
            walked = FUNNEL[:1] if len(walked) == 1 else walked
            slots = sorted(rng.sample(range(len(pages) + len(walked)), len(walked)))
            for slot, step in zip(slots, walked):
                pages.insert(slot, step)
        for page, share in (("/pricing", 0.3), ("/error", 0.2), *((p, 0.3) for p in NULL_PAGES)):
            if rng.random() < share:
                pages.insert(rng.randint(0, len(pages)), page)
        utm = "newsletter" if rng.random() < 0.2 else rng.choice(["", "google", "twitter"])
        columns = {"anonymous_id": f"v{v}", "session_id": f"v{v}-s0", "device": rng.choice(["Desktop", "Mobile"]),
                   "browser": rng.choice(["Chrome", "Firefox", "Safari"]), "utm_source": utm}
        at = T0 + timedelta(seconds=rng.randint(0, 6 * 86400))
        for page in pages:
            events.append({"message_id": str(uuid.uuid4()), "type": "page", "event": "page", "url_path": page,
                           "timestamp": at, **columns})
            at += timedelta(seconds=rng.randint(5, 120))
        if rng.random() < _conversion_rate(set(pages), utm):
            events.append({"message_id": str(uuid.uuid4()), "type": "track", "event": TARGET, "url_path": "",
                           "timestamp": at, **columns})
    return events




def insert(clickhouse, project: str, events: list[dict]) -> None:
    columns = list(events[0])
    clickhouse.execute(f"INSERT INTO {project_database(project)}.events ({', '.join(columns)}) VALUES",
                       [[e[c] for c in columns] for e in events])
