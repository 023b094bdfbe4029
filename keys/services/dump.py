"""Exports (`manage.py export_keys`): a published keyring, or the full JSON dump.

The keyring holds every key a lookup serves by id with an address published
(or a revocation), in its published form: only confirmed user IDs. It is
what a mirror or a client may have; it does not restore a server.

The JSON dump restores one (keys.services.restore reads it back). It is JSON
Lines, one object per line, so neither side ever holds it all in memory:

    {"format": "keyserver-dump", "version": 1, "exported_at": ...}
    {"type": "source", "name": ..., "kind": ..., "url": ..., ...}     every upstream
    {"type": "key", "fingerprint": ..., "data": <base64>, "bindings": [...], ...}
    {"type": "block", "fingerprint": ..., "address_pattern": ..., ...}
    {"type": "end", "keys": N, "bindings": N, "blocks": N, "sources": N}

Keys come before the policy blocks: a restored fingerprint block would
refuse the very key it removed (the import service enforces it), so the key
is stored first and its removal restored with it. The end line tells a
complete dump from one cut off. Not in the dump: tokens, events, the outbox,
the change log of the published files, sources' health and credentials.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.db import connection, transaction

from .. import clock, openpgp
from ..models import Binding, Key, PolicyBlock, Source

FORMAT = "keyserver-dump"
VERSION = 1
# Options of a source never written to a dump (an LDAP bind password, say).
SECRET_OPTIONS = ("password", "secret", "token")

Progress = Callable[[int], None]


@dataclass
class Exported:
    keys: int = 0
    bindings: int = 0
    blocks: int = 0
    sources: int = 0


@contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent view of the database for the whole export."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def exportable_count() -> int:
    return Key.objects.exportable().count()


def dump_count() -> int:
    return Key.objects.count()


def export_keyring(out: IO[bytes], *, armored: bool, progress: Progress = lambda _n: None) -> Exported:
    """Write the published keyring: binary (streamed) or one armor block."""
    done = Exported()
    held = bytearray()
    with _snapshot():
        for key in Key.objects.exportable().iterator(chunk_size=500):
            data = bytes(key.published)
            if armored:
                held += data
            else:
                out.write(data)
            done.keys += 1
            progress(1)
    if armored and held:
        out.write(openpgp.armor(bytes(held)).encode("ascii"))
    return done


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _source_record(source: Source) -> dict[str, Any]:
    options = {
        name: value
        for name, value in (source.options or {}).items()
        if not any(word in name.lower() for word in SECRET_OPTIONS)
    }
    return {
        "type": "source",
        "name": source.name,
        "kind": source.kind,
        "url": source.url,
        "authoritative_domains": source.authoritative_domains,
        "order": source.order,
        "enabled": source.enabled,
        "timeout": source.timeout,
        "options": options,
    }


def _binding_record(binding: Binding) -> dict[str, Any]:
    return {
        "address": binding.address,
        "state": binding.state,
        "validation": binding.validation,
        "pending_since": _when(binding.pending_since),
        "verified_at": _when(binding.verified_at),
        "last_audited_at": _when(binding.last_audited_at),
        "locale": binding.locale,
        "created": _when(binding.created),
        "updated": _when(binding.updated),
    }


def _key_record(key: Key) -> dict[str, Any]:
    return {
        "type": "key",
        "fingerprint": key.fingerprint,
        "data": base64.b64encode(bytes(key.data)).decode("ascii"),
        "origin": key.origin,
        "source": key.source.name if key.source else None,
        "blocked": key.blocked,
        "first_seen": _when(key.first_seen),
        "updated": _when(key.updated),
        "refreshed_at": _when(key.refreshed_at),
        "next_refresh_at": _when(key.next_refresh_at),
        "last_refresh_result": key.last_refresh_result,
        "refresh_failures": key.refresh_failures,
        "bindings": [_binding_record(b) for b in sorted(key.bindings.all(), key=lambda b: b.pk)],
    }


def _block_record(block: PolicyBlock) -> dict[str, Any]:
    return {
        "type": "block",
        "fingerprint": block.fingerprint,
        "address_pattern": block.address_pattern,
        "reason": block.reason,
        "created": _when(block.created),
        "created_by": block.created_by,
    }


def export_json(out: IO[bytes], *, progress: Progress = lambda _n: None) -> Exported:
    """Write the full JSON dump (the module's docstring gives its lines)."""
    done = Exported()

    def line(record: dict[str, Any]) -> None:
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")

    with _snapshot():
        line({"format": FORMAT, "version": VERSION, "exported_at": clock.now().isoformat()})
        for source in Source.objects.for_dump():
            line(_source_record(source))
            done.sources += 1
        for key in Key.objects.for_dump().iterator(chunk_size=500):
            record = _key_record(key)
            line(record)
            done.keys += 1
            done.bindings += len(record["bindings"])
            progress(1)
        for block in PolicyBlock.objects.for_dump():
            line(_block_record(block))
            done.blocks += 1
        line({"type": "end", **done.__dict__})
    return done
