"""What the owners of keys were told, so that nobody is told twice:
expiry reminders (one per key, expiry date and threshold) and
re-confirmation requests (one open per address of a key).

Written by keys.services.reminders and keys.services.reconfirmation; the
admin shows them read-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from . import Key


def usable_until(key: Key) -> datetime | None:
    """The moment the key stops being usable for mail: its primary key's
    expiry or its encryption subkeys', whichever comes first (None: never)."""
    ends = [end for end in (key.expires, key.encryption_expires) if end is not None]
    return min(ends) if ends else None


class ExpiryReminder(models.Model):
    """A reminder sent (or covered by a later one) for one threshold of one
    expiry date of a key. A new expiry date (the owner extended the key)
    has no record yet, so its thresholds remind again."""

    key = models.ForeignKey("keys.Key", on_delete=models.CASCADE, related_name="expiry_reminders")
    # The moment the key stops being usable for mail: its primary's expiry
    # or its encryption subkeys', whichever comes first.
    expires = models.DateTimeField(_("expires"))
    threshold_days = models.PositiveSmallIntegerField(_("days before"))
    created = models.DateTimeField(_("sent"))
    # Mails to the key's published addresses (none: a threshold passed
    # while a nearer one was sent).
    mails = models.PositiveSmallIntegerField(_("mails"), default=0)

    class Meta:
        verbose_name = _("expiry reminder")
        verbose_name_plural = _("expiry reminders")
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["key", "expires", "threshold_days"], name="expiry_reminder_once")
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.expires:%Y-%m-%d} -{self.threshold_days}d"


class Reconfirmation(models.Model):
    """One request to re-confirm a published address (its mailbox may have
    changed hands). Open until the owner confirms, the grace ends (the
    address is unpublished), or it no longer applies."""

    class Outcome(models.TextChoices):
        OPEN = "", _("waiting")
        CONFIRMED = "confirmed", _("confirmed")
        EXPIRED = "expired", _("not confirmed: unpublished")
        MOOT = "moot", _("no longer applies")
        NOT_SENT = "not_sent", _("mail not delivered")

    binding = models.ForeignKey("keys.Binding", on_delete=models.CASCADE, related_name="reconfirmations")
    requested_at = models.DateTimeField(_("requested at"))
    mail = models.ForeignKey(
        "keys.OutboxMail", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("re-confirmation")
        verbose_name_plural = _("re-confirmations")
        ordering = ["-requested_at", "-id"]
        constraints = [
            # Two jobs at once never open two requests for one address.
            models.UniqueConstraint(fields=["binding"], condition=Q(outcome=""), name="reconfirmation_open")
        ]
        indexes = [
            models.Index(fields=["requested_at"], name="reconfirmation_open_at", condition=Q(outcome="")),
            models.Index(fields=["binding", "requested_at"], name="reconfirmation_binding"),
        ]

    def __str__(self) -> str:
        return f"{self.binding} {self.requested_at:%Y-%m-%d} {self.outcome or 'open'}"
