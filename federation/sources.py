"""Upstream sources: one interface, `fetch(query) -> list[bytes]`.

Each source returns raw key data (armored or binary blocks) or raises
SourceError; `permanent` says whether asking again later could help. All
HTTP goes through federation.outbound (deadline, size cap, SSRF guard).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from urllib.parse import quote

from keys.identifiers import Query, domain_of, wkd_hash

from . import outbound
from .models import Source


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

    def _get(self, url: str) -> outbound.Response:
        try:
            return outbound.get(url, timeout=self.row.timeout)
        except outbound.OutboundError as exc:
            raise SourceError(str(exc), permanent=exc.permanent) from None

    def _keys_or_none(self, response: outbound.Response) -> list[bytes]:
        if response.status == 404:
            return []
        if response.status == 429:
            raise SourceError(f"{self.name} is rate limiting us; try later")
        if response.status != 200:
            raise SourceError(f"{self.name} answered HTTP {response.status}")
        return [response.body] if response.body.strip() else []


class HkpUpstream(Upstream):
    """An HKP keyserver: SKS, Hockeypuck, or another instance of this server."""

    def fetch(self, query: Query) -> list[bytes]:
        search = query.value if query.kind == "email" else f"0x{query.value}"
        url = f"{self.row.url.rstrip('/')}/pks/lookup?op=get&options=mr&exact=on&search={quote(search)}"
        keys = self._keys_or_none(self._get(url))
        if keys and b"-----BEGIN PGP" not in keys[0]:
            # SKS answers some errors as HTML with status 200.
            return []
        return keys


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


class LdapUnavailable(Upstream):
    """Stands in for the LDAP source when python-ldap is not installed."""

    def fetch(self, query: Query) -> list[bytes]:
        raise SourceError(
            "the LDAP source needs python-ldap: pip install -r requirements-ldap.txt "
            "(Debian: apt-get install libldap2-dev libsasl2-dev first)",
            permanent=True,
        )


def upstream_for(row: Source) -> Upstream:
    if row.kind == Source.Kind.HKP:
        return HkpUpstream(row)
    if row.kind == Source.Kind.VKS:
        return VksUpstream(row)
    if row.kind == Source.Kind.WKD:
        return WkdUpstream(row)
    try:
        from .ldap_source import LdapUpstream
    except ImportError:
        return LdapUnavailable(row)
    return LdapUpstream(row)
