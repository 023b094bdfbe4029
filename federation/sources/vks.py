"""keys.openpgp.org's VKS API as a source."""

from __future__ import annotations

from urllib.parse import quote

from keys.identifiers import Query

from .base import Upstream


class VksUpstream(Upstream):
    """keys.openpgp.org's VKS API (or this server's own)."""

    def fetch(self, query: Query) -> list[bytes]:
        path = {
            "email": "by-email",
            "fingerprint": "by-fingerprint",
            "keyid": "by-keyid",
        }[query.kind]
        url = f"{self.row.url.rstrip('/')}/vks/v1/{path}/{quote(query.value, safe='@')}"
        return self._keys_or_none(self._get(url))
