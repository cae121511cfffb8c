"""A minimal HTTP/1.1 keep-alive client on asyncio streams, so the load generator spends its one
core on requests rather than on a general-purpose client library."""

from __future__ import annotations

import asyncio
import base64
import time


class Connection:
    def __init__(self, host: str, port: int, write_key: str) -> None:
        self.host, self.port = host, port
        auth = base64.b64encode(f"{write_key}:".encode()).decode()
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
            "Content-Type: application/json\r\nConnection: keep-alive\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, float]:
        """POST and read the whole answer; return (status, seconds)."""
        if self.writer is None:
            await self.open()
        started = time.perf_counter()
        request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode()
        self.writer.write(request + body)
        status_line = await self.reader.readline()
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1]), time.perf_counter() - started

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
