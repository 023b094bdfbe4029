"""Celery tasks: they take ids or plain values, call one service, and are enqueued on commit."""

from __future__ import annotations

import smtplib

from celery import shared_task

from . import mail

# Mail tasks retry SMTP failures with exponential back-off: 30 s, doubling,
# at most an hour apart, eight tries.
mail_task = shared_task(
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
)


@mail_task
def send_verification_mail(binding_id: int, locale: str = "", replace: bool = False) -> None:
    """Mail a confirmation link; SMTP failures are retried with back-off."""
    mail.send_verification(binding_id, locale, replace=replace)


@mail_task
def send_replaced_notice(address: str, new_fingerprint: str, old_fingerprints: list[str]) -> None:
    mail.send_replaced_notice(address, new_fingerprint, old_fingerprints)


@mail_task
def send_welcome_mail(address: str, armored_key: str, locale: str = "") -> None:
    mail.send_welcome(address, armored_key, locale)


@mail_task
def send_manage_mail(address: str, key_ids: list[int], locale: str = "") -> None:
    mail.send_manage_links(address, key_ids, locale)


@shared_task
def housekeeping_task() -> dict[str, int]:
    """Prune expired tokens, uploads never confirmed and old events."""
    from .housekeeping import prune

    return prune()
