"""A MySQL-compatible server for the import tests: Debian's MariaDB (installed by
deploy/local/install-system.sh), a fresh data directory of the project's, on a loopback port, user
``root`` without a password (loopback only)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path


class MySQLServer:
    USER = "root"

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        data = self.root / "data"
        data.mkdir(parents=True)
        subprocess.run(["mariadb-install-db", "--user=root", f"--datadir={data}", "--skip-test-db",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=300)
        log = open(self.root / "mariadb.log", "ab")
        self.process = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root / 'mysql.sock'}", f"--pid-file={self.root / 'pid'}",
             "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"MariaDB did not start: see {self.root / 'mariadb.log'}") from None
                time.sleep(0.3)

    def sql(self, statements: str, database: str = "") -> str:
        done = subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(self.port), "-u", self.USER, "-N", "-B",
                               *([database] if database else []), "-e", statements],
                              check=True, capture_output=True, text=True, timeout=300)
        return done.stdout

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
