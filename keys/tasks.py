"""Celery tasks of the keys app: the mail tasks (defined with the mail they
send, in keys.services.mail) and housekeeping on the beat schedule."""

from __future__ import annotations

from celery import shared_task

from .services.housekeeping import prune
from .services.mail import (
    send_manage_mail,
    send_replaced_notice_mail,
    send_verification_mail,
    send_welcome_mail,
)

__all__ = [
    "housekeeping_task",
    "send_manage_mail",
    "send_replaced_notice_mail",
    "send_verification_mail",
    "send_welcome_mail",
]


@shared_task
def housekeeping_task() -> dict[str, int]:
    """Prune expired tokens, uploads never confirmed and old events."""
    return prune()
