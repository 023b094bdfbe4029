"""`manage.py import_dump FILE...`: load SKS/Hockeypuck dumps or keyrings.

Every certificate goes through the one import service (limits, policy
blocks, verification, merge). Resumable: the byte offset reached in each file
is saved in a state file every few hundred keys; `--resume` continues there.
Mirrored keys are found by fingerprint and key id; their addresses are
served (as upstream_unverified fallback answers) only with --bind-addresses
or IMPORT_DUMP_BIND_ADDRESSES.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keys import openpgp
from keys.errors import KeyserverError
from keys.models import Binding, Key, Origin
from keys.services import imports, publication
from keys.services.locking import locked_key

SAVE_EVERY = 200


class Command(BaseCommand):
    help = "Import SKS/Hockeypuck keydump files or keyrings (binary or armored)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--resume", action="store_true", help="continue where the last run stopped")
        parser.add_argument(
            "--state", type=Path, default=None, help="state file (default var/import_dump.json)"
        )
        parser.add_argument(
            "--bind-addresses",
            action="store_true",
            default=None,
            help="serve the keys' addresses as upstream_unverified fallback answers",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress line")

    def handle(self, *args: Any, **options: Any) -> None:
        state_path: Path = options["state"] or Path(settings.VAR_DIR) / "import_dump.json"
        state: dict[str, int] = (
            json.loads(state_path.read_text()) if options["resume"] and state_path.exists() else {}
        )
        bind = options["bind_addresses"]
        if bind is None:
            bind = settings.IMPORT_DUMP_BIND_ADDRESSES
        counts: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        started = time.monotonic()
        last_print = 0.0
        for path in options["files"]:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            key = str(path.resolve())
            offset = state.get(key, 0)
            size = path.stat().st_size
            with path.open("rb") as raw:
                stream: Any = raw
                if openpgp.is_armored(raw.read(4096)):
                    stream = io.BytesIO(openpgp.dearmor(path.read_bytes()))
                    size = len(stream.getvalue())
                try:
                    for _start, end, data in openpgp.iter_certificates(stream, start=offset):
                        outcome = self._import_one(data, bind, reasons)
                        counts[outcome] += 1
                        state[key] = end
                        if sum(counts.values()) % SAVE_EVERY == 0:
                            self._save(state_path, state)
                        now = time.monotonic()
                        if not options["quiet"] and now - last_print > 0.5:
                            last_print = now
                            done = sum(counts.values())
                            rate = done / max(now - started, 1e-6)
                            sys.stderr.write(
                                f"\r{path.name}: {end * 100 // max(size, 1):3d}% "
                                f"{done} keys, {rate:.0f}/s, rejected {counts['rejected']}   "
                            )
                            sys.stderr.flush()
                except KeyserverError as exc:
                    reasons[f"{path.name}: {exc.message}"] += 1
                    counts["rejected"] += 1
            self._save(state_path, state)
        if not options["quiet"]:
            sys.stderr.write("\n")
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"imported {counts['imported']}, merged {counts['merged']}, unchanged {counts['unchanged']}, "
            f"rejected {counts['rejected']} in {elapsed:.1f} s"
        )
        for reason, n in reasons.most_common():
            self.stdout.write(f"  rejected {n}: {reason}")

    def _import_one(self, data: bytes, bind: bool, reasons: Counter[str]) -> str:
        try:
            result = imports.import_keys(data, origin=Origin.IMPORT, actor="import_dump")
        except KeyserverError as exc:
            reasons[exc.message[:120]] += 1
            return "rejected"
        item = result.keys[0]
        if bind:
            _bind_unverified(item.key)
        if item.created:
            return "imported"
        return "merged" if item.changed else "unchanged"

    @staticmethod
    def _save(path: Path, state: dict[str, int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)


def _bind_unverified(key: Key) -> None:
    """Serve a mirrored key's addresses as unverified fallback answers."""
    with locked_key(key.pk) as key:
        bindings = list(key.bindings.filter(state=Binding.State.UNPUBLISHED))
        for binding in bindings:
            publication.vouch(
                key,
                binding,
                state=Binding.State.CACHED,
                validation=Binding.Validation.UPSTREAM_UNVERIFIED,
                actor="import_dump",
                verified=False,
            )
        if bindings:
            publication.rebuild(key)
