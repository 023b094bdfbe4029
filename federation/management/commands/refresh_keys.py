"""`manage.py refresh_keys [--fingerprint F] [--due] [--dry-run]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from keys import clock
from keys.identifiers import parse_fingerprint
from keys.models import Key

from ...refresh import lease_due, refresh_key


class Command(BaseCommand):
    help = "Refresh keys from their upstream sources now."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--fingerprint", action="append", default=[], help="this key (repeatable)")
        parser.add_argument("--due", action="store_true", help="every key whose refresh is due")
        parser.add_argument("--dry-run", action="store_true", help="ask the sources, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["fingerprint"]:
            fingerprints = [parse_fingerprint(f) for f in options["fingerprint"]]
            ids = list(Key.objects.filter(fingerprint__in=fingerprints).values_list("id", flat=True))
            if len(ids) != len(fingerprints):
                raise CommandError("unknown fingerprint")
        elif options["due"]:
            if options["dry_run"]:
                ids = list(Key.objects.filter(next_refresh_at__lte=clock.now()).values_list("id", flat=True))
            else:
                ids = lease_due()
        else:
            raise CommandError("say which keys: --fingerprint F or --due")
        for key_id in ids:
            outcome = refresh_key(key_id, dry_run=options["dry_run"])
            fingerprint = Key.objects.get(pk=key_id).fingerprint
            self.stdout.write(f"{fingerprint} {outcome.result}")
        self.stdout.write(f"{len(ids)} key(s)")
