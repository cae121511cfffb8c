"""How a Kafka record of envelopes becomes ``events`` rows: one INSERT … SELECT that ClickHouse runs.

The indexer does not parse envelopes in Python. It sends each record's value as one string, with its
partition and offset, and ClickHouse parses it once with ``JSONExtract`` into typed tuples and maps
them to columns. Parsing JSON in Python cost about 5 µs per event before any row was built; ClickHouse
does the same work in about 2 µs (figures in docs/performance.md).

A record is *readable* when it is a non-empty JSON array whose every envelope has a message id and
belongs to the record's project. Unreadable records insert nothing; the indexer finds them with
:func:`unreadable_sql` and dead-letters them.
"""

from __future__ import annotations

# ``sessions``: the record's SESSIONS_HEADER (each event's session, when the sessionizer passed the
# events on as they came), or '' (the events carry their sessions themselves)
INPUT_COLUMNS = (("raw", "String"), ("sessions", "String"), ("kafka_partition", "UInt16"),
                 ("kafka_offset", "UInt64"))
INPUT_STRUCTURE = ", ".join(f"{name} {kind}" for name, kind in INPUT_COLUMNS)

_SESSION = "Tuple(id String, seq UInt32)"
_EVENT = ("Tuple(type String, event String, name String, anonymousId String, userId String, previousId String, "
          "groupId String, timestamp String, sentAt String, context String, properties String, traits String)")
_ENRICHED = (
    "Tuple(ua Tuple(browser String, browser_version String, os String, os_version String, device String, "
    "is_bot Bool), "
    "geo Tuple(country String, region String, city String, latitude Nullable(Float32), "
    "longitude Nullable(Float32)), "
    "page Tuple(url String, host String, path String, query String), "
    "referrer Tuple(url String, host String, medium String, source String), "
    "campaign Tuple(source String, medium String, campaign String, term String, content String, gclid String, "
    "fbclid String, msclkid String), "
    f"session {_SESSION}, transforms Array(String))"
)
ENVELOPES = (f"Array(Tuple(project_id String, message_id String, received_at_ms Int64, request_id String, "
             f"ip String, user_agent String, event {_EVENT}, enriched {_ENRICHED}))")

# A JSON value the row keeps as text; absent, null and empty values are stored as '{}'.
_JSON_TEXT = "if({0} IN ('', 'null', '{{}}', '[]', '\"\"'), '{{}}', {0})"
_TYPE = "if(ev.type = '', 'track', ev.type)"

# What the row's expressions read: each nested tuple of an envelope as a column of its own. ClickHouse
# analyses every expression of the INSERT again for each INSERT, and an expression over a column of the
# whole envelope's tuple type costs about 0.5 ms to analyse; over these smaller columns an INSERT costs
# about 8 ms less server CPU (docs/performance.md).
_NESTED = (("ev", "e.event"), ("ua", "e.enriched.ua"), ("geo", "e.enriched.geo"), ("pg", "e.enriched.page"),
           ("rf", "e.enriched.referrer"), ("cp", "e.enriched.campaign"), ("envelope_project_id", "e.project_id"),
           ("envelope_message_id", "e.message_id"), ("envelope_user_agent", "e.user_agent"),
           ("envelope_ip", "e.ip"), ("envelope_request_id", "e.request_id"), ("session_id_", "session.id"),
           ("session_seq_", "session.seq"), ("transforms_", "e.enriched.transforms"))

EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("project_id", "envelope_project_id"),
    ("message_id", "envelope_message_id"),
    ("type", _TYPE),
    # track events are named by `event`; other calls by their type
    ("event", f"if({_TYPE} = 'track' AND ev.event != '', ev.event, {_TYPE})"),
    ("name", "ev.name"),
    ("anonymous_id", "ev.anonymousId"),
    ("user_id", "ev.userId"),
    ("previous_id", "ev.previousId"),
    ("group_id", "ev.groupId"),
    ("session_id", "session_id_"),
    ("session_seq", "session_seq_"),
    ("timestamp", "ifNull(parseDateTime64BestEffortOrNull(ev.timestamp, 3, 'UTC'), received)"),
    ("sent_at", "parseDateTime64BestEffortOrNull(ev.sentAt, 3, 'UTC')"),
    ("received_at", "received"),
    ("context", _JSON_TEXT.format("ev.context")),
    ("properties", _JSON_TEXT.format("ev.properties")),
    # the user's traits; RudderStack's SDKs put them in context.traits, and a group call's own traits
    # are the group's
    ("traits", _JSON_TEXT.format(
        f"if({_TYPE} = 'group' OR {_JSON_TEXT.format('ev.traits')} = '{{}}', "
        "JSONExtractRaw(ev.context, 'traits'), ev.traits)")),
    ("group_traits", _JSON_TEXT.format(f"if({_TYPE} = 'group', ev.traits, '')")),
    ("user_agent", "envelope_user_agent"),
    ("ip", "envelope_ip"),
    ("request_id", "envelope_request_id"),
    ("transforms", "transforms_"),
    ("kafka_partition", "kafka_partition"),
    ("kafka_offset", "kafka_offset"),
    *((name, f"ua.{name}") for name in ("browser", "browser_version", "os", "os_version", "device", "is_bot")),
    *((name, f"geo.{name}") for name in ("country", "region", "city", "latitude", "longitude")),
    *((column, f"pg.{field}") for column, field in (("url", "url"), ("url_host", "host"), ("url_path", "path"),
                                                     ("url_query", "query"))),
    *((column, f"rf.{field}") for column, field in (
        ("referrer", "url"), ("referrer_host", "host"), ("referrer_medium", "medium"), ("referrer_source", "source"))),
    *((f"utm_{field}", f"cp.{field}") for field in ("source", "medium", "campaign", "term", "content")),
    *((click_id, f"cp.{click_id}") for click_id in ("gclid", "fbclid", "msclkid")),
)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _readable(project_id: str) -> str:
    return (f"length(arr) > 0 AND arrayAll(x -> x.message_id != '' AND x.project_id = {_quote(project_id)}, arr) "
            "AND length(sess) = length(arr)")


# The record's envelopes and each one's session: from ``sessions`` when it is there, else their own
_PARSED = (f"SELECT JSONExtract(raw, '{ENVELOPES}') AS arr, if(sessions = '', arrayMap(x -> x.enriched.session, arr), "
           f"JSONExtract(sessions, 'Array({_SESSION})')) AS sess, kafka_partition, kafka_offset")


def insert_sql(database: str, project_id: str) -> str:
    """The INSERT for one project's records; its data is rows of :data:`INPUT_STRUCTURE`."""
    columns = ", ".join(name for name, _ in EVENT_COLUMNS)
    values = ",\n    ".join(f"{expression} AS {name}" for name, expression in EVENT_COLUMNS)
    nested = ", ".join(f"{expression} AS {name}" for name, expression in _NESTED)
    return (
        f"INSERT INTO {database}.events ({columns})\n"
        f"SELECT\n    {values}\n"
        "FROM (\n"
        "    SELECT arrayJoin(arrayZip(arr, sess)) AS pair, pair.1 AS e, pair.2 AS session,\n"
        f"           {nested}, fromUnixTimestamp64Milli(e.received_at_ms, 'UTC') AS received,\n"
        "           kafka_partition, kafka_offset\n"
        f"    FROM ({_PARSED}\n"
        f"          FROM input('{INPUT_STRUCTURE}'))\n"
        f"    WHERE {_readable(project_id)}\n"
        ")"
    )


def unreadable_sql(table: str, project_id: str) -> str:
    """The partition and offset of each unreadable record in an external table of :data:`INPUT_STRUCTURE`."""
    return (
        f"SELECT kafka_partition, kafka_offset FROM ({_PARSED} FROM {table}) WHERE NOT ({_readable(project_id)})"
    )
