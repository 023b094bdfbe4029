from django.contrib import admin

from .models import Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "url", "order", "enabled", "last_ok", "failures")
    list_filter = ("kind", "enabled")
    readonly_fields = ("last_ok", "last_error", "last_error_at", "failures")
