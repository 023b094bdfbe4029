"""The VKS API of keys.openpgp.org (Hagrid), with its shapes and status values."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from federation import serve

from ..errors import InvalidKey, InvalidToken, KeyserverError, NoKeyUploaded, NotFound
from ..identifiers import Query, normalize_email, parse_fingerprint, parse_keyid
from ..models import Key
from ..services import submission, verification
from .http import address_status, client_ip, json_object, key_response


@require_safe
def by_fingerprint(request: HttpRequest, fpr: str) -> HttpResponse:
    fingerprint = parse_fingerprint(fpr)
    served = serve.for_id(Query("fingerprint", fingerprint), client=client_ip(request))
    return key_response(request, served, filename=fingerprint)


@require_safe
def by_keyid(request: HttpRequest, keyid: str) -> HttpResponse:
    value = parse_keyid(keyid)
    served = serve.for_id(Query("keyid", value), client=client_ip(request))
    return key_response(request, served, filename=value)


@require_safe
def by_email(request: HttpRequest, email: str) -> HttpResponse:
    served = serve.for_email(normalize_email(email), client=client_ip(request))
    if not served:
        raise NotFound()
    return key_response(request, served, filename=served[0].key.fingerprint)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise KeyserverError(
            _("expected application/json data. see %(url)s/about/api for api docs.")
            % {"url": settings.SITE_URL}
        )
    return json_object(request)


def _keytext_bytes(keytext: str) -> bytes:
    """Armored text, or a binary key in base64 (both accepted by keys.openpgp.org)."""
    if "-----BEGIN PGP" in keytext:
        return keytext.encode("utf-8", errors="replace")
    try:
        return base64.b64decode("".join(keytext.split()), validate=True)
    except (binascii.Error, ValueError):
        return keytext.encode("utf-8", errors="replace")


def _upload_answer(key: Key, token: str) -> dict[str, Any]:
    return {"key_fpr": key.fingerprint, "status": address_status(key), "token": token}


def _upload_body(request: HttpRequest) -> bytes:
    keytext = _json_body(request).get("keytext")
    if not isinstance(keytext, str) or not keytext.strip():
        raise NoKeyUploaded()
    return _keytext_bytes(keytext)


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    client = client_ip(request)
    result = submission.submit(lambda: _upload_body(request), client=client, actor=f"vks {client}")
    if len(result.keys) > 1:
        # keys.openpgp.org answers a keyring with a bare list of fingerprints.
        return JsonResponse([item.key.fingerprint for item in result.keys], safe=False)
    key = result.keys[0].key
    return JsonResponse(_upload_answer(key, verification.upload_token(key)))


def pick_locale(locales: object) -> str:
    """The first of a client's locales (de_CH, de-DE, ...) that we ship."""
    available = {code for code, _name in settings.LANGUAGES}
    if isinstance(locales, list):
        for entry in locales:
            if isinstance(entry, str):
                language = entry.replace("-", "_").split("_", 1)[0].lower()
                if language in available:
                    return language
    return ""


@csrf_exempt
@require_POST
def request_verify(request: HttpRequest) -> HttpResponse:
    data = _json_body(request)
    token, addresses = data.get("token"), data.get("addresses")
    if not isinstance(token, str):
        raise InvalidToken(_("Upload session expired. Please try again."))
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise InvalidKey(_("addresses must be a list of email addresses."))
    try:
        key = verification.key_for_upload_token(token)
    except InvalidToken:
        raise InvalidToken(_("Upload session expired. Please try again.")) from None
    known = address_status(key)
    wanted = []
    for address in addresses:
        normalized = normalize_email(address)
        if normalized not in known:
            raise InvalidKey(_("The address %(address)s is not on this key.") % {"address": address})
        wanted.append(normalized)
    verification.request_verification(
        key,
        wanted,
        client=client_ip(request),
        locale=pick_locale(data.get("locale")),
        actor=f"vks {client_ip(request)}",
    )
    key.refresh_from_db()
    return JsonResponse(_upload_answer(key, token))
