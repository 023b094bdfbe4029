"""`manage.py server_key show|rotate|export`: the server's own OpenPGP key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from keys.identifiers import group_fingerprint
from keys.models import ServerKey
from keys.services import server_key


class Command(BaseCommand):
    help = (
        "The server's own OpenPGP key, which signs every mail: show it, rotate it (the old key "
        "certifies the new one) or export it (public; the secret only with --secret)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["show", "rotate", "export"])
        parser.add_argument(
            "--address", default="", help="an address this server owns (default: DEFAULT_FROM_EMAIL)"
        )
        parser.add_argument(
            "--secret",
            action="store_true",
            help="export: write the SECRET key, armored, to standard output",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        address = options["address"] or server_key.default_address()
        action = options["action"]
        if options["secret"] and action != "export":
            raise CommandError("--secret goes only with export")
        if action == "rotate":
            self._rotate(address)
            return
        key = server_key.for_address(address)
        if action == "show":
            self._show(key)
        elif options["secret"]:
            self.stderr.write(
                "WARNING: this is the server's SECRET key. Whoever has it can sign mail as this "
                "server. Keep it offline and encrypted; never upload it anywhere."
            )
            try:
                self.stdout.write(server_key.armored_secret(key), ending="")
            except server_key.ServerKeyUnreadable as exc:
                raise CommandError(str(exc)) from None
        else:
            self.stdout.write(server_key.armored(key), ending="")

    def _show(self, key: ServerKey) -> None:
        self.stdout.write(f"fingerprint: {group_fingerprint(key.fingerprint)}")
        self.stdout.write(f"address:     {key.address}")
        self.stdout.write(f"created:     {key.created.isoformat(timespec='seconds')}")
        self.stdout.write(f"published:   {'yes' if key.key_id else 'no (the address cannot be published)'}")
        if key.predecessor:
            self.stdout.write(
                f"certified by the previous key {group_fingerprint(key.predecessor.fingerprint)}"
            )
        self.stdout.write(server_key.armored(key), ending="")

    def _rotate(self, address: str) -> None:
        new, old, certified = server_key.rotate(address)
        self.stdout.write(f"new key:  {group_fingerprint(new.fingerprint)} for {new.address}")
        if old is None:
            self.stdout.write("there was no key before")
        elif certified:
            self.stdout.write(f"retired:  {group_fingerprint(old.fingerprint)}, which certifies the new key")
        else:
            self.stderr.write(
                f"retired:  {group_fingerprint(old.fingerprint)}; its secret could not be opened "
                "(SECRET_KEY changed?), so the new key is not certified by it"
            )
