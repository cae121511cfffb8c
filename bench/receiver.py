"""A webhook receiver for the forwarder benchmark and ``make chaos``, in a process of its own (its CPU
is not the forwarder's): answers 200 to every POST and counts the events it got (a webhook's ``events``
or a Segment batch's ``batch``). ``GET /`` answers the count; with ``--ids``, ``GET /ids`` answers each
``messageId`` received and how many times."""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

COUNT = {"events": 0}
IDS: dict[str, int] = {}
KEEP_IDS = {"on": False}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the answer's headers and body go in two writes: no 40 ms stall

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        events = body.get("events") or body.get("batch") or []
        with LOCK:
            COUNT["events"] += len(events)
            if KEEP_IDS["on"]:
                for event in events:
                    IDS[event.get("messageId")] = IDS.get(event.get("messageId"), 0) + 1
        self._answer(b"{}")

    def do_GET(self) -> None:
        with LOCK:
            self._answer(orjson.dumps(IDS) if self.path == "/ids" else str(COUNT["events"]).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ids", action="store_true", help="keep each messageId received")
    args = parser.parse_args()
    KEEP_IDS["on"] = args.ids
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
