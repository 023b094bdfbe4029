"""An HKP keyserver as a source: SKS, Hockeypuck, or another instance of this server."""

from __future__ import annotations

from urllib.parse import quote

from keys.identifiers import Query

from .base import Upstream


class HkpUpstream(Upstream):
    """Asked with op=get&exact=on (HKP draft, 3.1.2.1)."""

    def fetch(self, query: Query) -> list[bytes]:
        search = query.value if query.kind == "email" else f"0x{query.value}"
        url = f"{self.row.url.rstrip('/')}/pks/lookup?op=get&options=mr&exact=on&search={quote(search)}"
        keys = self._keys_or_none(self._get(url))
        if keys and b"-----BEGIN PGP" not in keys[0]:
            # SKS answers some errors as HTML with status 200.
            return []
        return keys
