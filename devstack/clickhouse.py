"""ClickHouse for local runs and CI: the 26.9 engine from PyPI (chdb-core) served on the native TCP
and HTTP ports, so that code reaches it through clickhouse-driver exactly as it reaches a real
clickhouse-server in production.

How it works: ``chdb._chdb.query`` runs a real clickhouse-local, which reads ``config.xml`` from the
current directory. ``SYSTEM START LISTEN`` opens the listeners, which stay open only while that same
call runs, so the call ends with a query that never returns. Stopping means killing that query
through the native port; the engine then flushes and returns. One server per process and per data
directory.

It serves the native protocol only, on 127.0.0.1. The engine's local mode has one user, ``default``,
without a password, and ignores a users configuration; its HTTP port would let any web page the
developer opens run SQL against it (a form POST needs no CORS, and the engine answers browsers with
``Access-Control-Allow-Origin: *``). A browser cannot speak the native protocol: a request to that port
is refused as a protocol error. SQL from a shell: ``headwater sql``. After the keep-alive query is killed the
engine sometimes ends the process with exit code 1 instead of returning; its data is on disk either way
(MergeTree parts are complete when an INSERT is acknowledged).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from headwater.settings import Settings

KEEPALIVE = "SELECT sum(sleep(1)) FROM system.numbers SETTINGS max_block_size = 1"
# Merges run at nice 10: on a machine the whole pipeline shares, inserts and the roles go first, and
# merges take the idle time (a row is queryable once its insert is acknowledged, before any merge).
CONFIG = """<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <os_threads_nice_value_merge_mutate>10</os_threads_nice_value_merge_mutate>
    <backups><allowed_path>{backups}/</allowed_path></backups>
</clickhouse>
"""


def clickhouse_dir(settings: Settings) -> Path:
    return settings.local_path / "clickhouse"


def user_files_dir(settings: Settings) -> Path:
    """Where ``file(…)`` (and so ``headwater export``) writes: the engine resolves it against its working
    directory, the server's home here; a clickhouse-server uses its ``user_files_path``."""
    return clickhouse_dir(settings)


def _client(settings: Settings, timeout_s: float):
    from clickhouse_driver import Client

    return Client(settings.clickhouse_host, port=settings.clickhouse_port, connect_timeout=timeout_s,
                  send_receive_timeout=timeout_s)


def is_up(settings: Settings) -> bool:
    client = _client(settings, 1)
    try:
        return client.execute("SELECT 1") == [(1,)]
    except Exception:  # refused, reset, or still starting: not up
        return False
    finally:
        client.disconnect()


def request_stop(settings: Settings) -> None:
    """Kill the keep-alive query, which stops the server."""
    sql = f"KILL QUERY WHERE query = '{KEEPALIVE}' OR startsWith(query, 'SYSTEM START LISTEN') ASYNC"
    client = _client(settings, 5)
    try:
        client.execute(sql)
    except Exception as exc:  # clickhouse_driver's errors, or the socket's
        raise OSError(f"could not ask ClickHouse to stop: {exc}") from exc
    finally:
        client.disconnect()


def serve(settings: Settings) -> None:
    """Run the server in this process until SIGTERM or SIGINT, then stop it cleanly."""
    from chdb import _chdb

    home, backups = clickhouse_dir(settings), Path(settings.backup_dir).resolve()  # before the chdir below
    home.mkdir(parents=True, exist_ok=True)
    backups.mkdir(parents=True, exist_ok=True)
    (home / "config.xml").write_text(CONFIG.format(tcp=settings.clickhouse_port, backups=backups))
    os.chdir(home)
    sql = f"SYSTEM START LISTEN TCP; {KEEPALIVE}"

    def run() -> None:
        try:
            _chdb.query(sql, "CSV", path=str(home / "data"))
        except Exception as exc:  # the query is meant to end by being killed
            if "QUERY_WAS_CANCELLED" not in str(exc):
                print(f"clickhouse stopped: {exc}", flush=True)

    def on_signal(signum, _frame) -> None:
        try:
            request_stop(settings)
        except OSError as exc:  # the data survives a hard stop too
            print(f"clean stop failed ({exc!r}); exiting hard", flush=True)
            os._exit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = threading.Thread(target=run, name="clickhouse", daemon=True)
    server.start()
    while server.is_alive():
        server.join(0.5)
    print("clickhouse stopped", flush=True)
