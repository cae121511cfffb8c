"""A PostgreSQL server for the import tests and benchmarks: Debian's package (installed by
deploy/local/install-system.sh), a fresh cluster in a directory of the project's, on a loopback port.
PostgreSQL refuses to run as root, so as root the cluster belongs to, and runs as, the ``postgres``
user the package creates, in a directory of its own under the system's temporary directory (a
checkout's directories may not be open to that user: a fresh clone in ``mktemp -d`` is not)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run deploy/local/install-system.sh")
    return Path(found[-1]).parent


class PostgresServer:
    """A cluster in ``root`` (as root: a temporary directory) on ``127.0.0.1:port``, user ``USER`` without
    a password (trust, loopback)."""

    USER = "headwater"

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.bin = _binaries()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_owner, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self.as_owner:
            self.root = Path(tempfile.mkdtemp(prefix="headwater-postgres-"))
            shutil.chown(self.root, "postgres")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True)
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", self.USER, "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "postgres.log"), "-w", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        deadline = time.monotonic() + 30
        while subprocess.run(["pg_isready" if shutil.which("pg_isready") else str(self.bin / "pg_isready"),
                              "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: see {self.root / 'postgres.log'}")
            time.sleep(0.2)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; its output (unaligned, tuples only)."""
        done = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER,
                               "-d", database, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql],
                              check=True, capture_output=True, text=True, timeout=300)
        return done.stdout

    def stop(self) -> None:
        subprocess.run([*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                        "stop"], capture_output=True, timeout=60)
        if self.as_owner:
            shutil.rmtree(self.root, ignore_errors=True)
