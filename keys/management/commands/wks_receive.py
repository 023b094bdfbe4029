"""`manage.py wks_receive`: one inbound mail on standard input, for an MTA pipe.

Exit codes (sysexits.h), each deliberate, and never a traceback in the
output (the MTA may return that output to the sender):

- 0 when the mail was handled or refused (a refusal is logged, and answered
  where the sender should know);
- 75 (EX_TEMPFAIL) while the database is unavailable or the submission
  address's server key cannot be opened (SECRET_KEY changed: `manage.py
  server_key rotate`), so Postfix or Exim keeps the mail and tries again;
- 70 (EX_SOFTWARE) for any other error: a bug, logged with its place (the
  traceback at LOG_LEVEL=DEBUG); the MTA bounces the mail instead of
  trying it again for days.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from keys.services import wks

EX_SOFTWARE = 70
EX_TEMPFAIL = 75
log = logging.getLogger("keyserver.wks")


class Command(BaseCommand):
    help = "Hand one RFC 5322 message on stdin to the Web Key Service."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--recipient",
            default=os.environ.get("ORIGINAL_RECIPIENT", ""),
            help="the envelope recipient (Postfix: ${original_recipient}); default: the To header",
        )
        parser.add_argument(
            "--sender",
            default=None,
            help="the envelope sender (Postfix: ${sender}, Exim: $sender_address); empty or "
            "MAILER-DAEMON for a bounce, which is never answered; default: unknown",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit = settings.WKS_MAX_MESSAGE_BYTES
        raw = sys.stdin.buffer.read(limit + 1)
        while sys.stdin.buffer.read(65536):  # an oversized mail is read to its end, not cut off mid-pipe
            pass
        try:
            outcome = wks.handle(raw, recipient=options["recipient"], envelope_sender=options["sender"])
        except wks.TEMPORARY as exc:
            what = "the server key" if isinstance(exc, wks.ServerKeyUnreadable) else "the database"
            self.stderr.write(f"wks_receive: {what} is unavailable ({type(exc).__name__}); try later")
            sys.exit(EX_TEMPFAIL)
        except Exception as exc:  # a bug: one deliberate, permanent exit, the details in the log
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            place = f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
            log.error("wks mail failed: %s at %s", type(exc).__name__, place)
            log.debug("wks mail failed", exc_info=exc)
            self.stderr.write(f"wks_receive: internal error ({type(exc).__name__}); the mail was not handled")
            sys.exit(EX_SOFTWARE)
        verdict = "handled" if outcome.accepted else "refused"
        self.stdout.write(f"{verdict}: {outcome.reason}" + (f" ({outcome.detail})" if outcome.detail else ""))
