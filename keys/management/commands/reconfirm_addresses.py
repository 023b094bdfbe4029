"""`manage.py reconfirm_addresses`: the periodic re-confirmation, by hand."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from keys.services.reconfirmation import run


class Command(BaseCommand):
    help = (
        "Ask addresses confirmed more than RECONFIRM_DAYS ago to confirm again, and unpublish "
        "those not confirmed within RECONFIRM_GRACE_DAYS of the mail."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=None, help="requests at most (RECONFIRM_BATCH)")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.RECONFIRM_DAYS <= 0:
            self.stdout.write("re-confirmation is off (RECONFIRM_DAYS=0)")
            return
        counts = run(options["limit"])
        self.stdout.write(
            f"requested {counts['requested']}, unpublished {counts['expired']}, "
            f"closed {counts['not_sent']} undelivered and {counts['moot']} no longer applying"
        )
