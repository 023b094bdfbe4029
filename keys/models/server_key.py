"""The server's own OpenPGP keys: one active key per address it sends from.

The secret part is stored sealed (AES-GCM under a key derived from
SECRET_KEY, keys.services.server_key), so every process that shares the
database (web, workers, replicas) signs with the same key, backups carry
it, and a database dump alone does not reveal it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ServerKey(models.Model):
    address = models.CharField(_("address"), max_length=254)
    fingerprint = models.CharField(_("fingerprint"), max_length=64, unique=True)
    # The certificate (binary) with its predecessor's certification, if any.
    public = models.BinaryField(_("public certificate"))
    # nonce (12 bytes) + AES-GCM ciphertext of the binary TSK.
    sealed_secret = models.BinaryField(_("secret key (encrypted)"))
    created = models.DateTimeField(_("created"))
    # Null while the key is the address's active one.
    retired_at = models.DateTimeField(_("retired at"), null=True, blank=True)
    predecessor = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="successor"
    )
    # The Key row it is published as (None while the address cannot be published).
    key = models.ForeignKey(
        "keys.Key", null=True, blank=True, on_delete=models.SET_NULL, related_name="server_keys"
    )

    class Meta:
        app_label = "keys"
        ordering = ["address", "-created"]
        verbose_name = _("server key")
        verbose_name_plural = _("server keys")
        constraints = [
            # Two workers making the first key at once: one insert wins.
            models.UniqueConstraint(
                fields=["address"], condition=Q(retired_at__isnull=True), name="one_active_server_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.address} {self.fingerprint}"

    @property
    def active(self) -> bool:
        return self.retired_at is None
