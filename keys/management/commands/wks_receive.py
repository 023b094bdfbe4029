"""`manage.py wks_receive`: one inbound mail on standard input, for an MTA pipe.

Exit 0 when the mail was handled or refused (a refusal is logged, and
answered where the sender should know), 75 (EX_TEMPFAIL) while the database
is unavailable, so Postfix or Exim keeps the mail and tries again.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError

from keys.services import wks

EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = "Hand one RFC 5322 message on stdin to the Web Key Service."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--recipient",
            default=os.environ.get("ORIGINAL_RECIPIENT", ""),
            help="the envelope recipient (Postfix: ${original_recipient}); default: the To header",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit = settings.WKS_MAX_MESSAGE_BYTES
        raw = sys.stdin.buffer.read(limit + 1)
        while sys.stdin.buffer.read(65536):  # an oversized mail is read to its end, not cut off mid-pipe
            pass
        try:
            outcome = wks.handle(raw, recipient=options["recipient"])
        except DatabaseError as exc:
            self.stderr.write(f"wks_receive: the database is unavailable ({type(exc).__name__}); try later")
            sys.exit(EX_TEMPFAIL)
        verdict = "handled" if outcome.accepted else "refused"
        self.stdout.write(f"{verdict}: {outcome.reason}" + (f" ({outcome.detail})" if outcome.detail else ""))
