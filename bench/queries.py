"""`make bench-queries` (also run by `make bench`): the analytics queries on 10 million events.

A generator inside ClickHouse (``INSERT … SELECT`` over ``numbers()``) loads a month of realistic
traffic into a fresh project's ``events`` table: visitors who come back over days and weeks,
sessions of several page views, referrers, browsers and countries with skewed shares, and a shop
funnel (Viewed Product → Added To Cart → Checkout → Paid) that fewer visitors finish at each step.
Then it times, through the query library as analysts would run them:

- a 4-step funnel with a 7-day window,
- weekly retention,
- daily trends with a breakdown (browser),
- the dashboard's overview for the month (its queries, run as the dashboard runs them, and its rendering),
- the event catalogue for the month, from the table its materialized view keeps, and the same answer
  scanned from ``events`` (what the catalogue would cost each time without its table),
- a cohort's size (reached checkout, did not pay), the ids of its members (what the alerts role reads
  for a visitor rule naming it), the size of a cohort of an imported column (users of organizations of
  more than 500, from an ``imported_user_sizes`` table made beside the events) and the daily trends by
  browser filtered by it, the daily trends by browser of its members, and the funnel and weekly
  retention broken down by it, and the month's first sessions of persons,
- the People page's list for the month and its search by id, and one person's profile and timeline,
- insights: the daily trend by a custom property and with a condition on one, the funnel with that
  condition, a funnel to a goal, two goals' conversions, the sessions by channel, revenue by day, by
  channel and by product (the generated Paid events carry Segment's revenue, currency and products),
  goal by goal, the overview's and the Sessions page's breakdowns by a custom property and by a column
  (beside the sessions' summary), and the overview with those goals and with the event goal alone,

each as the library runs it by default (counting persons, bots left out: 3% of the generated visitors
are bots), again counting ids instead of persons (``*_count_ids``: what joining each id to its person
costs; 30% of the visitors have a ``person_ids`` row, in pairs of devices where both drew one), and again
counting bots (``*_bots_included``), which is what leaving them out costs,

each ``BENCH_QUERY_RUNS`` times (default 5), after ClickHouse has merged the load (the state a table
is in most of the time) and right after the load, with the parts as the daily INSERTs left them
(non-overlapping days, partly merged in the background). Figures go to bench/results/queries.json.

Environment: BENCH_QUERY_EVENTS (default 10,000,000) is the number of events, approximately.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import time
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics import cohorts, conditions, overview, people, queries, revenue
from analytics.filters import NONE, Filters
from analytics.goals import parse_goals
from bench.clickhouse import bench_clickhouse
from dashboard.runner import QueryRunner
from headwater.clickhouse import project_database
from headwater.migrations import migrate_project
from headwater.settings import get_settings

RESULTS = Path(__file__).resolve().parent / "results"
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
EVENTS_PER_VISITOR = 23  # on average: 2.5 sessions of about 9 events
FUNNEL = ["Viewed Product", "Added To Cart", "Checkout", "Paid"]

# One row per visitor, then per session (arrayJoin), then per event in the session (arrayJoin).
# rand-like values come from cityHash64 of the ids, so a load is the same every time.
GENERATE = """
INSERT INTO {db}.events_staging (project_id, message_id, type, event, name, anonymous_id, user_id, session_id,
    session_seq, timestamp, received_at, properties, browser, os, device, is_bot, country, url, url_host, url_path,
    referrer_host, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign, kafka_partition, kafka_offset)
SELECT
    '{project}', toString(generateUUIDv4(v * 1000 + s * 50 + e)), type, event, if(type = 'page', path, ''),
    concat('v', toString(v)), if(h % 5 = 0, concat('user', toString(v)), ''), concat('v', toString(v), '-', toString(s)),
    e + 1, ts, ts, if(type = 'track', concat('{{"sku":"k', toString(cityHash64(v, s, e) % 40), '","price":', toString(cityHash64(v, e) % 100), if(event = 'Paid', concat(',"revenue":', toString(10 + cityHash64(v, s) % 200), ',"currency":"', if(h % 4 = 0, 'USD', 'EUR'), '","products":[{{"product_id":"k', toString(cityHash64(v, s, e) % 40), '","price":', toString(5 + cityHash64(v, s) % 100), ',"quantity":', toString(1 + cityHash64(v, s, 'q') % 3), '}}]'), ''), '}}'), concat('{{"path":"', path, '"}}')), browser, os, device, bitShiftRight(h, 40) % 100 < 3, country,
    concat('https://shop.example', path), 'shop.example', path, referrer, source, medium, if(utm != '', 'google', ''), if(utm != '', 'cpc', ''), utm,
    65535, v * 1000 + s * 50 + e  -- no real partition: the indexer never mistakes these for its own rows
FROM (
    SELECT v, s, e, h, browser, os, device, country, referrer, source, medium, utm,
        session_start + toIntervalSecond(e * (20 + cityHash64(v, s, e) % 240)) AS ts,
        -- a session of n page views may walk the funnel on its last pages, fewer at each step
        multiIf(e >= n - funnel_steps, 'track', 'page') AS type,
        if(type = 'track', arrayElement({funnel}, toUInt32(e - (n - funnel_steps) + 1)), 'page') AS event,
        arrayElement(['/', '/pricing', '/products', '/products/kettle', '/products/mug', '/blog/launch',
                      '/docs', '/about', '/cart', '/checkout'], 1 + toUInt32(pow(cityHash64(v, s, e) % 1000 / 1000, 2) * 10)) AS path
    FROM (
        SELECT v, s, h, browser, os, device, country, referrer, source, medium, utm,
            first_visit + toIntervalHour(s * (12 + cityHash64(v, s) % 120)) AS session_start,
            3 + cityHash64(v, s, 'n') % 14 AS n,
            multiIf(cityHash64(v, s, 'f') % 100 < 40,
                    multiIf(cityHash64(v, s, 'g') % 100 < 35, 4, cityHash64(v, s, 'g') % 100 < 55, 3,
                            cityHash64(v, s, 'g') % 100 < 75, 2, 1), 0) AS funnel_steps,
            arrayJoin(range(toUInt32(n))) AS e
        FROM (
            SELECT number AS v, cityHash64(number) AS h,
                toDateTime64('{start}', 3, 'UTC') + toIntervalSecond(h % ({days} * 86400)) AS first_visit,
                arrayJoin(range(toUInt32(1 + bitShiftRight(h, 8) % 4))) AS s,
                arrayElement(['Chrome', 'Chrome', 'Chrome', 'Safari', 'Safari', 'Firefox', 'Edge', 'Samsung Internet'], 1 + bitShiftRight(h, 16) % 8) AS browser,
                arrayElement(['Windows', 'macOS', 'iOS', 'Android', 'Linux'], 1 + bitShiftRight(h, 20) % 5) AS os,
                arrayElement(['Desktop', 'Mobile', 'Tablet'], 1 + bitShiftRight(h, 24) % 3) AS device,
                arrayElement(['US', 'US', 'DE', 'GB', 'IN', 'FR', 'BR', 'JP', 'CA', 'NL'], 1 + bitShiftRight(h, 28) % 10) AS country,
                arrayElement(['', '', 'google.com', 'twitter.com', 'news.ycombinator.com', 'newsletter.example'], 1 + bitShiftRight(h, 32) % 6) AS referrer,
                arrayElement(['', '', 'Google', 'Twitter', 'Hacker News', 'Newsletter'], 1 + bitShiftRight(h, 32) % 6) AS source,
                arrayElement(['', '', 'search', 'social', 'social', 'email'], 1 + bitShiftRight(h, 32) % 6) AS medium,
                if(bitShiftRight(h, 36) % 7 = 0, 'autumn-sale', '') AS utm
            FROM numbers({visitors})
        )
    )
)
WHERE ts < toDateTime64('{start}', 3, 'UTC') + toIntervalDay({days} + 7)
"""


# The sessions the sessionizer would have written for the generated events: one live row each.
DERIVE_SESSIONS = """
INSERT INTO {db}.sessions (project_id, session_id, visitor_id, user_id, start_at, end_at, duration_s, pageviews,
    events, entry_page, exit_page, referrer, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign,
    country, device, browser, os, is_bot, is_bounce, is_new_visitor, sign, version)
SELECT any(project_id), session_id, any(anonymous_id), any(user_id), min(timestamp), max(timestamp),
    dateDiff('second', min(timestamp), max(timestamp)), countIf(type = 'page'), count(),
    argMinIf(url_path, timestamp, type = 'page'), argMaxIf(url_path, timestamp, type = 'page'),
    any(referrer_host), any(referrer_source), any(referrer_medium), any(utm_source), any(utm_medium), any(utm_campaign),
    any(country), any(device),
    any(browser), any(os), any(is_bot), count() = 1, endsWith(session_id, '-0'), 1, 1
FROM {db}.events
GROUP BY session_id
"""


# What the identity role would have written: 30% of the visitors identified, visitors 2k and 2k+1 one
# person (two devices) when both are.
DERIVE_PERSON_IDS = """
INSERT INTO {db}.person_ids (distinct_id, person_id, is_identified, version, merged_at, kafka_partition, kafka_offset)
SELECT concat('v', toString(number)), concat('person', toString(intDiv(number, 2))), 1, 1,
    toDateTime64('{start}', 3, 'UTC'), 65535, number
FROM numbers({visitors})
WHERE cityHash64(number, 'p') % 10 < 3
"""

CATALOGUE_FROM_EVENTS = """SELECT event, type, field.1 AS property,
    if(property = '', '', lower(toString(JSONType(field.2)))) AS value_type,
    count() AS events, min(timestamp) AS first_seen, max(timestamp) AS last_seen
FROM {db}.events
ARRAY JOIN arrayConcat([('', '')], JSONExtractKeysAndValuesRaw(properties), if(type IN ('identify', 'group'),
    arrayMap(t -> ('traits.' || t.1, t.2), JSONExtractKeysAndValuesRaw(traits)), [])) AS field
WHERE timestamp >= toDateTime64(%(since)s, 3, 'UTC') AND timestamp < toDateTime64(%(until)s, 3, 'UTC')
GROUP BY event, type, property, value_type
ORDER BY event, type, property != '', property, events DESC"""


def load(client, project: str, events: int, start: datetime = START) -> dict:
    """Generate the events into a staging table, then move them into ``events`` one day per INSERT, in
    time order, as the indexer's stream would have written them (so parts hold recent days, not the
    whole month each)."""
    db = project_database(project)
    client.execute(f"DROP DATABASE IF EXISTS {db} SYNC")
    migrate_project(client, project)
    client.execute(f"CREATE TABLE {db}.events_staging AS {db}.events ENGINE = MergeTree ORDER BY (timestamp, visitor_hash) SAMPLE BY visitor_hash")
    visitors = max(events // EVENTS_PER_VISITOR, 1)
    sql = GENERATE.format(db=db, project=project, funnel=FUNNEL, visitors=visitors,
                          start=start.strftime("%Y-%m-%d %H:%M:%S"), days=DAYS)
    started = time.perf_counter()
    client.execute(sql, settings={"max_insert_threads": 2, "max_threads": 2})
    days = [row[0] for row in client.execute(
        f"SELECT DISTINCT toDate(timestamp) AS day FROM {db}.events_staging ORDER BY day")]
    for day in days:
        client.execute(f"INSERT INTO {db}.events SELECT * FROM {db}.events_staging "
                       "WHERE toDate(timestamp) = %(day)s", {"day": day})
    client.execute(DERIVE_SESSIONS.format(db=db), settings={"max_threads": 2})
    client.execute(DERIVE_PERSON_IDS.format(db=db, visitors=visitors, start=start.strftime("%Y-%m-%d %H:%M:%S")))
    client.execute(IMPORTED_SIZES.format(db=db, visitors=visitors))
    loaded = time.perf_counter() - started
    client.execute(f"DROP TABLE {db}.events_staging SYNC")
    rows, visitors_seen = client.execute(f"SELECT count(), uniqExact(anonymous_id) FROM {db}.events")[0]
    merged_ids, persons = client.execute(f"SELECT count(), uniqExact(person_id) FROM {db}.person_ids")[0]
    return {"events": rows, "visitors": visitors_seen, "person_ids_rows": merged_ids,
            "persons_with_rows": persons, "load_s": round(loaded, 1), "inserts": len(days),
            "parts": part_count(client, db)}


def part_count(client, db: str) -> int:
    return client.execute(f"SELECT count() FROM system.parts WHERE database = '{db}' AND table = 'events' "
                          "AND active")[0][0]


# what `headwater import` would have loaded: each user's organization size, as imported_<name> tables are
IMPORTED_SIZES = """
CREATE TABLE {db}.imported_user_sizes (external_id Nullable(String), size Nullable(Int64), _imported_at DateTime64(3)
    DEFAULT now64(3)) ENGINE = ReplacingMergeTree(_imported_at) ORDER BY external_id SETTINGS allow_nullable_key = 1
AS SELECT concat('user', toString(number)) AS external_id, toInt64(cityHash64(number) % 1000) AS size,
    now64(3) AS _imported_at FROM numbers({visitors})
"""
# a cohort of the users in organizations of more than 500 people, from that table
BIG_ORGS = {"name": "big-orgs", "rules": [{"imported": "user_sizes", "by": "external_id", "column": "size",
                                           "gt": 500}]}

# a cohort of the generated visitors: reached checkout but did not pay, in the last 90 days (the month
# loaded is within them)
ABANDONED = {"name": "abandoned-checkout", "rules": [{"did": "Checkout", "within_days": 90},
                                                     {"did_not": "Paid", "within_days": 90}]}


# two goals: a page pattern, and an event with a condition on a custom property
GOALS = parse_goals([{"name": "Product pages", "page": "/products/*"},
                     {"name": "Paid over 50", "event": "Paid", "where": ["properties.price:gt:50"]}])


def bench_queries(project: str, filters: Filters = NONE) -> dict[str, queries.Query]:
    until = START + timedelta(days=DAYS)
    cohort = cohorts.find(project, [ABANDONED], ABANDONED["name"])
    in_cohort = dataclasses.replace(filters, cohort=cohort.name, definition=cohort)
    one_person = ["person1", "v2", "v3"]  # the ids of a person on two devices (as DERIVE_PERSON_IDS names them)
    return {
        "cohort_size": queries.Query(*cohorts.size_sql(cohort, filters.count_ids), ("members",)),
        "imported_cohort_size": queries.Query(*cohorts.size_sql(cohorts.find(project, [BIG_ORGS], "big-orgs"),
                                                                filters.count_ids), ("members",)),
        "trends_daily_by_browser_in_imported_cohort": queries.trends(
            project, START, until, interval="day", breakdown="browser",
            filters=dataclasses.replace(filters, cohort="big-orgs",
                                        definition=cohorts.find(project, [BIG_ORGS], "big-orgs"))),
        # what the alerts role reads for a visitor rule naming the cohort: every id of its members
        "cohort_member_ids_for_alerts": queries.Query(f"SELECT who FROM ({cohort.ids_sql(filters.count_ids)})",
                                                      cohort.params(), ("who",)),
        "trends_daily_by_browser_in_cohort": queries.trends(project, START, until, interval="day",
                                                            breakdown="browser", filters=in_cohort),
        "people_list_month": people.people(project, START, until, filters=filters),
        "people_search_by_id": people.people(project, START, until, search="v123", filters=filters),
        "funnel_by_cohort": queries.funnel(project, FUNNEL, START, until, 7 * 86_400, filters, (cohort,)),
        "retention_by_cohort": queries.retention(project, START, until + timedelta(days=7), period="week",
                                                 periods=4, filters=filters, by_cohorts=(cohort,)),
        "new_sessions_month": queries.new_sessions(project, START, until, filters),
        "person_profile": people.profile(project, one_person),
        "person_timeline": people.timeline(project, one_person),
        "funnel_4_steps_7_day_window": queries.funnel(project, FUNNEL, START, until, 7 * 86_400, filters),
        "retention_weekly": queries.retention(project, START, until + timedelta(days=7), period="week", periods=4,
                                              filters=filters),
        "trends_daily_by_browser": queries.trends(project, START, until, interval="day", breakdown="browser",
                                                  filters=filters),
        # a custom property (the generated track events' "sku", 40 values) as the breakdown, the 25 most
        # frequent kept and the rest as (other); and a numeric condition on one ("price" above 50)
        "trends_daily_by_property_sku": queries.trends(project, START, until, interval="day",
                                                       breakdown="properties.sku", filters=filters),
        "trends_daily_where_price_above_50": queries.trends(
            project, START, until, interval="day",
            filters=dataclasses.replace(filters, where=(conditions.parse("properties.price:gt:50"),))),
        "funnel_4_steps_where_price_above_50": queries.funnel(
            project, FUNNEL, START, until, 7 * 86_400,
            dataclasses.replace(filters, where=(conditions.parse("properties.price:gt:50"),))),
        "funnel_to_a_goal": queries.funnel(project, ["/", "goal:Paid over 50"], START, until, 7 * 86_400, filters,
                                           goals=GOALS),
        "goals_month": overview.goals(project, GOALS, START, until, filters),
        "goal_event_month": overview.goals(project, GOALS[1:], START, until, filters),
        "goal_page_month": overview.goals(project, GOALS[:1], START, until, filters),
        # the overview's and the Sessions page's breakdowns, by a custom property and by a column
        "breakdown_by_property_sku": queries.breakdown(project, "properties.sku", START, until, filters=filters),
        "breakdown_by_browser": queries.breakdown(project, "browser", START, until, filters=filters),
        "sessions_by_property_sku": queries.sessions_by(project, "properties.sku", START, until, filters=filters),
        "sessions_by_browser": queries.sessions_by(project, "browser", START, until, filters=filters),
        "sessions_month": queries.sessions(project, START, until, filters),
        "channels_of_sessions": overview.sources(project, "channels", START, until, filters=filters),
        "revenue_daily": revenue.over_time(project, START, until, "day", filters=filters),
        "revenue_by_channel": revenue.by_source(project, "channels", START, until, filters=filters),
        "revenue_by_product": revenue.products(project, START, until, filters=filters),
        # what the admin API and the Flow page read, from the table its view keeps, against the same
        # answer scanned from the events (what each look at the catalogue would cost without it)
        "catalogue_30_days": queries.catalogue(project, START, until),
        "catalogue_scanned_from_events": queries.Query(CATALOGUE_FROM_EVENTS.format(db=project_database(project)),
                                                       queries.time_range(START, until), ()),
    }


def time_queries(client, project: str, runs: int, filters: Filters = NONE) -> dict:
    timings = {}
    for name, query in bench_queries(project, filters).items():
        client.execute(query.sql, query.params)  # warm: the first run reads from disk
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            client.execute(query.sql, query.params)
            seconds.append(time.perf_counter() - started)
        timings[name] = {"median_ms": round(statistics.median(seconds) * 1000, 1),
                         "max_ms": round(max(seconds) * 1000, 1), "runs": runs}
    return timings


def by_ids(settings, client, project: str, runs: int) -> dict:
    """The same queries counting ids, not persons: what the join to ``person_ids`` costs."""
    ids = Filters(count_ids=True)
    timings = time_queries(client, project, runs, ids)
    timings["dashboard_overview"] = time_overview(settings, project, runs, ids)
    return timings


def both(settings, client, project: str, runs: int) -> dict:
    """The same queries counting bots too (``include_bots``): what leaving bots out costs (3% of the
    generated visitors are bots)."""
    included = Filters(include_bots=True)
    timings = time_queries(client, project, runs, included)
    timings["dashboard_overview"] = time_overview(settings, project, runs, included)
    return timings


def time_overview(settings, project: str, runs: int, filters: Filters = NONE, goals: tuple = ()) -> dict:
    """The dashboard's overview for the whole month: its 14 queries (run as the dashboard runs them,
    several at once; the chart's, which the page's script asks the Stats API for, included; with
    ``goals``, the Goals block's too) and its rendering: the servers' part of showing the page."""
    from dashboard.pages import overview_data
    from dashboard.rendering import templates
    from dashboard.state import ViewState

    runner, template = QueryRunner(settings), templates().get_template("overview.html")
    state = ViewState(range="custom", start=START.date(), end=(START + timedelta(days=DAYS - 1)).date(),
                      filters=filters, goals=goals)
    context = {"project": types.SimpleNamespace(id=project, name=project), "state": state, "view": "overview",
               "viewer": types.SimpleNamespace(admin=True)}
    try:
        asyncio.run(overview_data(runner, project, state))  # warm
        query_s, render_s = [], []
        for _ in range(runs):
            started = time.perf_counter()
            data = asyncio.run(overview_data(runner, project, state))
            rendered = time.perf_counter()
            template.render({**context, **data})
            query_s.append(rendered - started)
            render_s.append(time.perf_counter() - rendered)
    finally:
        runner.close()
    total = [q + r for q, r in zip(query_s, render_s)]
    return {"median_ms": round(statistics.median(total) * 1000, 1), "max_ms": round(max(total) * 1000, 1),
            "queries_median_ms": round(statistics.median(query_s) * 1000, 1),
            "render_median_ms": round(statistics.median(render_s) * 1000, 1), "runs": runs}


def main() -> None:
    settings = get_settings()
    events = int(os.environ.get("BENCH_QUERY_EVENTS", 10_000_000))
    runs = int(os.environ.get("BENCH_QUERY_RUNS", 5))
    with bench_clickhouse(settings) as client:
        project = "bench_queries"
        result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
                  "load": load(client, project, events)}
        print(json.dumps(result["load"]), flush=True)
        result["unmerged"] = time_queries(client, project, runs)
        result["unmerged"]["dashboard_overview"] = time_overview(settings, project, runs)
        result["unmerged"]["dashboard_overview_with_goals"] = time_overview(settings, project, runs, goals=GOALS)
        result["unmerged"]["dashboard_overview_with_one_goal"] = time_overview(settings, project, runs,
                                                                         goals=GOALS[1:])
        result["unmerged_count_ids"] = by_ids(settings, client, project, runs)
        result["unmerged_bots_included"] = both(settings, client, project, runs)
        started = time.perf_counter()
        client.execute(f"OPTIMIZE TABLE {project_database(project)}.events FINAL")
        result["merge_s"] = round(time.perf_counter() - started, 1)
        result["merged_parts"] = part_count(client, project_database(project))
        result["merged"] = time_queries(client, project, runs)
        result["merged"]["dashboard_overview"] = time_overview(settings, project, runs)
        result["merged"]["dashboard_overview_with_goals"] = time_overview(settings, project, runs, goals=GOALS)
        result["merged"]["dashboard_overview_with_one_goal"] = time_overview(settings, project, runs,
                                                                         goals=GOALS[1:])
        result["merged_count_ids"] = by_ids(settings, client, project, runs)
        result["merged_bots_included"] = both(settings, client, project, runs)
        result["sizes"] = table_size(client, project_database(project))
        client.execute(f"DROP DATABASE {project_database(project)} SYNC")  # 400 MB of generated events
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "queries.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))


def table_size(client, db: str) -> dict:
    compressed, uncompressed = client.execute(
        f"SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts "
        f"WHERE database = '{db}' AND table = 'events' AND active")[0]
    return {"compressed_mb": round(compressed / 1e6, 1), "uncompressed_mb": round(uncompressed / 1e6, 1)}


if __name__ == "__main__":
    main()
