"""Outgoing mail: composed from translatable templates, marked Auto-Submitted."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from . import tokens
from .identifiers import group_fingerprint
from .models import Binding, VerificationToken

AUTO_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def send_verification(binding_id: int, locale: str = "") -> bool:
    """Issue a verify token for a pending binding and mail its link.

    The token is made here, in the task, so the plain value never passes
    through the broker. If sending fails the token is deleted and the error
    propagates, so the task retries with a fresh one.
    """
    binding = Binding.objects.select_related("key").filter(pk=binding_id).first()
    if binding is None or binding.state != Binding.State.PENDING:
        return False
    key = binding.key
    plain = tokens.issue(VerificationToken.Purpose.VERIFY, key, binding.address)
    context = {
        "address": binding.address,
        "fingerprint": group_fingerprint(key.fingerprint),
        "link": f"{settings.SITE_URL}/verify/{plain}",
        "site_name": settings.SITE_NAME,
        "site_url": settings.SITE_URL,
        "hours": int(settings.VERIFY_TOKEN_TTL.total_seconds() // 3600),
    }
    with translation.override(locale or settings.LANGUAGE_CODE):
        subject = render_to_string("mail/verify_subject.txt", context).strip()
        body = render_to_string("mail/verify_body.txt", context)
    message = EmailMessage(subject, body, to=[binding.address], headers=AUTO_HEADERS)
    try:
        message.send()
    except Exception:
        VerificationToken.objects.filter(digest=VerificationToken.hash(plain)).delete()
        raise
    return True
