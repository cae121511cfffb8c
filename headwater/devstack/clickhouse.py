"""ClickHouse for local runs and CI: the 26.9 engine from PyPI (chdb-core) served on the native TCP
and HTTP ports, so that code reaches it through clickhouse-driver exactly as it reaches a real
clickhouse-server in production.

How it works: ``chdb._chdb.query`` runs a real clickhouse-local, which reads ``config.xml`` from the
current directory. ``SYSTEM START LISTEN`` opens the listeners, which stay open only while that same
call runs, so the call ends with a query that never returns. Stopping means killing that query
through the HTTP port; the engine then flushes and returns. One server per process and per data
directory, and no passwords, so it binds to 127.0.0.1 only. After the keep-alive query is killed the
engine sometimes ends the process with exit code 1 instead of returning; its data is on disk either way
(MergeTree parts are complete when an INSERT is acknowledged).
"""

from __future__ import annotations

import os
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path

from headwater.settings import Settings

KEEPALIVE = "SELECT sum(sleep(1)) FROM system.numbers SETTINGS max_block_size = 1"
# Merges run at nice 10: on a machine the whole pipeline shares, inserts and the roles go first, and
# merges take the idle time (a row is queryable once its insert is acknowledged, before any merge).
CONFIG = """<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <os_threads_nice_value_merge_mutate>10</os_threads_nice_value_merge_mutate>
</clickhouse>
"""


def clickhouse_dir(settings: Settings) -> Path:
    return settings.local_path / "clickhouse"


def user_files_dir(settings: Settings) -> Path:
    """Where ``file(…)`` (and so ``headwater export``) writes: the engine resolves it against its working
    directory, the server's home here; a clickhouse-server uses its ``user_files_path``."""
    return clickhouse_dir(settings)


def http_url(settings: Settings) -> str:
    return f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/"


def is_up(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(http_url(settings) + "ping", timeout=1) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def request_stop(settings: Settings) -> None:
    """Kill the keep-alive query (a POST: GET requests are read-only), which stops the server."""
    sql = f"KILL QUERY WHERE query = '{KEEPALIVE}' OR startsWith(query, 'SYSTEM START LISTEN') ASYNC"
    request = urllib.request.Request(http_url(settings), data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


def serve(settings: Settings) -> None:
    """Run the server in this process until SIGTERM or SIGINT, then stop it cleanly."""
    from chdb import _chdb

    home = clickhouse_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.xml").write_text(
        CONFIG.format(tcp=settings.clickhouse_port, http=settings.clickhouse_http_port)
    )
    os.chdir(home)
    sql = f"SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; {KEEPALIVE}"

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
