"""`manage.py import_keys FILE...`: keyrings, SKS/Hockeypuck dumps, JSON dumps.

A file whose first byte is `{` is a JSON dump of `manage.py export_keys
--format json`: the server it was written on is restored
(keys.services.restore). Anything else is a keyring or a dump, armored or
binary, loaded by the bulk importer of `manage.py import_dump` (parallel
workers, batched transactions). Every key goes through the one import
service either way.

Resumable: run again after an interruption, it stores what is missing and
counts what is already there (idempotent by fingerprint); `--resume`
also skips the part of a keyring the last run finished, by offset.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from federation.bulk_import import Importer, Tally, load_state, save_state
from keys.errors import KeyserverError
from keys.services import restore


def is_json(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4096).lstrip()[:1] == b"{"


class Command(BaseCommand):
    help = "Import keyrings, SKS/Hockeypuck dumps and JSON dumps (export_keys --format json)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--resume", action="store_true", help="skip the part of a keyring done last run")
        parser.add_argument(
            "--state", type=Path, default=None, help="state file (default var/import_keys.json)"
        )
        parser.add_argument(
            "--bind-addresses",
            action="store_true",
            help="keyrings: serve the keys' addresses as upstream_unverified fallback answers",
        )
        parser.add_argument("--workers", type=int, default=None, help="keyrings: worker processes")
        parser.add_argument("--batch", type=int, default=100, help="keyrings: keys per transaction")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[Path] = options["files"]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        dumps = [p for p in paths if is_json(p)]
        keyrings = [p for p in paths if p not in dumps]
        restored = restore.Restored()
        tally = Tally()
        for path in dumps:
            self._restore(path, restored, options["quiet"])
        if keyrings:
            tally = self._keyrings(keyrings, options)
        self._summary(restored, tally, json_files=bool(dumps))
        kept = restored.stored + restored.merged + restored.present + restored.blocks + restored.sources
        kept += tally.counts["imported"] + tally.counts["merged"] + tally.counts["unchanged"]
        kept += restored.blocks_present + restored.sources_present
        if not kept and (restored.refused or tally.reasons):
            raise CommandError("nothing could be imported (the reasons are above)")
        if dumps and not restored.complete:
            raise CommandError("the JSON dump ends early (no end line): it is incomplete")

    def _restore(self, path: Path, restored: restore.Restored, quiet: bool) -> None:
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, disable=quiet, file=sys.stderr)
        bar.set_description(path.name)
        try:
            with path.open("rb") as lines:
                done = restore.restore(lines, progress=bar.update)
        except KeyserverError as exc:
            raise CommandError(f"{path}: {exc.message}") from None
        finally:
            bar.close()
        for name, value in done.__dict__.items():
            if name == "refused":
                restored.refused.update(value)
            elif name == "complete":
                restored.complete = value
            else:
                setattr(restored, name, getattr(restored, name) + value)

    def _keyrings(self, paths: list[Path], options: dict[str, Any]) -> Tally:
        state_path: Path = options["state"] or Path(settings.VAR_DIR) / "import_keys.json"
        bar = tqdm(total=0, unit="B", unit_scale=True, disable=options["quiet"], file=sys.stderr)

        def progress(name: str, offset: int, size: int, tally: Tally) -> None:
            bar.total = size
            bar.n = offset
            bar.set_description(Path(name).name)
            bar.set_postfix(keys=tally.done, refused=tally.counts["rejected"])

        importer = Importer(
            bind=options["bind_addresses"],
            workers=options["workers"],
            batch_size=max(1, options["batch"]),
            state=load_state(state_path, options["resume"]),
            save=lambda state: save_state(state_path, state),
            progress=progress,
        )
        try:
            return importer.run(paths)
        finally:
            bar.close()

    def _summary(self, restored: restore.Restored, tally: Tally, *, json_files: bool) -> None:
        counts = tally.counts
        read = restored.read + tally.done
        stored = restored.stored + counts["imported"]
        merged = restored.merged + counts["merged"]
        present = restored.present + counts["unchanged"]
        refused = restored.refused_keys + counts["rejected"]
        self.stdout.write(
            f"keys read {read}: stored {stored}, merged {merged}, already there {present}, refused {refused}"
        )
        if json_files:
            self.stdout.write(
                f"bindings restored {restored.bindings}; policy blocks restored {restored.blocks} "
                f"(already there {restored.blocks_present}); sources restored {restored.sources} "
                f"(already there {restored.sources_present})"
            )
        for reason, n in (restored.refused + tally.reasons).most_common():
            self.stdout.write(f"  refused {n}: {reason}")
        if not read and not restored.refused and not tally.reasons:
            self.stdout.write("nothing to read: with --resume, the last run finished these files")
        elif present and not stored and not merged:
            self.stdout.write("nothing new: every key read was already stored (an earlier run imported it)")
        elif present:
            self.stdout.write(f"resumed: {present} keys were already stored and were skipped")
