"""Small helpers shared by the protocol front-ends."""

from __future__ import annotations

from collections.abc import Sequence

from django.http import HttpRequest, HttpResponse

from .. import openpgp
from ..errors import NotFound
from ..models import Key

PGP_KEYS = "application/pgp-keys"


def armored(keys: Sequence[Key]) -> str:
    """All keys in one armor block (precomputed text when there is one key)."""
    if len(keys) == 1:
        return keys[0].published_armor
    return openpgp.armor(b"".join(bytes(k.published) for k in keys))


def key_response(keys: Sequence[Key], filename: str | None = None) -> HttpResponse:
    if not keys:
        raise NotFound()
    response = HttpResponse(armored(keys), content_type=f"{PGP_KEYS}; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}.asc"'
    return response


def request_bytes(request: HttpRequest) -> bytes:
    """The raw body (reading it enforces Django's size cap: 413)."""
    return request.body
