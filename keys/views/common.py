"""Small helpers shared by the protocol front-ends."""

from __future__ import annotations

from django.http import HttpResponse

from federation.serve import Served, armored

from ..errors import NotFound

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
