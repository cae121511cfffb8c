"""The column order of the tables whose rows are built in Python, beside the migrations that create
them: the sessionizer's ``sessions`` rows, the indexer's ``failed_events`` rows, the steps'
``step_counts``, the identity role's ``person_ids`` and the alerts role's ``alerts``. (``events`` rows are
built by ClickHouse from the raw events: see :mod:`indexer.events_sql`.)"""

SESSION_COLUMNS = (
    "project_id", "session_id", "visitor_id", "user_id", "start_at", "end_at", "duration_s", "duration_ms",
    "pageviews",
    "events", "entry_page", "exit_page", "referrer", "referrer_source", "referrer_medium", "utm_source",
    "utm_medium", "utm_campaign", "utm_term", "utm_content", "country", "device", "browser", "os", "is_bot",
    "is_bounce", "is_new_visitor", "sign", "version",
)

FAILED_COLUMNS = ("failed_at", "step", "reason", "path", "detail", "message_id", "origin_topic",
                  "origin_partition", "origin_offset", "payload")

STEP_COUNT_COLUMNS = ("minute", "step", "events_in", "events_out", "dropped", "dead_lettered")

PERSON_ID_COLUMNS = ("distinct_id", "person_id", "is_identified", "version", "merged_at")

ALERT_COLUMNS = ("alert_id", "rule", "kind", "subject", "at", "raised_at", "text", "quiet", "details")
