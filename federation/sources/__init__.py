"""Upstream sources, one module per kind, and the registry that picks one.

`base` holds the interface (Upstream, SourceError); `hkp`, `vks`, `wkd` and
`ldap` the kinds. The LDAP source needs python-ldap, which is optional: when
it is missing, a stand-in says so on every fetch.
"""

from __future__ import annotations

from keys import metrics
from keys.identifiers import Query
from keys.models import Source

from .base import SourceError, Upstream
from .hkp import HkpUpstream
from .vks import VksUpstream
from .wkd import WkdUpstream

__all__ = ["LdapUnavailable", "SourceError", "Upstream", "upstream_for"]


class LdapUnavailable(Upstream):
    """Stands in for the LDAP source when python-ldap is not installed."""

    def fetch(self, query: Query) -> list[bytes]:
        raise SourceError(
            "the LDAP source needs python-ldap: pip install -r requirements-ldap.txt "
            "(Debian: apt-get install libldap2-dev libsasl2-dev first)",
            permanent=True,
        )


def upstream_for(row: Source) -> Upstream:
    """The source object for a configured row; each fetch is counted and
    timed (keys.metrics) whoever asks: lookups, refresh, checks."""
    upstream = _kind(row)
    fetch = upstream.fetch

    def measured(query: Query) -> list[bytes]:
        with metrics.upstream_request(row.name):
            return fetch(query)

    upstream.fetch = measured  # type: ignore[method-assign]
    return upstream


def _kind(row: Source) -> Upstream:
    if row.kind == Source.Kind.HKP:
        return HkpUpstream(row)
    if row.kind == Source.Kind.VKS:
        return VksUpstream(row)
    if row.kind == Source.Kind.WKD:
        return WkdUpstream(row)
    try:
        # Optional dependency: importing the module imports python-ldap.
        from .ldap import LdapUpstream
    except ImportError:
        return LdapUnavailable(row)
    return LdapUpstream(row)
