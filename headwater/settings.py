"""Typed settings, read once from the environment or a TOML file.

Every field can be set as an environment variable named ``HEADWATER_<FIELD>`` (upper case), or in the
TOML file named by ``HEADWATER_CONFIG``. The environment wins over the file; the file wins over the
defaults below. Call :func:`get_settings` to read them; it caches the result for the process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "HEADWATER_"
# The deployment files' examples mark each secret CHANGE-ME; a role refuses to start with one left in.
PLACEHOLDER = "change-me"
SECRET_SETTINGS = ("kafka_sasl_password", "clickhouse_password", "admin_token", "secret_key", "smtp_password")


@dataclasses.dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""  # a CA bundle to verify the brokers with (default: the system's)
    topic_prefix: str = "headwater"
    topic_partitions: int = 4

    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 9000
    clickhouse_secure: bool = False  # TLS on the native protocol (a clickhouse-server's secure port, 9440)
    clickhouse_ca_certs: str = ""  # a CA bundle to verify the server with (default: the system's)
    clickhouse_http_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_password: str = ""

    collector_host: str = "127.0.0.1"
    collector_port: int = 8080
    produce_timeout_s: float = 5.0
    producer_linger_ms: int = 5
    # The collector's producer sends at once: aiokafka keeps one produce request in flight per broker,
    # so requests arriving meanwhile share the next batch anyway, and a linger only delays every 200.
    # 5 ms held single-event requests to 3,906-3,998 a second, 0 ms gave 5,233 (docs/performance.md).
    collector_linger_ms: int = 0
    # How every producer compresses its batches: zstd, lz4, snappy, gzip or none. zstd (level 3) cut the
    # broker's work and the whole pipeline's CPU per event by a quarter (docs/performance.md).
    kafka_compression: str = "zstd"
    collector_compression: str = "zstd"

    # A pipeline consumer's fetch waits at the broker until it has this many (compressed) bytes, or
    # for this long: about ten polls a second per step under load, each with a commit or transaction,
    # instead of one per record as fast as the loop turns. Returning at once (1 byte) used the whole
    # machine at any rate: 1.97 cores busy at 8,000 events/s, 1.42 with these (docs/performance.md).
    # Capped at one partition's fetch limit; headwater.kafka.fetch_limits says why.
    fetch_min_bytes: int = 1_000_000
    fetch_max_wait_ms: int = 100

    # The local stack (make up, make test) creates this project with this public write key.
    default_project: str = "default"
    default_write_key: str = "dev-write-key"

    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    admin_token: str = ""  # required by the admin role; the local stack sets a development token
    # Seals the HMAC keys and salts kept in Kafka topics (headwater/sealing.py); the same on every role.
    secret_key: str = ""
    key_grace_s: float = 86_400.0  # how long a rotated-out key keeps working

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8082
    dashboard_cookie_secure: bool = False  # set behind HTTPS: the login cookie is then sent over HTTPS only
    dashboard_session_hours: float = 12.0  # how long a dashboard login lasts
    dashboard_live_minutes: int = 30  # how far back the live page looks
    # Each dashboard query may run this long on ClickHouse (its max_execution_time), so that no viewer's
    # page (discovery over a year of a busy project, say) can hold the server's cores for everyone else
    dashboard_query_timeout_s: float = 60.0
    # A dashboard page's or Stats API request's query that would read more rows than this is refused
    # (ClickHouse's max_rows_to_read, checked before reading as well): 422 with the reason
    query_max_rows_to_read: int = 1_000_000_000
    # Stats API requests per token (docs/stats-api.md): a token bucket of stats_api_burst requests,
    # refilled at stats_api_requests_per_minute; past it, 429 with Retry-After
    stats_api_requests_per_minute: float = 120.0
    stats_api_burst: int = 30
    # and at most this many of a token's requests answered at once (the dashboard's ClickHouse
    # connections are shared: one token's slow queries must not hold them all); past it, 429
    stats_api_concurrent_requests: int = 2

    max_request_bytes: int = 500 * 1024
    max_event_bytes: int = 32 * 1024
    max_batch_events: int = 2_000  # events in one batch request; more is refused whole (400 too_many_events)
    # Event times (docs/collector.md): later than this past the receive time becomes the receive time,
    # as Segment and PostHog do; older than this is refused (too_old). The window also bounds how many
    # monthly partitions one INSERT can touch (ClickHouse refuses more than 100).
    max_event_future_s: float = 86_400.0
    max_event_age_days: float = 730.0
    # The HTTP servers (collector, admin, dashboard): a request's headers must arrive within
    # http_header_timeout_s of its first byte (or of the connection opening), its body within
    # http_body_timeout_s of the headers; an idle keep-alive connection closes after http_keepalive_s;
    # past http_max_connections open connections and requests, new requests are answered 503.
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    http_keepalive_s: int = 5
    http_max_connections: int = 2_048
    # One log line per collector request (route, status, project, events, ms): off by default, because
    # with single-event traffic it is a line per event and a tenth of the collector's CPU
    # (docs/performance.md); the metrics count every request either way.
    access_log: bool = False
    trusted_proxies: str = ""  # comma-separated CIDRs whose X-Forwarded-For / X-Real-IP are believed
    rate_limit_ip_rps: float = 200.0  # requests per second per client IP; 0 turns it off
    rate_limit_ip_burst: float = 400.0
    rate_limit_project_eps: float = 20_000.0  # events per second per project; 0 turns it off
    rate_limit_project_burst: float = 40_000.0

    geoip_path: str = ""  # a MaxMind-format .mmdb; empty turns GeoIP off everywhere
    geoip_reload_s: float = 60.0  # how often enrich checks whether the database file was replaced
    ua_cache_size: int = 20_000
    max_invalid_ratio: float = 0.5  # above this share of invalid recent events a processor raises the alarm
    invalid_window: int = 2_000  # how many recent events that ratio is taken over
    # Also stop the processor on such a flood (exit 2, nothing of the batch produced). Only for senders
    # you control: anyone holding a public write key could otherwise halt the pipeline with bad events.
    stop_on_invalid_flood: bool = False

    # Python transformations the operator installs: each *.py here (and each entry point of the group
    # headwater.transforms) is one, loaded when a processor starts (docs/processing.md, trust model)
    transforms_dir: str = ""
    transform_budget_ms: float = 50.0  # the most a Python transformation may take on one event (wall clock)

    # The most distinct ids the identity role keeps merged for one project (about 320 bytes each in its
    # memory): past it, merges are refused (merge_too_many_ids), so one project's flood of identify
    # calls cannot exhaust the role that every project shares.
    identity_max_ids_per_project: int = 1_000_000

    # The alerts role (headwater/alerts.py). A threshold window closes when the project's latest event
    # time passes its end by alerts_grace_s (later events are late and not counted), or, when the
    # project has sent nothing for alerts_idle_s, when the clock does (so a stop in traffic still
    # closes its windows). Past alerts_max_keys_per_project keys (windows, cooldowns, visitors) the
    # project's new keys are not kept, so one project cannot exhaust the role every project shares.
    alerts_grace_s: float = 30.0
    alerts_idle_s: float = 60.0
    alerts_max_keys_per_project: int = 1_000_000
    # At most this many alerts of one rule a minute (event time); the rest are suppressed (counted in the
    # role's log), so a sender with a write key cannot flood a team's Slack or mail server.
    alerts_max_per_rule_per_minute: int = 60
    alerts_fault_hold_s: float = 0.0  # fault injection for tests: hold each transaction open this long
    # Visitor rules naming a cohort: its members' ids are read from ClickHouse this often, in one query
    # bounded to this many ids and seconds (past either, the members loaded before are kept; logged).
    alerts_cohort_refresh_s: float = 60.0
    alerts_max_cohort_members: int = 1_000_000
    alerts_cohort_timeout_s: int = 30

    session_timeout_s: float = 1800.0  # defaults; each project may set its own
    session_max_length_s: float = 86_400.0
    session_split_on_campaign: bool = True
    session_allowed_lateness_s: float = 3600.0
    session_visitor_retention_days: float = 30.0  # a visitor idle this long (event time) is forgotten
    # A new session's row is written at once; later changes to an open session at most this often
    # (wall clock), and its final row when it closes: one row pair per session per interval instead of
    # one per poll (a pair per visitor per poll makes the sessions indexer and ClickHouse's inserts a
    # quarter of an event's cost).
    session_row_interval_s: float = 5.0
    # How often each process produces its steps' counts of events in and out (the Flow page's figures,
    # the step_counts table): a few records a minute per process, whatever the traffic.
    step_counts_flush_s: float = 10.0
    # The local stack (make up, make test, make bench) runs the stateless steps in one process
    # (`headwater processor validate enrich anonymize transform`): a third less CPU per event on a
    # small machine. False: one process per step, as the deployment files run them.
    colocate_stateless_steps: bool = True
    instance_id: str = ""  # stable and distinct per replica: names its Kafka transactions

    # The forwarder (headwater forwarder): destinations are refused addresses on loopback, private,
    # link-local and other non-public networks (a webhook URL pointing at the metadata service or an
    # internal admin port) unless this is true, as on the local stack whose receivers are on loopback.
    forward_private_networks: bool = False
    forward_timeout_s: float = 10.0  # one delivery attempt (an HTTP POST, a file written) at most
    forward_max_backoff_s: float = 300.0  # retries wait 0.5 s doubling, with jitter, up to this
    forward_local_dir: str = ""  # file:// lakes may write only below this directory (empty: none may)
    forward_fault_hold_s: float = 0.0  # fault injection for tests: wait this long between delivery and commit
    # The email destination's server (forwarder/email.py): the operator's, never a project's, so a
    # project's settings name recipients only. smtp_security: starttls, tls (implicit, port 465) or none.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "headwater@localhost"

    tracker_dir: str = "sdks/js/dist"  # where the collector finds the built tracking script (hw.js)
    # The tag manager (docs/tags.md): browsers keep a container's script this long before they ask
    # again (a publish reaches them within it); a preview token works this long.
    tags_max_age_s: int = 60
    tags_preview_s: int = 8 * 3600

    # At most two INSERTs per table and project per second under load (ClickHouse asks for no more
    # than about one a second: every INSERT makes a part), and rows queryable about half a second
    # after they reach the index topic. The next batch fills while one is being inserted.
    indexer_batch_rows: int = 100_000
    indexer_batch_ms: int = 500
    indexer_fault_hold_s: float = 0.0  # fault injection for tests: wait this long between INSERT and commit
    # fault injection for tests: the sessionizer waits this long between a transaction's sends and its commit
    sessionize_fault_hold_s: float = 0.0
    metrics_port: int = 0  # Prometheus metrics of a consuming role (0: not served); the collector uses /metrics
    metrics_host: str = "127.0.0.1"  # where those metrics listen (the deployment files use 0.0.0.0)
    liveness_stall_s: float = 60.0  # /livez of a consuming role fails once its event loop has not turned for this long
    local_metrics_port: int = 9400  # the local stack gives its consuming roles ports from here up

    local_dir: str = ".local"
    # Where `headwater backup` writes and `restore` reads by default: a directory the ClickHouse server
    # sees at the same path and allows in its backups.allowed_path (the local stack's does).
    backup_dir: str = ".local/backups"
    kafka_libs_dir: str = ".local/kafka-libs"  # shared by every local stack, so jars download once
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"

    @property
    def local_path(self) -> Path:
        return Path(self.local_dir).resolve()


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return kind(value)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults, then the TOML file, then the environment."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        values.update(tomllib.loads(Path(config_file).read_text()))
    hints = get_type_hints(Settings)
    for field in dataclasses.fields(Settings):
        env_value = environ.get(ENV_PREFIX + field.name.upper())
        if env_value is not None:
            values[field.name] = env_value
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    coerced = {}
    for name, value in values.items():
        try:
            coerced[name] = _coerce(value, hints[name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"setting {name} (HEADWATER_{name.upper()}): {value!r} is not a "
                             f"{hints[name].__name__}") from exc
    settings = Settings(**coerced)
    check_secrets(settings)
    check_choices(settings)
    return settings


CHOICES = {"smtp_security": ("starttls", "tls", "none")}


def check_choices(settings: Settings) -> None:
    """Refuse a setting that must be one of a few words and is none of them."""
    for name, allowed in CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise ValueError(f"setting {name} (HEADWATER_{name.upper()}) must be one of {', '.join(allowed)}, "
                             f"not {getattr(settings, name)!r}")


def check_secrets(settings: Settings) -> None:
    """Refuse a secret still set to an example's placeholder, and a sealing key too short to be one."""
    for name in SECRET_SETTINGS:
        if PLACEHOLDER in getattr(settings, name).lower():
            raise ValueError(f"setting {name} (HEADWATER_{name.upper()}) is still the example's CHANGE-ME "
                             "placeholder: set a secret of your own (for example: openssl rand -hex 32)")
    if settings.secret_key and len(settings.secret_key) < 32:
        raise ValueError("setting secret_key (HEADWATER_SECRET_KEY) must be at least 32 characters "
                         "(for example: openssl rand -hex 32)")


@functools.cache
def get_settings() -> Settings:
    return load_settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    return {
        ENV_PREFIX + field.name.upper(): str(getattr(settings, field.name))
        for field in dataclasses.fields(Settings)
    }
