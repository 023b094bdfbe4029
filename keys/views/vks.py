"""The VKS API of keys.openpgp.org (Hagrid), with its shapes and status values.

DRF views (keys.views.rest); the lookups answer the armored bytes and
validators of keys.views.http.key_response, exactly as the published files.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from federation import serve

from ..errors import InvalidKey, InvalidToken, NoKeyUploaded, NotFound
from ..identifiers import Query, normalize_email, parse_fingerprint, parse_keyid
from ..models import Key
from ..services import submission, verification
from . import schemas
from .http import PGP_KEYS, address_status, client_ip, key_response
from .rest import JSONObjectParser, PgpKeysRenderer, ProtocolView, json_body

LOOKUP_ERRORS = schemas.vks_errors(400, 404, 429, 503)
ARMORED = 'The key, armored, with `Content-Disposition: attachment; filename="<FPR>.asc"`.'


class _Lookup(ProtocolView):
    renderer_classes = [PgpKeysRenderer]


class ByFingerprint(_Lookup):
    @extend_schema(
        operation_id="vks_by_fingerprint",
        tags=["VKS"],
        summary="A key by fingerprint",
        description="By the fingerprint (40 or 64 hex digits) of the primary key or a subkey. Served even "
        "without a confirmed address, then without user IDs.",
        parameters=[
            schemas.path_parameter("fpr", "The fingerprint, hex, optionally with `0x`.", schemas.FINGERPRINT)
        ],
        responses={**schemas.armored(PGP_KEYS, ARMORED), **LOOKUP_ERRORS},
    )
    def get(self, request: Request, fpr: str) -> HttpResponse:
        fingerprint = parse_fingerprint(fpr)
        served = serve.for_id(Query("fingerprint", fingerprint), client=client_ip(request))
        return key_response(request, served, filename=fingerprint)


class ByKeyid(_Lookup):
    @extend_schema(
        operation_id="vks_by_keyid",
        tags=["VKS"],
        summary="A key by long key ID",
        description="By the 16-hex-digit key ID of the primary key or a subkey.",
        parameters=[
            schemas.path_parameter("keyid", "The long key ID, hex, optionally with `0x`.", schemas.KEY_ID)
        ],
        responses={**schemas.armored(PGP_KEYS, ARMORED), **LOOKUP_ERRORS},
    )
    def get(self, request: Request, keyid: str) -> HttpResponse:
        value = parse_keyid(keyid)
        served = serve.for_id(Query("keyid", value), client=client_ip(request))
        return key_response(request, served, filename=value)


class ByEmail(_Lookup):
    @extend_schema(
        operation_id="vks_by_email",
        tags=["VKS"],
        summary="Keys by address",
        description="Every key with this confirmed address, in one armor block, newest valid first.",
        parameters=[schemas.path_parameter("email", "The address, percent-encoded.")],
        responses={**schemas.armored(PGP_KEYS, ARMORED), **LOOKUP_ERRORS},
    )
    def get(self, request: Request, email: str) -> HttpResponse:
        served = serve.for_email(normalize_email(email), client=client_ip(request))
        if not served:
            raise NotFound()
        return key_response(request, served, filename=served[0].key.fingerprint)


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


def _upload_body(request: Request) -> bytes:
    keytext = json_body(request, strict=True).get("keytext")
    if not isinstance(keytext, str) or not keytext.strip():
        raise NoKeyUploaded()
    return _keytext_bytes(keytext)


class Upload(ProtocolView):
    parser_classes = [JSONObjectParser]

    @extend_schema(
        operation_id="vks_upload",
        tags=["VKS"],
        summary="Upload keys",
        description="Stores the key(s). Each address starts `unpublished`; ask for confirmation mails with "
        "`request-verify`. A keyring of several keys is answered with a bare array of fingerprints and "
        "no token. Only `application/json` is accepted (else a 400).",
        request={schemas.JSON: schemas.VksUpload},
        examples=[schemas.UPLOAD_EXAMPLE, schemas.UPLOAD_ANSWER_EXAMPLE],
        responses={
            (200, schemas.JSON): schemas.VKS_UPLOAD_RESULT,
            **schemas.vks_errors(400, 403, 413, 429, 503),
        },
    )
    def post(self, request: Request) -> Response:
        client = client_ip(request)
        result = submission.submit(lambda: _upload_body(request), client=client, actor=f"vks {client}")
        if len(result.keys) > 1:
            # keys.openpgp.org answers a keyring with a bare list of fingerprints.
            return Response([item.key.fingerprint for item in result.keys])
        key = result.keys[0].key
        return Response(_upload_answer(key, verification.upload_token(key)))


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


class RequestVerify(ProtocolView):
    parser_classes = [JSONObjectParser]

    @extend_schema(
        operation_id="vks_request_verify",
        tags=["VKS"],
        summary="Ask for confirmation mails",
        description="Mails each requested address of the uploaded key a confirmation link; those "
        "addresses become `pending`. The answer has the shape of the upload answer.",
        request={schemas.JSON: schemas.VksRequestVerify},
        examples=[schemas.REQUEST_VERIFY_EXAMPLE, schemas.UPLOAD_ANSWER_EXAMPLE],
        responses={(200, schemas.JSON): schemas.VksUploadAnswer, **schemas.vks_errors(400, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        return Response(_request_verify(request))


def _request_verify(request: Request) -> dict[str, Any]:
    data = json_body(request, strict=True)
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
    return _upload_answer(key, token)
