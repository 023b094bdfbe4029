"""`manage.py materialize [--check | --follow]`: the published file tree.

Without options, rebuilds the whole tree under PUBLISH_DIR from the database
(progress bar, summary). `--check` lists what differs and exits non-zero if
anything does. `--follow` keeps the tree up to date by following the change
log (one per web node; it rebuilds first when it has no position yet).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from federation.fallback import final_misses
from keys.models import Key
from keys.services import published_files
from keys.services.tree_follower import Follower, check, materialize


class Command(BaseCommand):
    help = "Rebuild, check or follow the published file tree (PUBLISH_DIR)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true", help="list drift; exit 1 if there is any")
        parser.add_argument("--follow", action="store_true", help="follow the change log until stopped")
        parser.add_argument("--tree", type=Path, default=None, help="the tree (default PUBLISH_DIR)")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        tree = options["tree"] or published_files.root()
        if tree is None:
            raise CommandError("PUBLISH_DIR is empty: there is no tree to materialize.")
        bar = tqdm(total=Key.objects.count(), unit="key", disable=options["quiet"], file=sys.stderr)
        started = time.monotonic()
        try:
            if options["check"]:
                self._check(tree, bar)
            elif options["follow"]:
                self._follow(tree, bar)
            else:
                summary = materialize(tree, bar.update)
                by_id, by_address = final_misses()
                published_files.set_final_misses(tree, ids=by_id, emails=by_address)
                bar.close()
                self.stdout.write(
                    f"{summary.keys} keys, {summary.files} files: {summary.written} written, "
                    f"{summary.removed} removed in {time.monotonic() - started:.1f} s ({tree})"
                )
        finally:
            bar.close()

    def _check(self, tree: Path, bar: tqdm) -> None:
        drift = check(tree, bar.update)
        bar.close()
        for line in drift:
            self.stdout.write(line)
        if drift:
            raise CommandError(f"{len(drift)} file(s) differ from the database ({tree})")
        self.stdout.write(f"the tree matches the database ({tree})")

    def _follow(self, tree: Path, bar: tqdm) -> None:
        stopping = False

        def stop(_signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        follower = Follower(tree, final_misses=final_misses)
        rebuilt = follower.start(bar.update)
        bar.close()
        if rebuilt is not None:
            self.stdout.write(f"rebuilt {rebuilt.files} files; following from change {follower.position}")
        else:
            self.stdout.write(f"following from change {follower.position}")
        self.stdout.flush()
        follower.run(lambda: stopping)
