"""Revenue: what the events that carry Segment's ``revenue`` property add up to, over time, by where
the buyers came from, and by product.

An event has revenue when its ``properties.revenue`` is a number (Segment's spec: ``Order Completed``
and any event a team gives a ``revenue``); its ``properties.currency`` (upper-cased, ``''`` when absent)
keeps sums of different currencies apart: every figure here is per currency, never converted. An
*order* is one such event; a *payer* is a person (or an id, with ``count=ids``) with at least one.
Products are ``properties.products`` (each ``price`` times ``quantity``, default 1), listed under
their ``name``, else their ``product_id`` or ``sku``.
"""

from __future__ import annotations

from datetime import datetime

from analytics import persons
from analytics.channels import CHANNEL_SQL
from analytics.filters import NONE, Filters
from analytics.queries import (
    FINAL_SETTINGS,
    INTERVALS,
    SINCE,
    UNTIL,
    Query,
    QueryError,
    _events,
    _period,
    _zone,
    time_range,
)
from headwater.clickhouse import project_database

AMOUNT = "JSONExtractFloat(properties, 'revenue')"
CURRENCY = "upper(JSONExtractString(properties, 'currency'))"
# a cheap test first: most events do not mention revenue, and need no JSON parse
HAS_REVENUE = ("position(properties, '\"revenue\"') > 0 "
               "AND JSONType(properties, 'revenue') IN ('Int64', 'UInt64', 'Double')")
# where an order's buyer came from: its session's first event
BY = {"channels": CHANNEL_SQL, "referrers": "referrer_source", "sources": "utm_source", "campaigns": "utm_campaign"}
NO_SOURCE = "(none)"
# a session that holds an order in the range started at most this long before the range
SESSION_LEAD = "toIntervalDay(1)"


def _orders(project_id: str, filters: Filters, columns: str) -> str:
    return f"""SELECT {columns}
    FROM {_events(project_id)}{persons.join(project_id, filters)}
    WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} AND {HAS_REVENUE}{filters.events_condition()}"""


def over_time(project_id: str, since: datetime, until: datetime, interval: str = "day", tz: str = "UTC",
              filters: Filters = NONE) -> Query:
    """Per period and currency: ``revenue``, ``orders``, ``payers`` and ``per_payer`` (revenue / payers)."""
    if interval not in INTERVALS:
        raise QueryError(f"interval must be one of {', '.join(INTERVALS)}")
    sql = f"""SELECT
    {_period(interval, _zone(tz))} AS period,
    {CURRENCY} AS currency,
    sum({AMOUNT}) AS revenue,
    count() AS orders,
    uniqExact({persons.who(filters)}) AS payers,
    revenue / payers AS per_payer
FROM {_events(project_id)}{persons.join(project_id, filters)}
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} AND {HAS_REVENUE}{filters.events_condition()}
GROUP BY period, currency
ORDER BY period, revenue DESC, currency{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), **filters.params()},
                 ("period", "currency", "revenue", "orders", "payers", "per_payer"))


def by_source(project_id: str, what: str, since: datetime, until: datetime, limit: int = 10,
              filters: Filters = NONE) -> Query:
    """Revenue by where its sessions came from (``channels``, ``referrers``, ``sources`` as
    ``utm_source``, ``campaigns``), by the session's first event; ``(none)`` for orders without a
    session or a value there. Per value and currency: ``revenue``, ``orders``, ``payers``."""
    if what not in BY:
        raise QueryError(f"revenue by takes one of {', '.join(BY)}")
    if not 1 <= limit <= 10_000:
        raise QueryError("limit must be between 1 and 10000")
    sql = f"""SELECT
    if(s.value = '', %(no_source)s, s.value) AS value,
    o.currency AS currency,
    sum(o.amount) AS revenue,
    count() AS orders,
    uniqExact(o.who) AS payers
FROM (
    {_orders(project_id, filters, f"session_id, {persons.who(filters)} AS who, {AMOUNT} AS amount, {CURRENCY} AS currency")}
) AS o
LEFT JOIN (
    SELECT session_id, any({BY[what]}) AS value
    FROM {project_database(project_id)}.sessions
    WHERE start_at >= {SINCE} - {SESSION_LEAD} AND start_at < {UNTIL} AND sign = 1
    GROUP BY session_id
) AS s ON o.session_id = s.session_id
GROUP BY value, currency
ORDER BY revenue DESC, value, currency
LIMIT %(limit)s{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), **filters.params(), "limit": limit, "no_source": NO_SOURCE},
                 ("value", "currency", "revenue", "orders", "payers"))


def products(project_id: str, since: datetime, until: datetime, limit: int = 10, filters: Filters = NONE) -> Query:
    """The products of the orders, most revenue first: per product and currency, ``revenue`` (price
    times quantity), ``quantity`` and ``orders``."""
    if not 1 <= limit <= 10_000:
        raise QueryError("limit must be between 1 and 10000")
    product = "arrayJoin(JSONExtractArrayRaw(properties, 'products'))"
    sql = f"""SELECT
    multiIf(name != '', name, id != '', id, %(no_source)s) AS product,
    currency,
    sum(price * qty) AS revenue,
    sum(qty) AS quantity,
    uniqExact(message_id) AS orders
FROM (
    SELECT message_id, {CURRENCY} AS currency, {product} AS p,
        JSONExtractString(p, 'name') AS name,
        if(JSONHas(p, 'product_id'), JSONExtractString(p, 'product_id'), JSONExtractString(p, 'sku')) AS id,
        JSONExtractFloat(p, 'price') AS price,
        if(JSONHas(p, 'quantity'), JSONExtractFloat(p, 'quantity'), 1) AS qty
    FROM {_events(project_id)}{persons.join(project_id, filters)}
    WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} AND {HAS_REVENUE}{filters.events_condition()}
)
GROUP BY product, currency
ORDER BY revenue DESC, product, currency
LIMIT %(limit)s{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), **filters.params(), "limit": limit, "no_source": NO_SOURCE},
                 ("product", "currency", "revenue", "quantity", "orders"))
