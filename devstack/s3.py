"""The S3-compatible server the lake destination is tested and measured against: VersityGW (Apache-2.0)
serving a directory as S3 on a loopback port, built from the Go module proxy by
deploy/tools/install-s3-server.sh (once; kept in .local/tools)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx


class S3Server:
    """VersityGW serving ``root`` (each directory in it a bucket) on ``127.0.0.1:port``."""

    ACCESS_KEY, SECRET_KEY = "headwater-test", "headwater-test-secret-key"

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        checkout = Path(__file__).resolve().parents[1]
        subprocess.run(["bash", str(checkout / "deploy" / "tools" / "install-s3-server.sh")], check=True, timeout=1800)
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root.parent / "versitygw.log", "ab")
        env = {**os.environ, "ROOT_ACCESS_KEY": self.ACCESS_KEY, "ROOT_SECRET_KEY": self.SECRET_KEY}
        self.process = subprocess.Popen(
            [str(checkout / ".local" / "tools" / "bin" / "versitygw"), "--port", f"127.0.0.1:{self.port}",
             "posix", str(self.root)], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.endpoint_url, timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("versitygw did not start: see versitygw.log") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.endpoint}"
