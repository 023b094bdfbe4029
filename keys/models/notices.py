"""Change notices: what changed on a published key, waiting to be told to
its addresses, and the addresses that asked for no more notices
(keys.services.notices)."""

from __future__ import annotations

import hashlib

from django.db import models
from django.utils.translation import gettext_lazy as _


class NoticeChange(models.Model):
    """One change of a key, to be told to one address that was published on
    it at the time. A row is pending until the next notice to its address
    takes it into the outbox (then it is deleted: the mail's row holds it)."""

    class Change(models.TextChoices):
        SUBKEY_ADDED = "subkey_added", _("new subkey")
        SUBKEY_REVOKED = "subkey_revoked", _("subkey revoked")
        EXPIRY_CHANGED = "expiry_changed", _("new expiry date")
        KEY_REVOKED = "key_revoked", _("key revoked")
        USER_ID_REVOKED = "uid_revoked", _("user ID revoked")
        ADDRESS_MOVED = "address_moved", _("address given to another key upstream")
        KEY_REMOVED = "key_removed", _("key removed by policy")
        ADDRESS_REMOVED = "address_removed", _("address removed by policy")

    class Via(models.TextChoices):
        UPLOAD = "upload", _("an upload")
        REFRESH = "refresh", _("a refresh from an upstream server")
        OPERATOR = "operator", _("the operator")

    address = models.CharField(_("address"), max_length=254)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    change = models.CharField(_("change"), max_length=20, choices=Change.choices)
    via = models.CharField(_("via"), max_length=10, choices=Via.choices)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    at = models.DateTimeField(_("at"))

    class Meta:
        verbose_name = _("pending change notice")
        ordering = ["address", "at", "id"]
        indexes = [models.Index(fields=["address", "at"], name="notice_address")]

    def __str__(self) -> str:
        return f"{self.change} of {self.fingerprint} for {self.address}"


class NoticeOptOut(models.Model):
    """An address that wants no change notices. Only the sha256 of the
    normalised address is kept: the row outlives the address's keys (a purge,
    a pruned upload), and a list of who opted out need not hold addresses."""

    digest = models.CharField(_("address (sha256)"), max_length=64, unique=True)
    created = models.DateTimeField(_("created"))

    class Meta:
        verbose_name = _("change notice opt-out")

    def __str__(self) -> str:
        return self.digest

    @staticmethod
    def hash(address: str) -> str:
        return hashlib.sha256(address.encode("utf-8")).hexdigest()
