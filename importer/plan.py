"""An import plan: which tables to load into which project, from where, and how (checked with msgspec;
a bad plan is refused with every problem named).

```json
{"project": "shop", "tables": [
  {"name": "organizations", "key": ["id"], "cursor": "updated_at", "user_id": "owner_id",
   "source": {"kind": "postgresql", "host": "db.internal", "port": 5432, "database": "app",
              "table": "organizations", "schema": "public", "user": "reader", "password_env": "APP_DB_PASSWORD"}},
  {"name": "plans", "key": ["id"], "source": {"kind": "csv", "path": "exports/plans.csv"}}]}
```

Each table lands in ``hw_<project>.imported_<name>``. Without ``cursor`` a run is a **full** load (the table
is replaced by the source's rows, atomically); with it, an **incremental** one (the rows whose cursor is at
least the largest already loaded). ``key`` names the columns that identify a row: the table is a
ReplacingMergeTree on them, so a row loaded twice is one row. ``user_id`` names the column holding the
id that events carry (``user_id`` or ``anonymous_id``), for joins to events and persons. Passwords are
never in the plan: ``password_env`` names the environment variable that holds one.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Column = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
Identifier = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")]
DATABASES = ("postgresql", "mysql")
FILES = ("csv", "parquet")


class Source(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["postgresql", "mysql", "csv", "parquet"]
    host: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9.:_-]{1,253}$")] = ""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 0
    database: Identifier = "postgres"
    schema: Identifier = ""  # postgresql: the table's schema (default: public)
    table: Identifier = ""
    user: Identifier = ""
    password_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")] = ""
    path: Annotated[str, msgspec.Meta(max_length=4096)] = ""  # csv, parquet: a file on this machine


class TableImport(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    source: Source
    key: Annotated[list[Column], msgspec.Meta(min_length=1, max_length=8)]
    cursor: Column | Literal[""] = ""
    user_id: Column | Literal[""] = ""

    @property
    def table(self) -> str:
        return f"imported_{self.name}"


class ImportPlan(msgspec.Struct, forbid_unknown_fields=True):
    project: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,48}$")]
    tables: Annotated[list[TableImport], msgspec.Meta(min_length=1, max_length=100)]


class PlanError(ValueError):
    """A plan with problems; ``problems`` names each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_plan(raw: bytes) -> ImportPlan:
    try:
        plan = msgspec.json.decode(raw, type=ImportPlan)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PlanError([str(exc).replace("$.", "")]) from exc
    problems = [p for table in plan.tables for p in _check(table)]
    names = [t.name for t in plan.tables]
    problems += [f"tables: {name!r} is imported twice" for name in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise PlanError(problems)
    return plan


def _check(t: TableImport) -> list[str]:
    where, source = f"tables ({t.name})", t.source
    if source.kind in DATABASES:
        problems = [f"{where}.source.{field}: a {source.kind} source needs it" for field in ("host", "table", "user")
                    if not getattr(source, field)]
        return problems + ([f"{where}.source.path: a {source.kind} source reads a table, not a file"]
                           if source.path else [])
    problems = [] if source.path else [f"{where}.source.path: a {source.kind} source needs the file's path"]
    return problems + [f"{where}.source.{field}: a {source.kind} source is a file"
                       for field in ("host", "table", "user", "password_env") if getattr(source, field)]
