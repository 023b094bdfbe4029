"""The read path: what every lookup serves, local answers first, else what
upstream has.

Views call these, so the fallback order and the publication rules are the
same on HKP, VKS, the Attester API, WKD and the pages. The local answers and
their exact bytes are keys.services.answers (which the published file tree
writes too); this module adds the upstream fallback on a miss.
"""

from __future__ import annotations

from keys.identifiers import Query
from keys.services import answers
from keys.services.answers import (
    LEVEL_HEADER,
    NO_LEVEL,
    Served,
    WkdAnswer,
    armored,
    first_published,
    level_header,
    levels_of,
    modified,
    with_user_ids,
)
from keys.services.stats import store_counts

from .fallback import fallback

__all__ = [
    "LEVEL_HEADER",
    "NO_LEVEL",
    "Served",
    "WkdAnswer",
    "armored",
    "first_published",
    "for_email",
    "for_id",
    "level_header",
    "levels_of",
    "modified",
    "stats",
    "with_user_ids",
    "wkd",
]


def for_email(address: str, *, client: str, per_address: bool = False) -> list[Served]:
    """Published keys for the address; else cached ones, asking upstream once."""
    local = answers.for_email(address, per_address=per_address)
    if local is not None:
        return local
    if fallback(Query("email", address), client=client).found is None:
        return []
    return answers.for_email(address, per_address=per_address) or []


def for_id(query: Query, *, client: str) -> list[Served]:
    """Keys by fingerprint or key id; upstream is asked when none is stored."""
    local = answers.for_id(query)
    if not local and fallback(query, client=client).found is not None:
        local = answers.for_id(query)
    return local


def wkd(domain: str, wkd_hash: str) -> WkdAnswer:
    """WKD serves published bindings only: never asks upstream (rule 3)."""
    return answers.wkd(domain, wkd_hash)


def stats() -> dict[str, int]:
    """HKP op=stats: the store's size as last counted (keys.services.stats)."""
    return store_counts()
