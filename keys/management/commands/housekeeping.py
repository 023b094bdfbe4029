"""`manage.py housekeeping`: the periodic prune, by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from keys.services.housekeeping import prune


class Command(BaseCommand):
    help = "Delete expired tokens, uploads never confirmed and events past their retention."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = prune(dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {counts['tokens']} token(s), {counts['unconfirmed_keys']} unconfirmed upload(s), "
            f"{counts['events']} event(s)"
        )
