"""`manage.py export_keys FILE`: the published keyring, or the full JSON dump.

`--format armored` (the default) or `binary`: every key served by id with a
published address (or a revocation), in its published form, as one
keyring. `--format json`: the dump that `manage.py import_keys` restores a
server from (keys.services.dump lists what it holds). The file is written
beside its final name and renamed into place when complete.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from keys.services import dump

FORMATS = ("armored", "binary", "json")


class Command(BaseCommand):
    help = "Export the published keys as one keyring (armored or binary), or everything as a JSON dump."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=FORMATS, default="armored")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        kind: str = options["format"]
        if not path.parent.is_dir():
            raise CommandError(f"{path.parent}: no such directory")
        total = dump.dump_count() if kind == "json" else dump.exportable_count()
        bar = tqdm(total=total, unit="key", disable=options["quiet"], file=sys.stderr)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as out:
                if kind == "json":
                    done = dump.export_json(out, progress=bar.update)
                else:
                    done = dump.export_keyring(out, armored=kind == "armored", progress=bar.update)
            tmp.replace(path)
        finally:
            bar.close()
            tmp.unlink(missing_ok=True)
        if kind == "json":
            self.stdout.write(
                f"exported {done.keys} keys, {done.bindings} bindings, {done.blocks} policy blocks "
                f"and {done.sources} sources to {path}"
            )
        else:
            self.stdout.write(f"exported {done.keys} published keys ({kind} keyring) to {path}")
