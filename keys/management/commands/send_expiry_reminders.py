"""`manage.py send_expiry_reminders`: the periodic expiry reminders, by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from keys.services.reminders import send_due


class Command(BaseCommand):
    help = (
        "Mail each published address of a key that expires within EXPIRY_REMINDER_DAYS how to "
        "extend it (once per threshold and expiry date)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=None, help="keys at most (EXPIRY_REMINDER_BATCH)")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = send_due(options["limit"])
        self.stdout.write(f"reminded {counts['keys']} key(s): {counts['mails']} mail(s) queued")
