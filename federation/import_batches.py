"""Importing one batch of certificates: what each import_dump worker runs.

Every certificate goes through the one import service; the batch is one
transaction (each key in a savepoint of its own), or, after a deadlock with
another batch, one transaction per key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction

from keys.errors import KeyserverError
from keys.models import Binding, Key, Origin
from keys.services import imports, publication, published_files
from keys.services.locking import locked_key


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.reasons.update(other.reasons)

    @property
    def done(self) -> int:
        return sum(self.counts.values())


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


def import_one(data: bytes, bind: bool, tally: Tally) -> None:
    try:
        result = imports.import_keys(data, origin=Origin.IMPORT, actor="import_dump")
    except KeyserverError as exc:
        tally.reasons[exc.message[:120]] += 1
        tally.counts["rejected"] += 1
        return
    item = result.keys[0]
    if bind:
        _bind_unverified(item.key)
    tally.counts["imported" if item.created else ("merged" if item.changed else "unchanged")] += 1


def import_batch(batch: list[bytes], bind: bool) -> Tally:
    """One batch, in one transaction (in a worker, or in this process)."""
    with published_files.deferred():
        try:
            tally = Tally()
            with transaction.atomic():
                for data in batch:
                    import_one(data, bind, tally)
            return tally
        except DatabaseError:  # a deadlock with another batch: one key at a time
            tally = Tally()
            for data in batch:
                import_one(data, bind, tally)
            return tally
