"""The data-lake destination: Parquet files on S3-compatible storage or in a local directory.

Settings: ``url``, ``s3://BUCKET/PREFIX`` or ``file:///PATH`` (a directory below the forwarder's
``forward_local_dir``); for S3, ``endpoint`` (``host:port`` of an S3-compatible server; empty for
AWS), ``region``, ``access_key_id``, ``secret_access_key`` (a secret) and ``scheme`` (``https``, or
``http`` for a server on the same network).

Layout, Hive-style, by the day (UTC) the collector received each event, as Segment's data lakes do::

    PREFIX/project=<project>/date=YYYY-MM-DD/part-<partition>-<offset>-<index>.parquet

(the Kafka partition and offset of the file's first event, and its place in that record's events).

Each file holds a run of consecutive events of one Kafka partition and one day; its columns are the
event's identity and time as typed columns, and its ``properties``, ``context`` and ``traits`` as
JSON text (:data:`SCHEMA`). Any engine that reads Parquet reads it: no proprietary format, no catalog.

**Exactly once, across crashes and replays.** A file is written whole or not at all: on S3 by one
upload that becomes visible only when complete, in a directory by writing a hidden temporary file and
renaming it. A file's name is fixed by its first event's partition and offset, and after writing it,
the forwarder removes the files of the same partition and day whose first offset falls inside it
(left by an earlier run that cut its batches elsewhere). So the events of a range delivered again,
after a crash before the commit or by a replay, replace the files that held them: a reader may see a
range twice only in the moment between the write and the removal, and never after the forwarder goes
on. Offsets are committed only after both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from forwarder.addresses import AddressRefused, resolve
from forwarder.outcomes import Delivered, Item, Outcome, Refused, Retry
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SETTINGS = frozenset({"url", "endpoint", "region", "access_key_id", "secret_access_key", "scheme"})
SCHEMA = pa.schema([
    ("message_id", pa.string()), ("type", pa.string()), ("event", pa.string()),
    ("anonymous_id", pa.string()), ("user_id", pa.string()),
    ("timestamp", pa.timestamp("ms", tz="UTC")), ("received_at", pa.timestamp("ms", tz="UTC")),
    ("properties", pa.string()), ("context", pa.string()), ("traits", pa.string()),
    ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
])


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a lake's files go: a pyarrow file system and the path of the lake's root on it."""

    filesystem: pafs.FileSystem
    root: str


def check_lake(settings: dict, local_root: str) -> list[str]:
    problems = []
    if set(settings) - SETTINGS:
        problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; a lake has {sorted(SETTINGS)}")
    url = settings.get("url")
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("s3", "file"):
        return [*problems, "url: s3://BUCKET/PREFIX or file:///PATH"]
    if parsed.scheme == "s3" and not parsed.netloc:
        problems.append("url: s3://BUCKET/PREFIX names a bucket")
    if parsed.scheme == "file" and not _below(parsed.path, local_root):
        problems.append(f"url: a file:// lake must be a directory below forward_local_dir "
                        f"({local_root or 'not set, so none is allowed'})")
    if settings.get("scheme", "https") not in ("http", "https"):
        problems.append("scheme: http or https")
    return problems


def _below(path: str, root: str) -> bool:
    if not root or not path.startswith("/"):
        return False
    resolved, base = os.path.normpath(path), os.path.normpath(root)
    return resolved == base or resolved.startswith(base.rstrip("/") + "/")


def file_name(project_id: str, day: str, first: Item) -> str:
    return (f"project={project_id}/date={day}/"
            f"part-{first.partition:05d}-{first.offset:020d}-{first.index:05d}.parquet")


def first_event_of(name: str) -> tuple[int, int, int] | None:
    """The partition, offset and index of the first event of a file the lake wrote, from its name."""
    base = name.rsplit("/", 1)[-1]
    if not (base.startswith("part-") and base.endswith(".parquet")):
        return None
    parts = base[5:-8].split("-")
    return (int(parts[0]), int(parts[1]), int(parts[2])) if len(parts) == 3 and all(
        p.isdigit() for p in parts) else None


def day_of(received_at_ms: int) -> str:
    return datetime.fromtimestamp(received_at_ms / 1000, UTC).strftime("%Y-%m-%d")


def runs(items: list[Item]) -> list[list[Item]]:
    """The items cut into files: consecutive items of one partition and one day."""
    ordered = sorted(items, key=lambda item: (item.partition, item.offset, item.index))
    return [list(group) for _, group in
            itertools.groupby(ordered, key=lambda item: (item.partition, day_of(item.received_at_ms)))]


def table(items: list[Item]) -> pa.Table:
    def text(item: Item, name: str) -> str | None:
        value = item.event.get(name)
        return None if value is None else orjson.dumps(value).decode()

    def field(item: Item, name: str) -> str | None:
        value = item.event.get(name)
        return None if value is None else str(value)

    columns = {
        "message_id": [field(i, "messageId") for i in items], "type": [field(i, "type") for i in items],
        "event": [field(i, "event") or field(i, "name") for i in items],
        "anonymous_id": [field(i, "anonymousId") for i in items], "user_id": [field(i, "userId") for i in items],
        "timestamp": [_time(i.event.get("timestamp")) or i.received_at_ms for i in items],
        "received_at": [i.received_at_ms for i in items],
        "properties": [text(i, "properties") for i in items], "context": [text(i, "context") for i in items],
        "traits": [text(i, "traits") for i in items],
        "kafka_partition": [i.partition for i in items], "kafka_offset": [i.offset for i in items],
    }
    return pa.table(columns, schema=SCHEMA)


def _time(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


class Lake:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        return check_lake(settings, deployment.forward_local_dir)

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.url = urlparse(spec.settings["url"])

    async def start(self) -> None:
        pass

    async def place(self) -> Place:
        if self.url.scheme == "file":
            return Place(pafs.LocalFileSystem(), self.url.path.rstrip("/"))
        s = self.spec.settings
        endpoint = s.get("endpoint") or None
        if endpoint:
            host, _, port = endpoint.rpartition(":")
            await resolve(host or endpoint, int(port or 443), self.settings.forward_private_networks)
        filesystem = pafs.S3FileSystem(
            access_key=s.get("access_key_id"), secret_key=s.get("secret_access_key"),
            region=s.get("region", "us-east-1"), endpoint_override=endpoint, scheme=s.get("scheme", "https"),
            connect_timeout=self.settings.forward_timeout_s, request_timeout=self.settings.forward_timeout_s,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
        return Place(filesystem, f"{self.url.netloc}/{self.url.path.strip('/')}".rstrip("/"))

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        try:
            place = await self.place()
            for run in runs(items):
                await asyncio.to_thread(self._write, place, run)
        except AddressRefused as exc:
            return Refused(str(exc))
        except (OSError, pa.ArrowException) as exc:
            return Retry(f"{type(exc).__name__}: {str(exc)[:300]}")
        return Delivered()

    def _write(self, place: Place, run: list[Item]) -> None:
        """Write one run's file whole, then remove the files it replaces."""
        first, last = run[0], run[-1]
        name = f"{place.root}/{file_name(self.spec.project_id, day_of(first.received_at_ms), first)}"
        directory, base = name.rsplit("/", 1)
        data = pa.BufferOutputStream()
        pq.write_table(table(run), data, compression="zstd")
        if isinstance(place.filesystem, pafs.LocalFileSystem):
            Path(directory).mkdir(parents=True, exist_ok=True)
            temporary = f"{directory}/.{base}.tmp"
            with place.filesystem.open_output_stream(temporary) as out:
                out.write(data.getvalue())
            descriptor = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            place.filesystem.move(temporary, name)
        else:
            with place.filesystem.open_output_stream(name) as out:
                out.write(data.getvalue())
        for info in place.filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
            found = first_event_of(info.path)
            if found and found[0] == first.partition and (first.offset, first.index) < found[1:] <= (
                    last.offset, last.index):
                place.filesystem.delete_file(info.path)

    async def stop(self) -> None:
        pass
