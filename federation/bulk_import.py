"""Bulk imports of keyrings and SKS/Hockeypuck dumps (`manage.py import_dump`).

Every certificate goes through the one import service (limits, policy
blocks, verification, merge), so the results are those of uploading each
key. For speed, on PostgreSQL:

1. The parent reads the dump as a stream of certificates (packet headers
   only) and hands them out in batches to worker processes (one per core),
   keeping only a few batches in flight.
2. A worker imports a batch in one transaction (each key in a savepoint of
   its own), so a commit is paid per batch, not per key. Two batches that
   lock the same keys in another order can deadlock: the batch is then
   imported again one key per transaction.
3. Results come back in dump order: the resume offset saved in the state
   file is the end of the last batch done with everything before it done.
4. The published files of what changed are rewritten once at the end, from
   the change log (workers only remove them, as every change does).

SQLite (`make run`) takes one writer at a time: there the import runs in
this process.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from django.db import connection, connections
from django.db.models import Max, Q

from keys import openpgp
from keys.errors import KeyserverError
from keys.managers import SERVED_STATES
from keys.models import Binding, Key, PublishedChange
from keys.services import published_files

from . import import_worker
from .fallback import final_misses
from .import_batches import Tally, import_batch

PARALLEL_FROM_BYTES = 2 * 1024 * 1024


@dataclass
class Batch:
    end: int  # offset in the stream after its last certificate
    certificates: list[bytes]


def _batches(stream: BinaryIO, offset: int, size: int) -> Iterator[Batch]:
    batch = Batch(offset, [])
    for _start, end, data in openpgp.iter_certificates(stream, start=offset):
        batch.certificates.append(data)
        batch.end = end
        if len(batch.certificates) >= size:
            yield batch
            batch = Batch(end, [])
    if batch.certificates:
        yield batch


@dataclass
class Importer:
    """Imports files; `state` maps each file to the offset reached."""

    bind: bool
    workers: int | None  # None: one per core for large dumps, else none
    batch_size: int
    state: dict[str, int]
    save: Callable[[dict[str, int]], None]
    progress: Callable[[str, int, int, Tally], None] = lambda *_args: None
    tally: Tally = field(default_factory=Tally)
    in_flight: int = 2

    def run(self, paths: list[Path]) -> Tally:
        first_change = PublishedChange.objects.aggregate(last=Max("id"))["last"] or 0
        workers = self.workers
        if workers is None:
            # Workers cost a second to start: worth it from a few megabytes of keys on.
            large = sum(path.stat().st_size for path in paths) > PARALLEL_FROM_BYTES
            workers = default_workers() if large else 1
        pool = None
        self.in_flight = workers * 2  # batches handed out and not yet done
        if workers > 1 and connection.vendor == "postgresql":
            database = {"NAME": connection.settings_dict["NAME"]}
            connections.close_all()  # the workers open their own
            pool = ProcessPoolExecutor(
                workers,
                mp_context=get_context("spawn"),
                initializer=import_worker.start,
                initargs=(database,),
            )
        try:
            for path in paths:
                self._file(path, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._rewrite_published(first_change)
        tree = published_files.root()
        if tree is not None:
            by_id, by_address = final_misses()
            published_files.set_final_misses(tree, ids=by_id, emails=by_address)
        return self.tally

    def _file(self, path: Path, pool: ProcessPoolExecutor | None) -> None:
        name = str(path.resolve())
        with path.open("rb") as raw:
            stream: BinaryIO = raw
            size = path.stat().st_size
            if openpgp.is_armored(raw.read(4096)):
                stream = io.BytesIO(openpgp.dearmor(path.read_bytes()))
                size = len(stream.getvalue())
            try:
                self._stream(name, stream, size, pool)
            except KeyserverError as exc:  # a malformed packet header: the rest cannot be framed
                self.tally.reasons[f"{path.name}: {exc.message}"] += 1
                self.tally.counts["rejected"] += 1
        self.save(self.state)

    def _stream(self, name: str, stream: BinaryIO, size: int, pool: ProcessPoolExecutor | None) -> None:
        pending: deque[tuple[Batch, Future[Tally]]] = deque()
        for batch in _batches(stream, self.state.get(name, 0), self.batch_size):
            if pool is None:
                self._done(name, size, batch, import_batch(batch.certificates, self.bind))
                continue
            pending.append((batch, pool.submit(import_worker.run_batch, batch.certificates, self.bind)))
            while len(pending) >= self.in_flight:
                done, future = pending.popleft()
                self._done(name, size, done, future.result())
        while pending:
            done, future = pending.popleft()
            self._done(name, size, done, future.result())

    def _done(self, name: str, size: int, batch: Batch, result: Tally) -> None:
        self.tally.add(result)
        self.state[name] = batch.end
        self.save(self.state)
        self.progress(name, batch.end, size, self.tally)

    def _rewrite_published(self, after: int) -> None:
        """Write the published files of the keys the import changed.

        The workers removed every file a change touched and wrote no marker.
        Keys that have files (a published address, or a revocation served by
        id) are written again in full; the others are stored keys the front
        server must leave to the application, so each of their identifiers
        gets its marker, read in bulk.
        """
        tree = published_files.root()
        if tree is None:
            return
        changed = PublishedChange.objects.filter(id__gt=after, kind="key").values_list("value", flat=True)
        fingerprints = list(dict.fromkeys(changed.iterator(chunk_size=5000)))
        for start in range(0, len(fingerprints), 1000):
            chunk = Key.objects.filter(fingerprint__in=fingerprints[start : start + 1000])
            with_files = chunk.filter(Q(revoked=True) | Q(bindings__state=Binding.State.PUBLISHED)).distinct()
            ids = published_files.Identifiers()
            for key in with_files.only("id", "fingerprint", "key_id"):
                ids.update(published_files.identifiers_of(key))
            others = published_files.identifiers_in(chunk.exclude(pk__in=with_files))
            published_files.mark_known(tree, published_files.Identifiers(others.fingerprints, others.keyids))
            # Their addresses may be served by other keys, or cached: those are computed.
            served = Binding.objects.filter(address__in=others.addresses, state__in=SERVED_STATES)
            ids.addresses.update(served.values_list("address", flat=True))
            if ids:
                published_files.rewrite(tree, ids)


def load_state(path: Path, resume: bool) -> dict[str, int]:
    return json.loads(path.read_text()) if resume and path.exists() else {}


def save_state(path: Path, state: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def rate(tally: Tally, started: float) -> float:
    return tally.done / max(time.monotonic() - started, 1e-6)
