"""The server's own keys in the admin: read only (`manage.py server_key` rotates)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import ServerKey


@admin.register(ServerKey)
class ServerKeyAdmin(admin.ModelAdmin):
    list_display = ["address", "fingerprint", "created", "retired_at", "key"]
    list_filter = ["retired_at"]
    search_fields = ["address", "fingerprint"]
    fields = ["address", "fingerprint", "created", "retired_at", "predecessor", "key"]
    readonly_fields = ["address", "fingerprint", "created", "retired_at", "predecessor", "key"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
