"""`manage.py wks_smtpd`: the Web Key Service's own SMTP listener (aiosmtpd).

Listens on WKS_SMTP_BIND, accepts RCPT only for the submission addresses
(550 for any other, logged only: no message was sent), each once however
often it is repeated and at most MAX_RECIPIENTS of them (452 for more),
refuses data above WKS_MAX_MESSAGE_BYTES (552, from aiosmtpd, at MAIL's
SIZE= or while reading the data; logged and kept as a wks_refused event
like every other refusal), and hands each message to keys.services.wks,
one per recipient, with its envelope sender.
A database outage or a server key that cannot be opened answers 451 so the
sending MTA retries; any other error (a bug) is logged and answered 554.
No error in one message stops the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection

from keys.services import wks

log = logging.getLogger("keyserver.wks")
MAX_RECIPIENTS = 10


class Handler:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        address = address.strip().lower()
        if address not in await _in_thread(wks.submission_addresses):
            log.warning("wks mail refused: wrong recipient", extra={"reason": "wrong recipient"})
            return "550 5.1.1 Not a key submission address here"
        if address in envelope.rcpt_tos:
            return "250 OK"  # once: a repeated recipient is not a second delivery
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            log.warning("wks mail refused: too many recipients", extra={"reason": "too many recipients"})
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        sender = str(envelope.mail_from or "")
        try:
            for recipient in envelope.rcpt_tos:
                await _in_thread(wks.handle, raw, recipient=recipient, envelope_sender=sender)
        except wks.TEMPORARY:  # logged by wks.handle where it needs a word
            return "451 4.3.0 Temporarily unable to process the message, try again later"
        except Exception:  # a bug must not stop the listener; the sending MTA bounces the mail
            log.exception("wks mail failed")
            return "554 5.3.0 Unable to process the message"
        return "250 OK"


class Listener(SMTP):
    """aiosmtpd's server, telling us about the mail it refuses on its own."""

    async def push(self, status: Any) -> None:
        text = status.decode() if isinstance(status, bytes) else str(status)
        if text.startswith(("552 ", "500 Line too long")):
            sender = str(self.envelope.mail_from or "") if self.envelope else ""
            reason = "oversized" if text.startswith("552") else "line too long"
            refused = wks.Refused(
                reason, f"{text[4:].strip()} (limit {settings.WKS_MAX_MESSAGE_BYTES} bytes)"
            )
            with contextlib.suppress(DatabaseError):  # the log line went out; no event then
                await _in_thread(wks.record_refusal, refused, sender.lower())
        await super().push(status)


class WksController(Controller):
    def factory(self) -> SMTP:
        return Listener(self.handler, **self.SMTP_kwargs)


async def _in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    def run() -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()  # this executor thread's own connection

    return await asyncio.get_running_loop().run_in_executor(None, run)


def controller(bind: str | None = None) -> Controller:
    """A listener (not yet started) on `bind` (host:port), WKS_SMTP_BIND by default."""
    host, _, port = (bind or settings.WKS_SMTP_BIND).rpartition(":")
    return WksController(
        Handler(),
        hostname=host.strip("[]") or "127.0.0.1",
        port=int(port),
        data_size_limit=settings.WKS_MAX_MESSAGE_BYTES,
        ident="keyserver WKS",
    )


class Command(BaseCommand):
    help = "Run the Web Key Service's SMTP listener on WKS_SMTP_BIND."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default="", help="host:port (default WKS_SMTP_BIND)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            keys = wks.ensure_keys()
            self.stdout.write("submission addresses: " + ", ".join(k.address for k in keys))
        except DatabaseError as exc:
            self.stderr.write(f"the database is unavailable ({exc}); the keys are made on first use")
        listener = controller(options["bind"] or None)
        listener.start()
        self.stdout.write(f"listening on {listener.hostname}:{listener.port}")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            listener.stop()
