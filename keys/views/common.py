"""Small helpers shared by the protocol front-ends."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

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


def raw_query(request: HttpRequest) -> dict[str, str]:
    """The query string's parameters with `+` kept as a `+`.

    Django reads a query string as a form, where `+` means a space. HKP
    clients do not form-encode: GnuPG's dirmngr sends
    `search=name+tag@domain` with the `+` as it is, so an address with a
    `+` would become one with a space. Percent escapes (`%2B`, `%20`) are
    decoded as usual; the last of repeated parameters wins, as with
    `request.GET`.
    """
    # PEP 3333: the WSGI server hands over the raw bytes as latin-1.
    raw = request.META.get("QUERY_STRING", "").encode("iso-8859-1", errors="replace")
    params: dict[str, str] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _sep, value = part.partition(b"=")
        params[unquote_to_bytes(name).decode("utf-8", errors="replace")] = unquote_to_bytes(value).decode(
            "utf-8", errors="replace"
        )
    return params


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 with a message."""
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise KeyserverError(_("The request body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise KeyserverError(_("The request body must be a JSON object."))
    return data
