"""Telling an INSERT that ClickHouse refused for what it holds from one that failed because
ClickHouse is away or overloaded.

A refusal for content fails again however often it is retried, so retrying it would stall loading
for every project; an outage passes. The indexer retries outages for ever and splits a refused INSERT
until the records that ClickHouse refuses on their own are found, and dead-letters those (see
:mod:`indexer.service`). Only the codes below count as content: anything else, unknown codes
included, is treated as an outage, because retrying loses nothing while dead-lettering healthy
records during an outage would.
"""

from __future__ import annotations

from clickhouse_driver.errors import ServerException

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that a row's values cause
CONTENT_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    128,  # TOO_LARGE_ARRAY_SIZE
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DONT_MATCH
    306,  # TOO_DEEP_RECURSION
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    407,  # DECIMAL_OVERFLOW
})
TOO_MANY_PARTS = 252  # also an outage: "merges are processing significantly slower than inserts"


def refused_for_content(exc: BaseException) -> bool:
    if not isinstance(exc, ServerException):
        return False
    if exc.code == TOO_MANY_PARTS:
        return "partitions for single INSERT" in str(exc)
    return exc.code in CONTENT_CODES


def refusal_detail(exc: BaseException) -> str:
    """ClickHouse's code and message on one line, without its stack trace."""
    message = getattr(exc, "message", "") or str(exc)
    text = message.split("Stack trace:")[0].strip().replace("\n", " ")
    code = getattr(exc, "code", None)
    return (f"Code {code}: {text}" if code is not None else text)[:500] or type(exc).__name__
