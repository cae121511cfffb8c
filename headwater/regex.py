"""Regular expressions over data that senders control run on RE2 (google-re2), whose time is linear
in the input whatever the pattern: a project's ``mask_patterns``, the built-in masks, the crawler
list. Python's ``re`` backtracks, and one pattern such as ``(a+)+$`` or one long property made a
shared processor spend seconds on a single event.

RE2 refuses what it cannot run in linear time (back-references, look-around): such a pattern is
refused when the project is configured, with RE2's reason.
"""

from __future__ import annotations

import re2

MAX_PATTERN_CHARS = 1_000
MAX_PROGRAM_BYTES = 8 << 20  # RE2's memory budget for one compiled pattern


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to whoever configured it, not logged
    options.max_mem = max_mem
    return options


def compile_pattern(pattern: str, max_mem: int = MAX_PROGRAM_BYTES):
    """``pattern`` compiled by RE2; raises ``ValueError`` saying why when it is too long or RE2 cannot
    run it."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"longer than {MAX_PATTERN_CHARS} characters")
    try:
        return re2.compile(pattern, _options(max_mem))
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(reason) from exc


def compile_alternatives(patterns: list[str], max_mem: int = 64 << 20):
    """One RE2 pattern matching any of ``patterns`` (trusted lists, such as the crawler list)."""
    return re2.compile("|".join(f"(?:{p})" for p in patterns), _options(max_mem))
