"""Attester's LDAP relay and the organisation's directory check.

Both ask LDAP directories live and store nothing: the relay an allowed
OpenPGP LDAP keyserver, the check the organisation's own directory for an
address's domain. The views (keys/views/ldap.py) parse the request and
render these answers.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from keys import openpgp, ratelimit
from keys.errors import InvalidQuery, KeyserverError, NotFound, RateLimited
from keys.identifiers import Query, domain_of
from keys.models import Binding, PolicyBlock, Source
from keys.services.limits import limits

from . import http
from .sources import LdapUnavailable, SourceError, upstream_for

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SERVER = re.compile(rf"^(?P<host>{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>[0-9]{{1,5}}))?$")
LDAP_PORT = 389


class ForbiddenServer(KeyserverError):
    status = 403
    default_message = gettext_lazy("This LDAP server may not be queried through this relay.")


class UpstreamFailed(KeyserverError):
    status = 502
    default_message = gettext_lazy("The organisation's directory could not be asked.")


class LdapMissing(KeyserverError):
    """python-ldap is not installed on this server (the message says how to fix it)."""

    status = 503


def parse_server(raw: str) -> tuple[str, int]:
    """`host` or `host:port` → (host, port); anything else is a 400."""
    match = _SERVER.match(raw.strip().lower())
    port = int(match.group("port") or LDAP_PORT) if match else 0
    if not match or not 0 < port < 65536 or len(match.group("host")) > 253:
        raise InvalidQuery(_("server must be a host name."))
    return match.group("host"), port


def _listed(host: str, port: int) -> bool:
    """In LDAP_RELAY_ALLOWED_HOSTS: `host` means port 389, `host:port` that port."""
    for entry in settings.LDAP_RELAY_ALLOWED_HOSTS:
        name, _sep, entry_port = str(entry).strip().lower().partition(":")
        if name == host and (int(entry_port) if entry_port.isdigit() else LDAP_PORT) == port:
            return True
    return False


def _configured_source(host: str, port: int) -> Source | None:
    """The enabled LDAP source on this host and port, if there is one."""
    for row in Source.objects.enabled():
        if row.kind != Source.Kind.LDAP:
            continue
        try:
            parts = urlsplit(row.url)
            row_port = parts.port or (636 if parts.scheme == "ldaps" else LDAP_PORT)
        except ValueError:
            continue
        if parts.hostname == host and row_port == port:
            return row
    return None


def _relay_target(host: str, port: int, address: str) -> Source:
    """The server as a throwaway source if the relay may ask it, else 403.

    Allowed: LDAP_RELAY_ALLOWED_HOSTS, the host and port of every enabled
    LDAP source (with its URL scheme and TLS options, never its bind
    credentials), and, with LDAP_RELAY_ALLOW_KEYS_SUBDOMAINS,
    `keys.<domain of the address>` on 389.
    """
    options: dict[str, object] = {"layout": "keyserver"}
    scheme = "ldap"
    source = _configured_source(host, port)
    if source is not None:
        scheme = urlsplit(source.url).scheme
        configured = source.options or {}
        options.update({k: configured[k] for k in ("starttls", "ca_file") if k in configured})
    keys_subdomain = (
        settings.LDAP_RELAY_ALLOW_KEYS_SUBDOMAINS
        and host == f"keys.{domain_of(address)}"
        and port == LDAP_PORT
    )
    if not (source is not None or _listed(host, port) or keys_subdomain):
        raise ForbiddenServer()
    return Source(
        name=f"relay:{host}:{port}",
        kind=Source.Kind.LDAP,
        url=f"{scheme}://{host}:{port}",
        timeout=settings.FEDERATION_SOURCE_TIMEOUT,
        options=options,
    )


def relay_level(host: str, port: int, address: str) -> str:
    """The validation level of what the relay serves (its Key-Validation
    header): the organisation's directory when the server is a configured
    source authoritative for the address's domain, else an LDAP server
    nobody here checked."""
    source = _configured_source(host, port)
    if source is not None and domain_of(address) in source.authoritative_domains:
        return Binding.Validation.ORG_DIRECTORY
    return Binding.Validation.UPSTREAM_UNVERIFIED


def relay(host: str, port: int, address: str, *, client: str) -> str:
    """GET /ldap-relay?server=<host>&search=<email> (Attester).

    Looks the address up on an allowed OpenPGP LDAP keyserver and relays only
    keys that verify, reduced to the user IDs of that address, armored;
    stores nothing.
    """
    row = _relay_target(host, port, address)
    if not ratelimit.allow(f"ldap-relay:{client}", settings.FEDERATION_RATE_PER_CLIENT):
        raise RateLimited()
    try:
        http.resolve(host, port)  # the same guard as every outbound call
    except http.ForbiddenTarget:
        raise ForbiddenServer(_("Private and loopback addresses may not be queried.")) from None
    except http.OutboundError:
        raise NotFound(_("No OpenPGP LDAP server on this address.")) from None
    upstream = upstream_for(row)
    try:
        blocks = upstream.fetch(Query("email", address))
    except SourceError as exc:
        if isinstance(upstream, LdapUnavailable):
            raise LdapMissing(exc.message) from None
        raise NotFound(_("No OpenPGP LDAP server on this address.")) from None
    certs = _certs_for(address, blocks)
    if not certs or PolicyBlock.objects.blocked_addresses([address]):
        raise NotFound()
    return "".join(openpgp.armor(openpgp.publishable(c, [address])) for c in certs)


def _certs_for(address: str, blocks: list[bytes], *, policy: bool = True) -> list[openpgp.CertInfo]:
    """Verified public certificates with a valid user ID for the address,
    newest first, once each; with `policy`, none removed from distribution."""
    found: dict[str, openpgp.CertInfo] = {}
    for block in blocks:
        try:
            certs = openpgp.parse(block, limits()).certs
        except KeyserverError:
            continue  # not a key, a secret key, too large...
        for cert in certs:
            if address in cert.emails and cert.fingerprint not in found:
                found[cert.fingerprint] = cert
    blocked = PolicyBlock.objects.blocked_fingerprints(found) if policy else set()
    return sorted(
        (c for fpr, c in found.items() if fpr not in blocked), key=lambda c: c.created, reverse=True
    )


FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")


def check(address: str, given: str, *, client: str) -> dict[str, object]:
    """GET /api/v1/directory-check?email=&fingerprint= → {"match", "fingerprints"}.

    Asks the organisation's directory (every source authoritative for the
    address's domain) afresh, not the local copy, so that a client can refuse
    to import a private key whose fingerprint the directory does not hold.
    "fingerprints": the primary fingerprints of the keys the directory holds
    with a valid user ID for the address. No authoritative source for the
    domain: no match and no fingerprints. A source that cannot be asked
    makes the answer a 502 unless another one already matched.
    """
    if not FINGERPRINT.fullmatch(given):
        raise InvalidQuery(_("fingerprint must be a full 40 or 64 digit fingerprint."))
    if not ratelimit.allow(f"directory-check:{client}", settings.FEDERATION_RATE_PER_CLIENT):
        raise RateLimited()
    fingerprints: list[str] = []
    failed = False
    for source in Source.objects.authoritative_for(domain_of(address)):
        try:
            blocks = upstream_for(source).fetch(Query("email", address))
        except SourceError:
            failed = True
            continue
        fingerprints += [
            c.fingerprint
            for c in _certs_for(address, blocks, policy=False)
            if c.fingerprint not in fingerprints
        ]
    match = given in fingerprints
    if failed and not match:
        raise UpstreamFailed()
    return {"match": match, "fingerprints": fingerprints}
