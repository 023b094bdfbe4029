"""The exact bytes of every lookup answer, from the stored rows alone.

The views render these (federation.serve adds the upstream fallback on a
miss), and the published file tree (`published_files`) writes the very same
bytes, so a front server serving a file and the application answering agree
by construction. Nothing here parses OpenPGP: the forms were precomputed on
write by `publication.rebuild`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from .. import openpgp
from ..identifiers import Query
from ..managers import SERVED_STATES
from ..models import Binding, Key
from ..rows import KeyRow

# The response header naming the validation levels of what an answer serves
# (docs/api.md): the distinct levels of the served addresses' bindings
# (Binding.Validation), comma-separated, or NO_LEVEL when the answer carries
# no published address (a key by id without one, a revocation-only answer).
LEVEL_HEADER = "Key-Validation"
NO_LEVEL = "none"

# Printable ASCII stays as it is in an mr uid field; ':', '%', controls and
# non-ASCII bytes are percent-encoded (HKP draft, 5.2).
UID_SAFE = " !\"#$&'()*+,-./;<=>?@[]^_`{|}~"


@dataclass
class Served:
    key: KeyRow
    data: bytes
    user_ids: list[str]
    armored_text: str = ""
    # The published form (or a per-address part of it): what the file tree
    # may hold. False for fallback answers made of cached (upstream) addresses.
    published: bool = True
    # The validation levels of the bindings whose user IDs this answer carries.
    levels: tuple[str, ...] = ()

    @property
    def armored(self) -> str:
        return self.armored_text or openpgp.armor(self.data)


def level_order(level: str) -> tuple[int, str]:
    """Binding.Validation's order first; a level it does not list (yet) after."""
    values = list(Binding.Validation.values)
    return (values.index(level) if level in values else len(values), level)


def levels_of(levels: Iterable[str]) -> str:
    """The Key-Validation value of some levels: distinct, in a fixed order."""
    return ",".join(sorted({v for v in levels if v}, key=level_order)) or NO_LEVEL


def level_header(served: list[Served]) -> dict[str, str]:
    """The Key-Validation header of an answer made of `served`."""
    return {LEVEL_HEADER: levels_of([level for s in served for level in s.levels])}


def _by_id_form(key: KeyRow) -> Served:
    """A key by fingerprint or key id: its published form, else its fallback
    form (cached addresses), else the bare key (no user IDs)."""
    if key.published_user_ids or key.revoked or not key.fallback_user_ids:
        levels = key.levels(Binding.State.PUBLISHED) if key.published_user_ids else ()
        return Served(key, bytes(key.published), key.published_user_ids, key.published_armor, levels=levels)
    return Served(
        key,
        bytes(key.fallback),
        key.fallback_user_ids,
        key.fallback_armor,
        published=False,
        levels=key.levels(Binding.State.CACHED),
    )


def for_id(query: Query) -> list[Served]:
    """Stored keys by fingerprint (primary or subkey) or long key id, best first."""
    if query.kind == "fingerprint":
        key = Key.objects.by_fingerprint(query.value)
        keys = [key] if key else []
    else:
        keys = Key.objects.by_keyid(query.value)
    return [_by_id_form(key) for key in keys]


def with_user_ids(served: list[Served]) -> list[Served]:
    """Publication rule 6: what HKP and the pages may show by id.

    A key without a user ID is refused by gpg, so it is left out, unless it
    is revoked (rule 5: served without user IDs so clients learn of the
    revocation). VKS by fingerprint serves the rest too, as keys.openpgp.org
    does.
    """
    return [s for s in served if s.user_ids or s.key.revoked]


def _uids_for(user_ids: list[str], address: str) -> list[str]:
    return [uid for uid in user_ids if openpgp.uid_address(uid) == address]


def for_email(address: str, *, per_address: bool = False) -> list[Served] | None:
    """Stored keys for an address: the published ones; else the cached ones
    (found upstream, reduced to the address); None when there is neither, so
    the caller may ask upstream."""
    found = Binding.objects.served(address, SERVED_STATES)
    published = [b for b in found if b.state == Binding.State.PUBLISHED]
    if published and per_address:
        return [
            Served(
                b.key,
                bytes(b.certificate),
                _uids_for(b.key.published_user_ids, address),
                levels=(b.validation,),
            )
            for b in published
        ]
    if published:
        return [
            Served(
                b.key,
                bytes(b.key.published),
                b.key.published_user_ids,
                b.key.published_armor,
                levels=(b.validation,),
            )
            for b in published
        ]
    cached = [b for b in found if b.state == Binding.State.CACHED]
    if not cached:
        return None
    return [
        Served(
            b.key,
            bytes(b.certificate),
            _uids_for(b.key.fallback_user_ids, address),
            published=False,
            levels=(b.validation,),
        )
        for b in cached
    ]


def first_published(address: str) -> Served | None:
    """The best published key of an address, reduced to it (Attester's /lookup/email)."""
    bindings = Binding.objects.served(address)
    if not bindings:
        return None
    best = bindings[0]
    return Served(
        best.key,
        bytes(best.certificate),
        _uids_for(best.key.published_user_ids, address),
        levels=(best.validation,),
    )


# -- rendering ------------------------------------------------------------------------


def armored(served: list[Served]) -> str:
    """All in one armor block (the precomputed text when there is one)."""
    if len(served) == 1:
        return served[0].armored
    return openpgp.armor(b"".join(s.data for s in served))


def attester_text(served: list[Served]) -> str:
    """GET /pub/<query>: the armored blocks one after the other."""
    return "".join(s.armored if s.armored.endswith("\n") else s.armored + "\n" for s in served)


def mr_index(served: list[Served], now: datetime) -> str:
    """The machine-readable index (HKP draft, 5.2): percent-encoded uids."""
    lines = [f"info:1:{len(served)}"]
    for item in served:
        key = item.key
        expired = key.expires is not None and key.expires <= now
        flags = ("r" if key.revoked else "") + ("e" if expired else "")
        expires = str(int(key.expires.timestamp())) if key.expires else ""
        lines.append(
            f"pub:{key.fingerprint}:{key.algorithm_id}:{key.bits or ''}:"
            f"{int(key.created.timestamp())}:{expires}:{flags}"
        )
        for uid in item.user_ids:
            lines.append(f"uid:{quote(uid, safe=UID_SAFE)}:::{flags}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class WkdAnswer:
    data: bytes
    modified: datetime | None
    levels: tuple[str, ...]

    @property
    def header(self) -> dict[str, str]:
        return {LEVEL_HEADER: levels_of(self.levels)}


def wkd(domain: str, wkd_hash: str) -> WkdAnswer:
    """The WKD answer: every published key of the address, concatenated
    binary per-address certificates (WKD draft, 3.1); when it changed, and
    the validation levels of its bindings."""
    rows = Binding.objects.wkd(domain, wkd_hash)
    return WkdAnswer(
        b"".join(c for c, _u, _v in rows),
        max((u for _c, u, _v in rows), default=None),
        tuple(v for *_r, v in rows),
    )


def modified(served: list[Served]) -> datetime | None:
    """When the newest key of an answer last changed (Last-Modified, ETag)."""
    return max((s.key.updated for s in served), default=None)
