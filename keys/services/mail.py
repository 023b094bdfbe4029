"""Outgoing mail: composed from translatable templates, marked Auto-Submitted.

Services enqueue the tasks below with `transaction.on_commit`; each task
takes ids or plain values and composes and sends one mail. SMTP failures are
retried with exponential back-off: 30 s, doubling, at most an hour apart,
eight tries. The task names are those they had in keys.tasks, so messages
already queued still find them.
"""

from __future__ import annotations

import smtplib
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from .. import openpgp
from ..identifiers import group_fingerprint
from ..models import Binding, Key, VerificationToken
from . import tokens

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


def _mail_task(name: str) -> Any:
    return shared_task(
        name=f"keys.tasks.{name}",
        autoretry_for=(smtplib.SMTPException, OSError),
        retry_backoff=30,
        retry_backoff_max=3600,
        retry_jitter=True,
        max_retries=8,
    )


@_mail_task("send_verification_mail")
def send_verification_mail(binding_id: int, locale: str = "", replace: bool = False) -> None:
    """Mail a confirmation link; SMTP failures are retried with back-off."""
    send_verification(binding_id, locale, replace=replace)


@_mail_task("send_replaced_notice")
def send_replaced_notice_mail(address: str, new_fingerprint: str, old_fingerprints: list[str]) -> None:
    send_replaced_notice(address, new_fingerprint, old_fingerprints)


@_mail_task("send_welcome_mail")
def send_welcome_mail(address: str, armored_key: str, locale: str = "") -> None:
    send_welcome(address, armored_key, locale)


@_mail_task("send_manage_mail")
def send_manage_mail(address: str, key_ids: list[int], locale: str = "") -> None:
    send_manage_links(address, key_ids, locale)
