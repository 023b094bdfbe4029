"""The configured limits of an upload, for the OpenPGP seam (which reads no settings)."""

from __future__ import annotations

from django.conf import settings

from .. import openpgp


def limits() -> openpgp.Limits:
    return openpgp.Limits(
        max_bytes=settings.MAX_KEY_BYTES,
        max_user_ids=settings.MAX_USER_IDS,
        max_subkeys=settings.MAX_SUBKEYS,
        max_signatures=settings.MAX_SIGNATURES,
        max_keys=settings.MAX_KEYS_PER_UPLOAD,
        keep_signatures=settings.KEEP_SIGNATURES_PER_COMPONENT,
    )
