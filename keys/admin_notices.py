"""The admin's view of change notices: what waits to be told, and the
addresses that stopped their notices (keys.services.notices). Read-only:
the notices are the server's own doing; deleting an opt-out turns the
address's notices on again."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .errors import InvalidEmail
from .identifiers import normalize_email
from .models import NoticeChange, NoticeOptOut
from .services import notice_mail


@admin.register(NoticeChange)
class NoticeChangeAdmin(admin.ModelAdmin):
    list_display = ("address", "fingerprint", "change", "via", "at", "due")
    list_filter = ("change", "via")
    search_fields = ("=address", "=fingerprint")
    date_hierarchy = "at"
    readonly_fields = ("address", "fingerprint", "change", "via", "detail", "at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=_("leaves at"))
    def due(self, row: NoticeChange) -> str:
        moment = notice_mail.due_at(row.address)
        return f"{moment:%Y-%m-%d %H:%M}" if moment else ""


@admin.register(NoticeOptOut)
class NoticeOptOutAdmin(admin.ModelAdmin):
    """Only the sha256 of each address is kept: search by the address itself."""

    list_display = ("digest", "created")
    search_fields = ("digest",)
    readonly_fields = ("digest", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if "@" in term:
            try:
                term = NoticeOptOut.hash(normalize_email(term))
            except InvalidEmail:  # a malformed address finds nothing
                return queryset.none(), False
        return queryset.filter(digest=term) if term else queryset, False
