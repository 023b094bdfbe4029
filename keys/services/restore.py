"""Reading a JSON dump back (`manage.py import_keys`): restore a server.

Each key goes through the one import service (limits, policy blocks,
verification), and then, in the same transaction, gets back what it had
where the dump was written: its bindings with their states, validation
levels and timestamps, its removal by policy, its source and its refresh
schedule (`publication.restore`, which rebuilds the answers and so the
published files). Sources come first, policy blocks last (keys.services.dump
says why).

Resumable and idempotent by fingerprint: a key already stored is left as it
is (merged through the import service if the dump holds more of it, its
bindings untouched), a source or block already there is skipped, so a run
interrupted and started again goes on where it stopped and says what it
found already there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..errors import KeyserverError
from ..models import Binding, Key, Origin, PolicyBlock, Source
from . import imports, policy, publication
from .dump import FORMAT, VERSION
from .locking import locked_key

ACTOR = "import_keys"
Progress = Callable[[int], None]


class NotADump(KeyserverError):
    default_message = gettext_lazy("This is not a keyserver JSON dump.")


class BadRecord(ValueError):
    """A line of the dump that cannot be restored (the message says why)."""


@dataclass
class Restored:
    read: int = 0  # key lines read
    stored: int = 0
    merged: int = 0  # already stored; the dump held more of it
    present: int = 0  # already stored as the dump has it
    bindings: int = 0
    blocks: int = 0
    blocks_present: int = 0
    sources: int = 0
    sources_present: int = 0
    refused_keys: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # reason: lines refused
    complete: bool = False  # the end line was read


def _when(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise BadRecord(_("A date in the dump is not valid: %(value)s") % {"value": value}) from None


def _binding(record: dict[str, Any]) -> publication.RestoredBinding:
    address = str(record.get("address") or "")
    state = record.get("state")
    validation = record.get("validation") or ""
    if "@" not in address or len(address) > 254:
        raise BadRecord(_("An address in the dump is not valid: %(value)s") % {"value": address[:80]})
    if state not in Binding.State.values or (validation and validation not in Binding.Validation.values):
        raise BadRecord(_("The dump names an unknown state of %(address)s.") % {"address": address})
    return publication.RestoredBinding(
        address=address,
        state=state,
        validation=validation,
        pending_since=_when(record.get("pending_since")),
        verified_at=_when(record.get("verified_at")),
        last_audited_at=_when(record.get("last_audited_at")),
        locale=str(record.get("locale") or "")[:12],
        created=_when(record.get("created")),
        updated=_when(record.get("updated")),
    )


def _key_data(record: dict[str, Any]) -> tuple[str, bytes]:
    fingerprint = str(record.get("fingerprint") or "").upper()
    try:
        data = base64.b64decode(str(record.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not fingerprint or not data:
        raise BadRecord(_("A key in the dump has no fingerprint or no key data."))
    return fingerprint, data


def _store_new(record: dict[str, Any], fingerprint: str, data: bytes, sources: dict[str, int]) -> int:
    """Store a key the server does not have and restore what it had; its bindings' count."""
    bindings = [_binding(b) for b in record.get("bindings") or []]
    origin = str(record["origin"]) if record.get("origin") in Origin.values else Origin.IMPORT
    source_id = sources.get(str(record.get("source") or ""))
    with transaction.atomic():
        result = imports.import_keys(data, origin=origin, actor=ACTOR, source_id=source_id)
        found = [r.key for r in result.keys if r.key.fingerprint == fingerprint]
        if not found:
            raise BadRecord(_("The key data in the dump is not that of the key it names."))
        with locked_key(found[0].pk) as key:
            publication.restore(key, bindings, blocked=bool(record.get("blocked")), actor=ACTOR)
            fields: dict[str, Any] = {
                "refreshed_at": _when(record.get("refreshed_at")),
                "next_refresh_at": _when(record.get("next_refresh_at")),
                "last_refresh_result": str(record.get("last_refresh_result") or ""),
                "refresh_failures": int(record.get("refresh_failures") or 0),
            }
            for name in ("first_seen", "updated"):  # stamped by the database unless restored
                if when := _when(record.get(name)):
                    fields[name] = when
            Key.objects.filter(pk=key.pk).update(**fields)
    return len(bindings)


def _key(record: dict[str, Any], done: Restored, sources: dict[str, int]) -> None:
    done.read += 1
    try:
        _one_key(record, done, sources)
    except (KeyserverError, ValueError, TypeError):
        done.refused_keys += 1
        raise


def _one_key(record: dict[str, Any], done: Restored, sources: dict[str, int]) -> None:
    fingerprint, data = _key_data(record)
    stored = Key.objects.filter(fingerprint=fingerprint).only("id", "data").first()
    if stored is None:
        done.bindings += _store_new(record, fingerprint, data, sources)
        done.stored += 1
        return
    if bytes(stored.data) == data:
        done.present += 1
        return
    result = imports.import_keys(data, origin=Origin.IMPORT, actor=ACTOR)
    if any(r.changed for r in result.keys):
        done.merged += 1
    else:
        done.present += 1


def _source(record: dict[str, Any], done: Restored, sources: dict[str, int]) -> None:
    name = str(record.get("name") or "")
    if not name or record.get("kind") not in Source.Kind.values:
        raise BadRecord(_("A source in the dump has no name or an unknown kind."))
    source, created = Source.objects.get_or_create(
        name=name,
        defaults={
            "kind": record["kind"],
            "url": str(record.get("url") or ""),
            "authoritative_domains": list(record.get("authoritative_domains") or []),
            "order": int(record.get("order") or 100),
            "enabled": bool(record.get("enabled", True)),
            "timeout": float(record.get("timeout") or 5.0),
            "options": dict(record.get("options") or {}),
        },
    )
    sources[name] = source.pk
    if created:
        done.sources += 1
    else:
        done.sources_present += 1


def _block(record: dict[str, Any], done: Restored) -> None:
    fingerprint = str(record.get("fingerprint") or "").upper()
    pattern = str(record.get("address_pattern") or "")
    if not fingerprint and not pattern:
        raise BadRecord(_("A policy block in the dump names neither a fingerprint nor an address."))
    with transaction.atomic():
        block, created = PolicyBlock.objects.get_or_create(
            fingerprint=fingerprint,
            address_pattern=pattern,
            defaults={
                "reason": str(record.get("reason") or ""),
                "created_by": str(record.get("created_by") or ""),
            },
        )
        if not created:
            done.blocks_present += 1
            return
        when = _when(record.get("created"))
        if when:
            PolicyBlock.objects.filter(pk=block.pk).update(created=when)
        # What is stored already (a key not from this dump) obeys it at once.
        policy.apply_policy_block(block, actor=ACTOR)
    done.blocks += 1


def _header(line: bytes) -> None:
    try:
        header = json.loads(line)
    except ValueError:
        raise NotADump() from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise NotADump()
    if header.get("version") != VERSION:
        raise NotADump(
            _("This dump has version %(version)s; this server reads version %(supported)s.")
            % {"version": header.get("version"), "supported": VERSION}
        )


def _record(number: int, line: bytes, done: Restored, sources: dict[str, int]) -> None:
    try:
        record = json.loads(line)
    except ValueError:
        raise BadRecord(_("Line %(number)s of the dump is not JSON.") % {"number": number}) from None
    kind = record.get("type") if isinstance(record, dict) else None
    if kind == "key":
        _key(record, done, sources)
    elif kind == "source":
        _source(record, done, sources)
    elif kind == "block":
        _block(record, done)
    elif kind == "end":
        done.complete = True
    else:
        raise BadRecord(_("Line %(number)s of the dump is of no known type.") % {"number": number})


def restore(lines: Iterable[bytes], *, progress: Progress = lambda _n: None) -> Restored:
    """Restore a JSON dump, line by line (`progress` gets the bytes read).

    Raises NotADump when the first line is not a dump's header; a line that
    cannot be restored is refused with its reason and the rest goes on.
    """
    done = Restored()
    sources = dict(Source.objects.values_list("name", "id"))
    numbered = enumerate(lines, start=1)
    for _number, first in numbered:
        progress(len(first))
        if first.strip():
            _header(first)
            break
    else:
        raise NotADump()
    for number, line in numbered:
        progress(len(line))
        if not line.strip():
            continue
        try:
            _record(number, line, done, sources)
        except (KeyserverError, ValueError, TypeError) as exc:  # BadRecord, or a value of the wrong kind
            done.refused[str(exc)[:200]] += 1
    return done
