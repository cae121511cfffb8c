"""Memory held by the sessionizer's state: 100,000 active visitors, each with an open session that
has seen a few events, measured with tracemalloc."""

from __future__ import annotations

import tracemalloc

from headwater.envelope import Envelope
from processors.sessions import SessionOptions, VisitorState

VISITORS = 100_000


def enriched_event(n: int) -> Envelope:
    envelope = Envelope("shop", f"m{n}", 0, "r", {"type": "page", "anonymousId": f"visitor-{n:08d}",
                                                   "userId": f"user-{n}"})
    envelope.enriched.update({
        "page": {"path": f"/products/{n % 500}"},
        "referrer": {"url": "https://www.google.com/", "source": "Google", "medium": "search"},
        "campaign": {"source": "newsletter", "medium": "email", "campaign": "winter"},
        "ua": {"device": "Mac", "browser": "Chrome", "os": "Mac OS X"}, "geo": {"country": "GB"},
    })
    return envelope


def state_mb_per_100k_visitors() -> float:
    options = SessionOptions()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    visitors: dict[str, VisitorState] = {}
    for n in range(VISITORS):
        envelope = enriched_event(n)
        state = visitors[f"shop:{envelope.visitor_id}"] = VisitorState()
        for minute in range(3):
            state.apply(envelope, 1_750_000_000_000 + minute * 60_000, options)
        state.rows("shop", envelope.visitor_id)  # keeps the emitted row, as the processor does
        del envelope
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return round(grown / 1024 / 1024 * 100_000 / VISITORS, 1)


if __name__ == "__main__":
    print(state_mb_per_100k_visitors())
