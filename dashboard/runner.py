"""Running the query library's queries for a page: several at once, each on a connection of its own.

clickhouse-driver's client is synchronous and holds one connection, so the runner keeps a small pool
of clients and runs each query in a worker thread; a page's queries run concurrently and the page
waits for all of them.
"""

from __future__ import annotations

import asyncio
import queue

from clickhouse_driver import Client

from analytics.queries import Query
from analytics.run import records, rendered_sql
from headwater.clickhouse import make_client
from headwater.settings import Settings


class QueryRunner:
    """Each query may run ``dashboard_query_timeout_s`` on ClickHouse and read ``query_max_rows_to_read``
    rows; past either ClickHouse stops it (before it starts, when it can tell) and the page or the API
    answers with the reason (:func:`dashboard.api.query_refusal`)."""

    def __init__(self, settings: Settings, connections: int = 4) -> None:
        self.settings = settings
        self.pool: queue.SimpleQueue[Client] = queue.SimpleQueue()
        for _ in range(connections):
            self.pool.put(make_client(settings, max_execution_time=settings.dashboard_query_timeout_s,
                                      max_rows_to_read=settings.query_max_rows_to_read))

    def _with_client(self, work):
        client = self.pool.get()
        try:
            return work(client)
        finally:
            self.pool.put(client)

    async def records(self, queries: dict[str, Query]) -> dict[str, list[dict]]:
        """Each query's rows as dicts keyed by its column names."""
        names = list(queries)
        results = await asyncio.gather(*(asyncio.to_thread(self._with_client, lambda c, q=queries[n]: records(c, q))
                                         for n in names))
        return dict(zip(names, results))

    async def sql(self, query: Query) -> str:
        """The query with its parameters filled in, as it is sent."""
        return await asyncio.to_thread(self._with_client, lambda client: rendered_sql(client, query))

    def close(self) -> None:
        while not self.pool.empty():
            self.pool.get().disconnect()
