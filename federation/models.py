"""Upstream sources (behaviour arrives with the federation work, issue 4)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Source(models.Model):
    class Kind(models.TextChoices):
        LDAP = "ldap", "LDAP"
        HKP = "hkp", "HKP"
        VKS = "vks", "VKS (keys.openpgp.org)"
        WKD = "wkd", "WKD"

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    url = models.CharField(_("URL"), max_length=500)
    # Domains this source is the only authority for; empty: a fallback source.
    authoritative_domains = models.JSONField(_("authoritative domains"), default=list, blank=True)
    order = models.PositiveSmallIntegerField(_("order"), default=100)
    enabled = models.BooleanField(_("enabled"), default=True)
    timeout = models.FloatField(_("timeout (seconds)"), default=5.0)
    options = models.JSONField(_("options"), default=dict, blank=True)
    last_ok = models.DateTimeField(_("last success"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    failures = models.PositiveIntegerField(_("consecutive failures"), default=0)

    class Meta:
        ordering = ["order", "name"]
        verbose_name = _("upstream source")
        verbose_name_plural = _("upstream sources")

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
