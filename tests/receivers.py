"""Real receivers on loopback ports for the destination tests: a webhook receiver, and an SMTP server
(aiosmtpd) for the email destination. (The S3-compatible server the lake writes to is devstack.s3.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[dict, dict], tuple[int, dict]]  # (body, headers) -> (status, headers)


def accept(body: dict, headers: dict) -> tuple[int, dict]:
    return 200, {}


class Receiver:
    """A webhook receiver: records every request and answers what ``answer`` says."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, dict, dict]] = []  # (status answered, headers, body)
        self.answer: Answer = accept
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body, headers = json.loads(raw), {k.lower(): v for k, v in self.headers.items()}
                headers["raw-body"] = raw.decode()
                status, extra = receiver.answer(body, headers)
                with receiver.lock:
                    receiver.requests.append((status, headers, body))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self, project: str | None = None) -> list[dict]:
        """The events of every request answered 2xx (of ``project``)."""
        with self.lock:
            return [event for status, _, body in self.requests if 200 <= status < 300
                    and (project is None or body.get("project") == project) for event in body["events"]]

    def delivered_ids(self, project: str) -> set[str]:
        return {event["messageId"] for event in self.delivered(project)}


class Mailbox:
    """An SMTP server (aiosmtpd's, in its own thread) keeping every message it is sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list = []  # email.message.EmailMessage
        self.controller = None

    def start(self) -> None:
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:
                message = message_from_bytes(envelope.content, policy=policy.default)
                box.messages.append((list(envelope.rcpt_tos), message))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    def to(self, address: str) -> list:
        return [message for recipients, message in list(self.messages) if address in recipients]
