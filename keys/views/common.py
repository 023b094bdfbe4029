"""Small helpers shared by the protocol front-ends."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from federation.serve import Served, armored

from ..errors import KeyserverError, NotFound

PGP_KEYS = "application/pgp-keys"


def key_response(served: list[Served], filename: str | None = None) -> HttpResponse:
    """Armored keys, all in one block (keys.openpgp.org's shape)."""
    if not served:
        raise NotFound()
    response = HttpResponse(armored(served), content_type=f"{PGP_KEYS}; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}.asc"'
    return response


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 with a message."""
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise KeyserverError(_("The request body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise KeyserverError(_("The request body must be a JSON object."))
    return data
