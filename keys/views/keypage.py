"""The page of one key: /key/<FPR>, what the lookups serve of it, and how to fetch it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_safe

from federation import serve

from ..errors import NotFound
from ..identifiers import Query, group_fingerprint, keyserver_uri, parse_fingerprint
from ..models import Binding
from .http import client_ip

Validation = Binding.Validation
# What each validation level promises about an address (docs/api.md, the
# Key-Validation header). A level not listed here shows its name only.
PROMISES = {
    Validation.EMAIL_CONFIRMED: _("The owner of the address opened a confirmation link mailed to it."),
    Validation.OIDC_VERIFIED: _("An OpenID provider's signed token for this address proved it."),
    Validation.ORG_DIRECTORY: _("The organisation's own directory lists this key for the address."),
    Validation.UPSTREAM_VERIFIED: _(
        "A keyserver that verifies addresses (such as keys.openpgp.org) vouched for it; not confirmed here."
    ),
    Validation.UPSTREAM_UNVERIFIED: _(
        "Found on a public keyserver that checks nothing; nobody confirmed that the address belongs to "
        "this key."
    ),
    Validation.FINGERPRINT_VERIFIED: _(
        "Staff compared the fingerprint with the owner out of band, on top of the confirmed address."
    ),
    Validation.SERVER_KEY: _("This keyserver's own key, made and published by the server itself."),
    Validation.WKS_CONFIRMED: _(
        "The owner sent the key by the Web Key Service and answered with a secret only this key could "
        "decrypt."
    ),
}


def promise(level: str) -> str:
    """What a validation level promises, for people ("" for a level without a text)."""
    return str(PROMISES.get(level, ""))  # type: ignore[call-overload]


def commands(fingerprint: str, addresses: list[str]) -> list[str]:
    """The exact commands that fetch this key from here (and by WKD, for its
    published addresses in WKD_DOMAINS)."""
    server = keyserver_uri(settings.SITE_URL)
    policy = "-p insecure " if server.startswith("hkp://") else ""
    lines = [
        f"gpg --keyserver {server} --recv-keys {fingerprint}",
        f"sq keyserver {policy}--server {server} get {fingerprint}",
    ]
    domains = set(settings.WKD_DOMAINS)
    lines += [
        f"gpg --auto-key-locate clear,nodefault,wkd --locate-keys {address}"
        for address in addresses
        if address.rsplit("@", 1)[-1] in domains
    ]
    return lines


@require_safe
def key(request: HttpRequest, fpr: str) -> HttpResponse:
    """One key as the lookups by fingerprint serve it: a key without a
    published address shows no user IDs, and says why it is not published."""
    fingerprint = parse_fingerprint(fpr)
    served = serve.for_id(Query("fingerprint", fingerprint), client=client_ip(request))
    if not served:
        raise NotFound()
    item = served[0]
    state = Binding.State.PUBLISHED if item.published else Binding.State.CACHED
    bindings = list(Binding.objects.filter(key_id=item.key.pk, state=state).order_by("address"))
    if not item.user_ids:
        bindings = []
    for binding in bindings:
        binding.promise = promise(binding.validation)  # type: ignore[attr-defined]
    addresses = [b.address for b in bindings]
    shown = bool(serve.with_user_ids([item]))
    context = {
        "key": item.key,
        "grouped": group_fingerprint(item.key.fingerprint),
        "bindings": bindings,
        "user_ids": item.user_ids,
        "unpublished": not shown,
        "commands": commands(item.key.fingerprint, addresses if item.published else []) if shown else [],
    }
    return render(request, "key.html", context)
