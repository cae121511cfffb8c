"""Running a :class:`~analytics.queries.Query` and showing its result: as rows, as the SQL that is sent
(``--sql``), as a table or as JSON lines."""

from __future__ import annotations

import json
from datetime import date, datetime

from clickhouse_driver import Client

from analytics.queries import Query


def rows(client: Client, query: Query) -> list[tuple]:
    return client.execute(query.sql, query.params)


def records(client: Client, query: Query) -> list[dict]:
    return [dict(zip(query.columns, row)) for row in rows(client, query)]


def rendered_sql(client: Client, query: Query) -> str:
    """The SQL exactly as it is sent, with the parameters substituted: ready to paste into
    clickhouse-client and adapt."""
    # Parameters are rendered for the server's time zone, known once connected. (Not force_connect():
    # it marks the connection as running a query, and the client's next query then fails.)
    client.execute("SELECT 1")
    return client.substitute_params(query.sql, query.params, client.connection.context) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return value


def as_json_lines(query: Query, result: list[tuple]) -> str:
    return "".join(json.dumps({c: _plain(v) for c, v in zip(query.columns, row)}, ensure_ascii=False) + "\n"
                   for row in result)


def as_table(query: Query, result: list[tuple]) -> str:
    cells = [list(query.columns)] + [[str(_plain(v)) for v in row] for row in result]
    widths = [max(len(row[i]) for row in cells) for i in range(len(query.columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n" + ("(no rows)\n" if not result else "")
