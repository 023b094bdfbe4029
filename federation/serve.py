"""The read path: what every lookup serves, local published keys first, else
what upstream has.

Views call these instead of building queries, so the fallback order and the
publication rules are the same on HKP, VKS, the Attester API, WKD and the
pages: one indexed query per hit (keys.managers), precomputed bytes only.
"""

from __future__ import annotations

from dataclasses import dataclass

from keys import openpgp
from keys.identifiers import Query
from keys.managers import SERVED_STATES
from keys.models import Binding, Key

from .fallback import fallback


@dataclass
class Served:
    key: Key
    data: bytes
    user_ids: list[str]
    armored_text: str = ""

    @property
    def armored(self) -> str:
        return self.armored_text or openpgp.armor(self.data)


def for_email(address: str, *, client: str, per_address: bool = False) -> list[Served]:
    """Published keys for the address; else cached ones, asking upstream once."""
    published, cached = _served_bindings(address)
    if not published:
        if not cached:
            if fallback(Query("email", address), client=client).found is None:
                return []
            published, cached = _served_bindings(address)
        if not published:
            return [
                Served(b.key, bytes(b.certificate), _uids_for(b.key.fallback_user_ids, address))
                for b in cached
            ]
    if per_address:
        return [
            Served(b.key, bytes(b.certificate), _uids_for(b.key.published_user_ids, address))
            for b in published
        ]
    return [
        Served(b.key, bytes(b.key.published), b.key.published_user_ids, b.key.published_armor)
        for b in published
    ]


def for_id(query: Query, *, client: str) -> list[Served]:
    """Keys by fingerprint or key id: the published form, else the fallback
    form (cached addresses), else the bare key (no user IDs)."""
    keys = _local(query)
    if not keys and fallback(query, client=client).found is not None:
        keys = _local(query)
    served = []
    for key in keys:
        if key.published_user_ids or key.revoked or not key.fallback_user_ids:
            served.append(Served(key, bytes(key.published), key.published_user_ids, key.published_armor))
        else:
            served.append(Served(key, bytes(key.fallback), key.fallback_user_ids, key.fallback_armor))
    return served


def with_user_ids(served: list[Served]) -> list[Served]:
    """Publication rule 6: what HKP and the pages may show by id.

    A key without a user ID is refused by gpg, so it is left out, unless it
    is revoked (rule 5: served without user IDs so clients learn of the
    revocation). VKS by fingerprint serves the rest too, as keys.openpgp.org
    does.
    """
    return [s for s in served if s.user_ids or s.key.revoked]


def first_published(address: str) -> Served | None:
    """The best published key of an address, reduced to it (Attester's /lookup/email)."""
    bindings = Binding.objects.served(address)
    if not bindings:
        return None
    best = bindings[0]
    return Served(best.key, bytes(best.certificate), _uids_for(best.key.published_user_ids, address))


def wkd(domain: str, wkd_hash: str) -> bytes:
    """The WKD answer: every published key of the address, concatenated
    binary per-address certificates (WKD draft, 3.1)."""
    return b"".join(bytes(c) for c in Binding.objects.wkd(domain, wkd_hash))


def _served_bindings(address: str) -> tuple[list[Binding], list[Binding]]:
    """(published, cached) bindings of the address, best first, in one query."""
    found = Binding.objects.served(address, SERVED_STATES)
    return (
        [b for b in found if b.state == Binding.State.PUBLISHED],
        [b for b in found if b.state == Binding.State.CACHED],
    )


def _local(query: Query) -> list[Key]:
    if query.kind == "fingerprint":
        key = Key.objects.by_fingerprint(query.value)
        return [key] if key else []
    return Key.objects.by_keyid(query.value)


def _uids_for(user_ids: list[str], address: str) -> list[str]:
    return [uid for uid in user_ids if openpgp.uid_address(uid) == address]


def armored(served: list[Served]) -> str:
    """All in one armor block (the precomputed text when there is one)."""
    if len(served) == 1:
        return served[0].armored
    return openpgp.armor(b"".join(s.data for s in served))


def stats() -> dict[str, int]:
    """HKP op=stats."""
    return {**Key.objects.counts(), "published_addresses": Binding.objects.published_count()}
