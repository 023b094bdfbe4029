"""Outgoing mail: composed from translatable templates, marked Auto-Submitted."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from . import openpgp, tokens
from .identifiers import group_fingerprint
from .models import Binding, Key, VerificationToken

AUTO_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def _send(template: str, to: str, context: dict[str, Any], locale: str = "") -> None:
    context = {"site_name": settings.SITE_NAME, "site_url": settings.SITE_URL, **context}
    with translation.override(locale or settings.LANGUAGE_CODE):
        subject = render_to_string(f"mail/{template}_subject.txt", context).strip()
        body = render_to_string(f"mail/{template}_body.txt", context)
    EmailMessage(subject, body, to=[to], headers=AUTO_HEADERS).send()


def send_verification(binding_id: int, locale: str = "", *, replace: bool = False) -> bool:
    """Issue a verify token for a pending binding and mail its link.

    The token is made here, in the task, so the plain value never passes
    through the broker. If sending fails the token is deleted and the error
    propagates, so the task retries with a fresh one.
    """
    binding = Binding.objects.select_related("key").filter(pk=binding_id).first()
    if binding is None or not binding.awaiting_confirmation:
        return False
    key = binding.key
    plain = tokens.issue(VerificationToken.Purpose.VERIFY, key, binding.address, replace=replace)
    context = {
        "address": binding.address,
        "fingerprint": group_fingerprint(key.fingerprint),
        "link": f"{settings.SITE_URL}/verify/{plain}",
        "hours": int(settings.VERIFY_TOKEN_TTL.total_seconds() // 3600),
        "replace": replace,
    }
    try:
        _send("verify", binding.address, context, locale)
    except Exception:
        VerificationToken.objects.filter(digest=VerificationToken.hash(plain)).delete()
        raise
    return True


def send_replaced_notice(address: str, new_fingerprint: str, old_fingerprints: list[str]) -> None:
    _send(
        "replaced",
        address,
        {
            "address": address,
            "fingerprint": group_fingerprint(new_fingerprint),
            "old": [group_fingerprint(f) for f in old_fingerprints],
        },
    )


def send_welcome(address: str, armored_key: str, locale: str = "") -> None:
    """A welcome mail whose body is encrypted to the key (Attester)."""
    info = openpgp.parse(armored_key.encode()).certs[0]
    with translation.override(locale or settings.LANGUAGE_CODE):
        inner = render_to_string(
            "mail/welcome_inner.txt",
            {"address": address, "site_name": settings.SITE_NAME, "site_url": settings.SITE_URL},
        )
    _send(
        "welcome", address, {"address": address, "encrypted": openpgp.encrypt(info, inner.encode())}, locale
    )


def send_manage_links(address: str, key_ids: list[int], locale: str = "") -> None:
    """One mail listing a management link for each published key of the address."""
    links = []
    for key in Key.objects.filter(pk__in=key_ids).order_by("-created"):
        plain = tokens.issue(VerificationToken.Purpose.MANAGE, key, address)
        links.append(
            {"fingerprint": group_fingerprint(key.fingerprint), "link": f"{settings.SITE_URL}/manage/{plain}"}
        )
    if not links:
        return
    minutes = int(settings.MANAGE_TOKEN_TTL.total_seconds() // 60)
    _send("manage", address, {"address": address, "links": links, "minutes": minutes}, locale)
