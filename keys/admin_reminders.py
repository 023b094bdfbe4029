"""The admin's read-only view of what owners were told: expiry reminders
and re-confirmation requests (imported by keys/admin.py)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .models import ExpiryReminder, Reconfirmation


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ExpiryReminder)
class ExpiryReminderAdmin(_ReadOnly):
    list_display = ("created", "key", "expires", "threshold_days", "mails")
    list_filter = ("threshold_days",)
    search_fields = ("=key__fingerprint",)
    date_hierarchy = "created"
    list_select_related = ("key",)
    raw_id_fields = ("key",)


@admin.register(Reconfirmation)
class ReconfirmationAdmin(_ReadOnly):
    list_display = ("requested_at", "address", "fingerprint", "outcome", "closed_at")
    list_filter = ("outcome",)
    search_fields = ("=binding__address", "=binding__key__fingerprint")
    date_hierarchy = "requested_at"
    list_select_related = ("binding__key",)
    raw_id_fields = ("binding", "mail")

    @admin.display(description=_("address"), ordering="binding__address")
    def address(self, row: Reconfirmation) -> str:
        return row.binding.address

    @admin.display(description=_("fingerprint"))
    def fingerprint(self, row: Reconfirmation) -> str:
        return row.binding.key.fingerprint
