"""The email destination: each batch is one message, over the operator's SMTP server.

Settings: ``to``, a list of 1 to 10 addresses. The server is the deployment's (``smtp_host``,
``smtp_port``, ``smtp_security`` starttls, tls or none, ``smtp_user``, ``smtp_password``, ``smtp_from``),
never a project's, so a project's settings cannot point the forwarder at another host. Made for alerts
(a destination with ``"source": "alerts"``): the subject names the first alert and how many there are,
the body has one line each. A server that does not answer, or answers 4xx, is tried again; 5xx (a
refused recipient or sender, failed authentication) dead-letters the batch. The message is sent by
:mod:`smtplib` in a thread, so the forwarder's loop never waits on the server.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from forwarder.outcomes import Delivered, Item, Outcome, Refused, Retry
from forwarder.slack import line
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SETTINGS = frozenset({"to"})
MAX_RECIPIENTS = 10
ADDRESS = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
MAX_LINES = 100


def _plain(text: str) -> str:
    """Markup and line breaks out: a subject or body line from what a sender controls."""
    return " ".join(text.replace("*", "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").split())


def compose(spec: DestinationSpec, sender: str, items: list[Item], batch_id: str) -> EmailMessage:
    lines = [_plain(line(item.event)) for item in items[:MAX_LINES]]
    if len(items) > MAX_LINES:
        lines.append(f"... and {len(items) - MAX_LINES} more")
    message = EmailMessage()
    count = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    message["Subject"] = f"[Headwater {spec.project_id}] {lines[0][:150]}{count}"
    message["From"] = sender
    message["To"] = ", ".join(spec.settings["to"])
    message["Message-ID"] = make_msgid(idstring=batch_id.replace("-", "")[:32], domain="headwater")
    message["Date"] = format_datetime(datetime.now(UTC))
    message.set_content("\n".join(lines) + f"\n\n(destination {spec.name}, batch {batch_id})\n")
    return message


class Email:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        problems = []
        if not deployment.smtp_host:
            problems.append("the deployment has no SMTP server (setting smtp_host)")
        if set(settings) - SETTINGS:
            problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; email has {sorted(SETTINGS)}")
        to = settings.get("to")
        if not isinstance(to, list) or not 1 <= len(to) <= MAX_RECIPIENTS or not all(
                isinstance(a, str) and ADDRESS.fullmatch(a) for a in to):
            problems.append(f"to: a list of 1 to {MAX_RECIPIENTS} email addresses")
        return problems

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings

    async def start(self) -> None:
        pass

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        message = compose(self.spec, self.settings.smtp_from, items, batch_id)
        return await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> Outcome:
        s = self.settings
        try:
            if s.smtp_security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.forward_timeout_s,
                                                        context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.forward_timeout_s)
            with client:
                if s.smtp_security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if s.smtp_user:
                    client.login(s.smtp_user, s.smtp_password)
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            reason = f"SMTP {exc.smtp_code}: {said[:200]}"
            return Retry(reason) if 400 <= exc.smtp_code < 500 else Refused(reason)
        except smtplib.SMTPRecipientsRefused as exc:
            return Refused(f"recipients refused: {sorted(exc.recipients)}")
        except (smtplib.SMTPException, OSError) as exc:
            return Retry(f"{s.smtp_host}:{s.smtp_port}: {type(exc).__name__}: {exc}")
        return Delivered()

    async def stop(self) -> None:
        pass
