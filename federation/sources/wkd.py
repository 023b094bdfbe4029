"""The Web Key Directory of an address's own domain as a source."""

from __future__ import annotations

from urllib.parse import quote

from keys.identifiers import Query, domain_of, wkd_hash

from .base import SourceError, Upstream


class WkdUpstream(Upstream):
    """The Web Key Directory of the address's own domain (WKD draft, 3.1).

    The advanced method first; the direct method only when the
    openpgpkey subdomain does not exist (it does not resolve).
    """

    kinds = frozenset({"email"})

    def fetch(self, query: Query) -> list[bytes]:
        domain = domain_of(query.value)
        local = query.value.rsplit("@", 1)[0]
        digest = wkd_hash(query.value)
        advanced = f"https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{digest}?l={quote(local)}"
        try:
            return self._keys_or_none(self._get(advanced))
        except SourceError as exc:
            if "cannot resolve" not in exc.message:
                raise
        direct = f"https://{domain}/.well-known/openpgpkey/hu/{digest}?l={quote(local)}"
        return self._keys_or_none(self._get(direct))
