"""Attester's LDAP relay and the organisation's directory check."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_safe

from keys import openpgp, ratelimit
from keys.errors import InvalidQuery, KeyserverError, NotFound, RateLimited
from keys.identifiers import Query, domain_of, normalize_email
from keys.ratelimit import client_ip

from .lookup import authoritative_sources
from .models import Source
from .sources import SourceError, upstream_for

_HOST = re.compile(r"^[a-z0-9.-]+(:[0-9]{1,5})?$")


class ForbiddenServer(KeyserverError):
    status = 403
    default_message = gettext_lazy("This LDAP server may not be queried through this relay.")


class UpstreamFailed(KeyserverError):
    status = 502
    default_message = gettext_lazy("The organisation's directory could not be asked.")


def _allowed(host: str, address: str) -> bool:
    """Configured hosts, the hosts of LDAP sources, and keys.<domain> of the address."""
    name = host.split(":")[0]
    if name in settings.LDAP_RELAY_ALLOWED_HOSTS or host in settings.LDAP_RELAY_ALLOWED_HOSTS:
        return True
    for url in Source.objects.filter(kind=Source.Kind.LDAP, enabled=True).values_list("url", flat=True):
        if urlsplit(url).hostname == name:
            return True
    return settings.LDAP_RELAY_ALLOW_KEYS_SUBDOMAINS and name == f"keys.{domain_of(address)}"


@require_safe
def ldap_relay(request: HttpRequest) -> HttpResponse:
    """GET /ldap-relay?server=<host>&search=<email> (Attester).

    Looks the address up on an allowed LDAP keyserver and relays only what
    verifies, reduced to the address's user IDs; nothing is stored.
    """
    server = request.GET.get("server", "").strip().lower()
    address = normalize_email(request.GET.get("search", ""))
    if not _HOST.match(server):
        raise InvalidQuery(_("server must be a host name."))
    if not _allowed(server, address):
        raise ForbiddenServer()
    if not ratelimit.allow(f"ldap-relay:{client_ip(request)}", settings.FEDERATION_RATE_PER_CLIENT):
        raise RateLimited()
    row = Source(
        name=f"relay:{server}",
        kind=Source.Kind.LDAP,
        url=f"ldap://{server}",
        timeout=settings.FEDERATION_SOURCE_TIMEOUT,
        options={"layout": "keyserver"},
    )
    try:
        blocks = upstream_for(row).fetch(Query("email", address))
    except SourceError as exc:
        if exc.permanent and "non-public" in exc.message:
            raise ForbiddenServer(_("Private and loopback addresses may not be queried.")) from None
        raise NotFound(_("No OpenPGP LDAP server on this address.")) from None
    armored = _verified_for(address, blocks)
    if not armored:
        raise NotFound()
    return HttpResponse("".join(armored), content_type="text/plain; charset=utf-8")


def _verified_for(address: str, blocks: list[bytes]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        try:
            certs = openpgp.parse(block).certs
        except KeyserverError:
            continue
        out.extend(openpgp.armor(openpgp.publishable(c, [address])) for c in certs if address in c.emails)
    return out


@require_safe
def directory_check(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/directory-check?email=&fingerprint= → {"match", "fingerprints"}.

    Asks the organisation's directory (the sources authoritative for the
    address's domain) afresh, not the local copy: a client can refuse to
    import a private key whose fingerprint the directory does not hold.
    No authoritative source for the domain: no match, no fingerprints.
    """
    address = normalize_email(request.GET.get("email", ""))
    given = "".join(request.GET.get("fingerprint", "").split()).upper().removeprefix("0X")
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", given):
        raise InvalidQuery(_("fingerprint must be a full 40 or 64 digit fingerprint."))
    if not ratelimit.allow(f"directory-check:{client_ip(request)}", settings.FEDERATION_RATE_PER_CLIENT):
        raise RateLimited()
    fingerprints: list[str] = []
    failures = 0
    sources = authoritative_sources(domain_of(address))
    for source in sources:
        try:
            blocks = upstream_for(source).fetch(Query("email", address))
        except SourceError:
            failures += 1
            continue
        for block in blocks:
            try:
                certs = openpgp.parse(block).certs
            except KeyserverError:
                continue
            fingerprints += [
                c.fingerprint for c in certs if address in c.emails and c.fingerprint not in fingerprints
            ]
    if sources and failures == len(sources):
        raise UpstreamFailed()
    return JsonResponse({"match": given in fingerprints, "fingerprints": fingerprints})
