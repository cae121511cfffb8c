"""structlog set-up: JSON lines when stdout is not a terminal, readable console output when it is.

Services log one canonical line per unit of work (a request, a batch) with bound context.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

from headwater.settings import Settings


def _json_renderer() -> structlog.processors.JSONRenderer:
    return structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj).decode())


def configure_logging(settings: Settings, role: str, stream=None) -> None:
    """Services log to stdout; commands that print results (``project``, ``migrate``) pass stderr."""
    stream = stream or sys.stdout
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not stream.isatty())
    level = logging.getLevelName(settings.log_level.upper())
    renderer = _json_renderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(role=role)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
