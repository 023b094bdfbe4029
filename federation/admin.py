from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from keys.identifiers import Query, normalize_email
from keys.models import Source

from .fallback import check
from .sources import SourceError


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "url",
        "domains",
        "order",
        "enabled",
        "last_ok",
        "last_error_at",
        "failures",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "url")
    readonly_fields = ("last_ok", "last_error", "last_error_at", "failures")
    actions = ["check_now"]

    @admin.display(description=_("authoritative for"))
    def domains(self, source: Source) -> str:
        return ", ".join(source.authoritative_domains) or "—"

    @admin.action(description=_("Check the selected sources now (one lookup each)"))
    def check_now(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset:
            domain = (source.authoritative_domains or ["example.org"])[0]
            query = Query("email", normalize_email(f"postmaster@{domain}"))
            try:
                elapsed, result = check(source, query)
            except SourceError as exc:
                self.message_user(request, f"{source.name}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{source.name}: {elapsed * 1000:.0f} ms, {result}", messages.SUCCESS)
