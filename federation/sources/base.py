"""What every upstream source is: one interface, `fetch(query) -> list[bytes]`.

Each source returns raw key data (armored or binary blocks) or raises
SourceError; `permanent` says whether asking again later could help. All
HTTP goes through federation.http (deadline, size cap, SSRF guard).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from keys.identifiers import Query
from keys.models import Source

from .. import http


class SourceError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class Upstream(ABC):
    """One configured source; `row` holds its settings and health."""

    #: Which lookups this kind of source can answer.
    kinds: frozenset[str] = frozenset({"email", "fingerprint", "keyid"})

    def __init__(self, row: Source) -> None:
        self.row = row

    @property
    def name(self) -> str:
        return self.row.name

    def can_answer(self, query: Query) -> bool:
        return query.kind in self.kinds

    @abstractmethod
    def fetch(self, query: Query) -> list[bytes]:
        """Key data for `query`; [] when the source has none."""

    def _get(self, url: str) -> http.Response:
        try:
            return http.get(url, timeout=self.row.timeout)
        except http.OutboundError as exc:
            raise SourceError(str(exc), permanent=exc.permanent) from None

    def _keys_or_none(self, response: http.Response) -> list[bytes]:
        if response.status == 404:
            return []
        if response.status == 429:
            raise SourceError(f"{self.name} is rate limiting us; try later")
        if response.status != 200:
            raise SourceError(f"{self.name} answered HTTP {response.status}")
        return [response.body] if response.body.strip() else []
