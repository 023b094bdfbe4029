"""Celery tasks: they take ids, call one service, and are enqueued on commit."""

from __future__ import annotations

import smtplib

from celery import shared_task

from . import mail


@shared_task(
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
)
def send_verification_mail(binding_id: int, locale: str = "") -> None:
    """Mail a confirmation link; SMTP failures are retried with back-off."""
    mail.send_verification(binding_id, locale)
