"""`manage.py import_dump FILE...`: load SKS/Hockeypuck dumps or keyrings.

Every certificate goes through the one import service (limits, policy
blocks, verification, merge), in parallel workers and batched transactions
(federation/bulk_import.py). Resumable: the byte offset reached in each file
is saved in a state file after every batch; `--resume` continues there.
Mirrored keys are found by fingerprint and key id; their addresses are
served (as upstream_unverified fallback answers) only with --bind-addresses
or IMPORT_DUMP_BIND_ADDRESSES.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ...bulk_import import Importer, Tally, load_state, rate, save_state


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
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="worker processes (default: one per core for dumps of a few MB and more, else none)",
        )
        parser.add_argument("--batch", type=int, default=100, help="keys per transaction")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[Path] = options["files"]
        for path in paths:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
        state_path: Path = options["state"] or Path(settings.VAR_DIR) / "import_dump.json"
        bind = options["bind_addresses"]
        if bind is None:
            bind = settings.IMPORT_DUMP_BIND_ADDRESSES
        started = time.monotonic()
        bar = tqdm(total=0, unit="B", unit_scale=True, disable=options["quiet"], file=sys.stderr)

        def progress(name: str, offset: int, size: int, tally: Tally) -> None:
            bar.total = size
            bar.n = offset
            bar.set_description(Path(name).name)
            bar.set_postfix(
                keys=tally.done, rate=f"{rate(tally, started):.0f}/s", rejected=tally.counts["rejected"]
            )

        importer = Importer(
            bind=bind,
            workers=options["workers"],
            batch_size=max(1, options["batch"]),
            state=load_state(state_path, options["resume"]),
            save=lambda state: save_state(state_path, state),
            progress=progress,
        )
        try:
            tally = importer.run(paths)
        finally:
            bar.close()
        counts = tally.counts
        self.stdout.write(
            f"imported {counts['imported']}, merged {counts['merged']}, unchanged {counts['unchanged']}, "
            f"rejected {counts['rejected']} in {time.monotonic() - started:.1f} s"
        )
        for reason, n in tally.reasons.most_common():
            self.stdout.write(f"  rejected {n}: {reason}")
