"""`manage.py send_notices`: the periodic change notices, by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from keys.services.notice_mail import send_due


class Command(BaseCommand):
    help = "Queue one change notice per address whose pending changes are due."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = send_due()
        self.stdout.write(
            f"queued {counts['queued']} notice(s); {counts['waiting']} address(es) wait for their interval, "
            f"{counts['dropped']} opted out"
        )
