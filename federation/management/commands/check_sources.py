"""`manage.py check_sources`: one lookup against every source, with latency.

Like a "test store connection" button: connects to each enabled source,
asks one question, prints the round trip and the answer, and exits non-zero
when a source fails (an empty answer is not a failure).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from keys.identifiers import Query, normalize_email, parse_hex_id
from keys.models import Source

from ...fallback import check
from ...sources import SourceError, upstream_for


class Command(BaseCommand):
    help = "Connect to every upstream source and do one lookup each."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--email", help="address to look up (default: postmaster@ a domain of the source)"
        )
        parser.add_argument("--fingerprint", help="fingerprint or long key id to look up instead")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = Source.objects.enabled()
        if not rows:
            self.stdout.write("No sources are configured (FEDERATION_SOURCES or the admin).")
            return
        failed = 0
        for source in rows:
            query = self._query(source, options)
            if not upstream_for(source).can_answer(query):
                query = Query(
                    "email",
                    normalize_email(f"postmaster@{(source.authoritative_domains or ['example.org'])[0]}"),
                )
            try:
                elapsed, result = check(source, query)
            except SourceError as exc:
                failed += 1
                self.stdout.write(f"FAIL {source.name:20} {source.kind:5} {source.url}: {exc.message}")
                continue
            self.stdout.write(
                f"ok   {source.name:20} {source.kind:5} {elapsed * 1000:7.0f} ms  {query}: {result}"
            )
        if failed:
            raise CommandError(f"{failed} of {len(rows)} source(s) failed")

    @staticmethod
    def _query(source: Any, options: dict[str, Any]) -> Query:
        if options.get("fingerprint"):
            return parse_hex_id(options["fingerprint"])
        if options.get("email"):
            return Query("email", normalize_email(options["email"]))
        domain = (source.authoritative_domains or ["example.org"])[0]
        return Query("email", normalize_email(f"postmaster@{domain}"))
