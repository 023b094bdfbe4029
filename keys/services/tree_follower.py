"""Keeping a published file tree equal to the database: full rebuilds, drift
checks, and following the change log (`manage.py materialize`).

Each web node keeps its own tree, so nodes stay stateless: `follow` polls
the change log (PublishedChange, in id order, one indexed range query) and
rewrites the answers each row names. Ids are handed out when a transaction
inserts its row, not when it commits, so a slower transaction may commit a
lower id after a higher one was read: ids past a gap are applied at once
(rewrites are idempotent), and the position only moves past a gap once the
missing id arrived or GAP_SECONDS went by (a rolled-back transaction leaves
a gap for good). A node is behind by at most one poll interval plus the
time a rewrite takes (docs/performance.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Max, Min

from .. import clock
from ..models import Key, PublishedChange
from .published_files import (
    File,
    Identifiers,
    apply,
    expand,
    expected,
    identifiers_of,
    rewrite,
    set_final_misses,
)

GAP_SECONDS = 5.0
BATCH = 2000
STATE = ".follow.json"


@dataclass
class Summary:
    keys: int = 0
    written: int = 0
    removed: int = 0
    files: int = 0


def _walk(tree: Path) -> Iterable[str]:
    """Every answer file in the tree (not the lock, state or temporary files)."""
    for directory, _dirs, names in os.walk(tree):
        for name in names:
            if not name.startswith("."):
                yield str(Path(directory, name).relative_to(tree))


def _per_key(progress: Callable[[int], None] | None) -> Iterable[Identifiers]:
    """Each key's identifiers once (an address or key id shared by several
    keys is computed for the first of them only)."""
    seen = Identifiers()
    for key in Key.objects.only("id", "fingerprint", "key_id").iterator(chunk_size=500):
        ids = identifiers_of(key)
        fresh = Identifiers(
            ids.fingerprints - seen.fingerprints, ids.keyids - seen.keyids, ids.addresses - seen.addresses
        )
        seen.update(ids)
        if progress:
            progress(1)
        yield fresh


def materialize(tree: Path, progress: Callable[[int], None] | None = None) -> Summary:
    """Rebuild the whole tree from the database; remove every file it should not hold."""
    summary = Summary()
    produced: set[str] = set()
    for ids in _per_key(progress):
        summary.keys += 1
        files = expected(ids)
        written, removed = apply(tree, files)
        summary.written += written
        summary.removed += removed
        produced |= {rel for rel, file in files.items() if file is not None}
    for rel in _walk(tree):
        if rel not in produced:
            (tree / rel).unlink()
            summary.removed += 1
    summary.files = len(produced)
    return summary


def _differs(tree: Path, rel: str, file: File) -> bool:
    path = tree / rel
    try:
        mtime = int(file.modified.timestamp()) if file.modified else None
        return path.read_bytes() != file.data or (mtime is not None and int(path.stat().st_mtime) != mtime)
    except FileNotFoundError:
        return True


def check(tree: Path, progress: Callable[[int], None] | None = None) -> list[str]:
    """What differs between the tree and the database, one line each."""
    drift: list[str] = []
    produced: set[str] = set()
    for ids in _per_key(progress):
        for rel, file in expected(ids).items():
            if file is None:
                if (tree / rel).exists():
                    drift.append(f"stale   {rel}")
                continue
            produced.add(rel)
            if not (tree / rel).exists():
                drift.append(f"missing {rel}")
            elif _differs(tree, rel, file):
                drift.append(f"differs {rel}")
    drift += [f"extra   {rel}" for rel in _walk(tree) if rel not in produced]
    return sorted(set(drift))


@dataclass
class Follower:
    """Follows the change log into one tree; with `final_misses` (federation's),
    also keeps the tree's final-miss flags true."""

    tree: Path
    final_misses: Callable[[], tuple[bool, bool]] | None = None
    position: int = 0
    expiry_checked: datetime | None = None
    applied: set[int] = field(default_factory=set)  # ids past a gap, already applied
    gaps: dict[int, float] = field(default_factory=dict)  # missing id -> when first seen

    @property
    def state_file(self) -> Path:
        return self.tree / STATE

    def load(self) -> bool:
        """The saved position; False when there is none or the log was pruned past it."""
        try:
            state = json.loads(self.state_file.read_text())
            self.position = int(state["position"])
            self.expiry_checked = datetime.fromisoformat(state["expiry_checked"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        oldest = PublishedChange.objects.aggregate(oldest=Min("id"))["oldest"]
        return oldest is None or self.position >= oldest - 1

    def save(self) -> None:
        self.tree.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        checked = (self.expiry_checked or clock.now()).isoformat()
        tmp.write_text(json.dumps({"position": self.position, "expiry_checked": checked}))
        os.replace(tmp, self.state_file)

    def start(self, progress: Callable[[int], None] | None = None) -> Summary | None:
        """Resume from the saved position, or rebuild the tree first."""
        if self.load():
            return None
        last = PublishedChange.objects.aggregate(last=Max("id"))["last"]
        if last is None:
            # An empty log says nothing of where its ids stand: a marker row does.
            last = PublishedChange.objects.create(kind="start", value=str(self.tree)[:400]).pk
        self.position = last
        self.expiry_checked = clock.now()
        summary = materialize(self.tree, progress)
        self.save()
        return summary

    def step(self) -> int:
        """Apply what the log says since the last step; the number of rows applied."""
        rows = list(
            PublishedChange.objects.filter(id__gt=self.position)
            .order_by("id")
            .values_list("id", "kind", "value")[:BATCH]
        )
        ids = Identifiers()
        fresh = [row for row in rows if row[0] not in self.applied]
        for _id, kind, value in fresh:
            ids.update(expand(kind, value))
        ids.update(self._expired())
        if ids:
            rewrite(self.tree, ids)
        if self.final_misses is not None:
            by_id, by_address = self.final_misses()
            set_final_misses(self.tree, ids=by_id, emails=by_address)
        self.applied |= {row[0] for row in fresh}
        self._advance([row[0] for row in rows])
        self.save()
        return len(fresh)

    def _expired(self) -> Identifiers:
        """Keys that expired since the last step: their index flags and their
        place in address answers changed without a write."""
        now = clock.now()
        since = self.expiry_checked or now
        ids = Identifiers()
        for key in Key.objects.filter(expires__gt=since, expires__lte=now):
            ids.update(identifiers_of(key))
        self.expiry_checked = now
        return ids

    def _advance(self, seen: list[int]) -> None:
        """Move the position over every id that arrived, or that stayed missing too long."""
        now = time.monotonic()
        for missing in range(self.position + 1, max(seen, default=self.position)):
            if missing not in self.applied:
                self.gaps.setdefault(missing, now)
        while True:
            following = self.position + 1
            if following in self.applied:
                self.applied.discard(following)
            elif following in self.gaps and now - self.gaps[following] > GAP_SECONDS:
                del self.gaps[following]
            else:
                break
            self.gaps.pop(following, None)
            self.position = following

    def run(self, should_stop: Callable[[], bool], interval: float | None = None) -> None:
        pause = settings.PUBLISH_FOLLOW_INTERVAL if interval is None else interval
        while not should_stop():
            if self.step() < BATCH:
                time.sleep(pause)


def prune_log(now: datetime | None = None) -> int:
    """Drop change-log rows older than PUBLISH_LOG_RETENTION_HOURS (housekeeping).

    A follower that was away longer rebuilds its tree when it starts again.
    """
    cutoff = (now or clock.now()) - timedelta(hours=settings.PUBLISH_LOG_RETENTION_HOURS)
    deleted, _types = PublishedChange.objects.filter(at__lt=cutoff).delete()
    return deleted
