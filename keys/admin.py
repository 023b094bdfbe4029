"""Django admin: keys, addresses, tokens, policy blocks, the mail outbox and
the audit trail."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from federation.refresh import refresh_key

from .errors import KeyserverError
from .identifiers import group_fingerprint
from .models import Binding, Event, Key, OutboxMail, PolicyBlock, VerificationToken
from .services import imports, outbox, policy

# The site's name instead of "Django administration" (read when shown: settings may change in tests).
admin.site.site_header = admin.site.site_title = lazy(lambda: settings.SITE_NAME, str)()
# The sidebar took a fifth of a 1280 px window from the key list; the
# breadcrumbs and the index page lead to the other lists.
admin.site.enable_nav_sidebar = False
ADDRESSES_LISTED = 2  # in the key list; the rest is a count, the key's page has them all


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class BindingInline(admin.TabularInline):
    model = Binding
    extra = 0
    can_delete = False
    fields = ("address", "state", "validation", "verified_at", "updated")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RefreshFilter(admin.SimpleListFilter):
    title = _("refresh")
    parameter_name = "refresh"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return [
            ("due", str(_("due now"))),
            ("failing", str(_("failing"))),
            ("scheduled", str(_("scheduled"))),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Key]) -> QuerySet[Key]:
        if self.value() == "due":
            return queryset.filter(next_refresh_at__lte=timezone.now())
        if self.value() == "failing":
            return queryset.filter(refresh_failures__gt=0)
        if self.value() == "scheduled":
            return queryset.filter(next_refresh_at__isnull=False)
        return queryset


def _day(moment: datetime | None) -> str:
    """The date only, for a list column (the full timestamp widens it)."""
    return "-" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d")


@admin.register(Key)
class KeyAdmin(admin.ModelAdmin):
    list_display = (
        "key_id",
        "algorithm",
        "created_on",
        "expires_on",
        "state",
        "origin",
        "addresses",
        "next_refresh",
    )
    list_filter = ("revoked", "blocked", "origin", RefreshFilter, "bindings__state", "bindings__validation")
    search_fields = (
        "=fingerprint",
        "=key_id",
        "=subkeys__fingerprint",
        "=subkeys__key_id",
        "bindings__address",
    )
    ordering = ("-first_seen",)
    inlines = [BindingInline]
    actions = ["refresh_now", "remove_by_policy", "purge"]
    fieldsets = (
        (None, {"fields": ("summary",)}),
        (_("State"), {"fields": ("revoked", "blocked", "origin", "source", "first_seen", "updated")}),
        (
            _("Refresh"),
            {"fields": ("refreshed_at", "next_refresh_at", "last_refresh_result", "refresh_failures")},
        ),
        (_("Published"), {"fields": ("published_armor",)}),
    )
    readonly_fields = (
        "summary",
        "revoked",
        "blocked",
        "origin",
        "source",
        "first_seen",
        "updated",
        "refreshed_at",
        "last_refresh_result",
        "refresh_failures",
        "published_armor",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Key]:
        return super().get_queryset(request).prefetch_related("bindings").distinct()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("addresses"))
    def addresses(self, key: Key) -> str:
        bindings = list(key.bindings.all())
        shown = ", ".join(f"{b.address} ({b.state})" for b in bindings[:ADDRESSES_LISTED])
        more = len(bindings) - ADDRESSES_LISTED
        return f"{shown} +{more}" if more > 0 else shown

    @admin.display(description=_("created"), ordering="created")
    def created_on(self, key: Key) -> str:
        return _day(key.created)

    @admin.display(description=_("expires"), ordering="expires")
    def expires_on(self, key: Key) -> str:
        return _day(key.expires)

    @admin.display(description=_("state"))
    def state(self, key: Key) -> str:
        """Revoked and removed by policy in one column (two took too much width)."""
        words = [str(w) for flag, w in ((key.revoked, _("revoked")), (key.blocked, _("removed"))) if flag]
        return ", ".join(words) or "-"

    @admin.display(description=_("next refresh"), ordering="next_refresh_at")
    def next_refresh(self, key: Key) -> str:
        """The date and minute only: the full timestamp made the column too wide;
        failed refreshes in a row follow in brackets."""
        if key.next_refresh_at is None:
            return "-"
        when = timezone.localtime(key.next_refresh_at).strftime("%Y-%m-%d %H:%M")
        if key.refresh_failures:
            return _("%(when)s (%(count)d failed)") % {"when": when, "count": key.refresh_failures}
        return when

    @admin.display(description=_("certificate"))
    def summary(self, key: Key) -> str:
        """A read-only summary of the stored certificate (parsed here only)."""
        try:
            info = imports.stored_certificate(key)
        except KeyserverError as exc:
            return format_html("<p>{}</p>", exc.message)
        size = f" {info.bits}" if info.bits else ""
        uids = format_html_join(
            "",
            "<li>{} — {}</li>",
            ((u.value, _("valid") if u.valid else u.reason) for u in info.user_ids),
        )
        subkeys = format_html_join(
            "",
            "<li><code>{}</code> {} {}</li>",
            (
                (
                    group_fingerprint(s.fingerprint),
                    s.algorithm,
                    _("revoked") if s.revoked else (s.expires.date() if s.expires else ""),
                )
                for s in info.subkeys
            ),
        )
        return format_html(
            "<p><code>{}</code></p><p>v{} · {}{} · {} {} · {} {}{}</p>"
            "<p>{}</p><ul>{}</ul><p>{}</p><ul>{}</ul>",
            group_fingerprint(info.fingerprint),
            info.version,
            info.algorithm,
            size,
            _("created"),
            info.created.date(),
            _("expires"),
            info.expires.date() if info.expires else _("never"),
            format_html(" · <strong>{}</strong>", _("revoked")) if info.revoked else "",
            _("User IDs"),
            uids,
            _("Subkeys"),
            subkeys,
        )

    @admin.action(description=_("Refresh selected keys from their source now"))
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Key]) -> None:
        for key in queryset:
            outcome = refresh_key(key.pk)
            self.message_user(request, f"{key.key_id}: {outcome.result}")
        Event.objects.record("refresh_requested", actor=_actor(request), detail=f"{queryset.count()} key(s)")

    @admin.action(description=_("Remove selected keys from distribution (policy)"))
    def remove_by_policy(self, request: HttpRequest, queryset: QuerySet[Key]) -> None:
        for key in queryset:
            policy.remove_key_by_policy(key, reason=f"admin action by {request.user}", actor=_actor(request))
        self.message_user(request, _("%(n)d key(s) removed from distribution.") % {"n": queryset.count()})

    @admin.action(description=_("Purge selected keys (delete; they cannot be uploaded again)"))
    def purge(self, request: HttpRequest, queryset: QuerySet[Key]) -> None:
        count = 0
        for key in list(queryset):
            policy.purge(key, actor=_actor(request))
            count += 1
        self.message_user(request, _("%(n)d key(s) purged.") % {"n": count})


@admin.register(Binding)
class BindingAdmin(admin.ModelAdmin):
    list_display = ("address", "key_link", "state", "validation", "verified_at", "updated")
    list_filter = ("state", "validation", "domain")
    search_fields = ("=address", "=key__fingerprint", "=key__key_id", "domain")
    readonly_fields = (
        "key",
        "address",
        "domain",
        "wkd_hash",
        "state",
        "validation",
        "pending_since",
        "verified_at",
        "last_audited_at",
        "locale",
        "created",
        "updated",
    )
    exclude = ("certificate",)
    actions = ["unpublish", "remove_address_by_policy", "mark_fingerprint_verified"]
    list_select_related = ("key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("key"))
    def key_link(self, binding: Binding) -> str:
        return binding.key.key_id

    @admin.action(description=_("Unpublish selected addresses"))
    def unpublish(self, request: HttpRequest, queryset: QuerySet[Binding]) -> None:
        for binding in queryset:
            policy.unpublish(binding, actor=_actor(request))
        self.message_user(request, _("Addresses unpublished."))

    @admin.action(description=_("Mark fingerprint verified (compared out of band)"))
    def mark_fingerprint_verified(self, request: HttpRequest, queryset: QuerySet[Binding]) -> None:
        for binding in queryset:
            policy.mark_fingerprint_verified(binding, actor=_actor(request))
        self.message_user(request, _("Marked as fingerprint verified."))

    @admin.action(description=_("Remove selected addresses from distribution (policy)"))
    def remove_address_by_policy(self, request: HttpRequest, queryset: QuerySet[Binding]) -> None:
        for address in set(queryset.values_list("address", flat=True)):
            policy.remove_address_by_policy(
                address, reason=f"admin action by {request.user}", actor=_actor(request)
            )
        self.message_user(request, _("Addresses removed from distribution."), messages.SUCCESS)


@admin.register(PolicyBlock)
class PolicyBlockAdmin(admin.ModelAdmin):
    list_display = ("fingerprint", "address_pattern", "reason", "created", "created_by")
    search_fields = ("fingerprint", "address_pattern", "reason")
    readonly_fields = ("created", "created_by")

    def save_model(self, request: HttpRequest, obj: PolicyBlock, form: object, change: bool) -> None:
        obj.fingerprint = obj.fingerprint.replace(" ", "").upper()
        obj.address_pattern = obj.address_pattern.strip().lower()
        obj.created_by = obj.created_by or _actor(request)
        super().save_model(request, obj, form, change)
        policy.apply_policy_block(obj, actor=_actor(request))
        Event.objects.record(
            "policy_block_saved", actor=_actor(request), address=obj.address_pattern, detail=obj.reason
        )


@admin.register(VerificationToken)
class TokenAdmin(admin.ModelAdmin):
    list_display = ("purpose", "fingerprint", "address", "created", "expires", "used_at")
    list_filter = ("purpose",)
    search_fields = ("=fingerprint", "=address")
    readonly_fields = ("purpose", "key", "fingerprint", "address", "created", "expires", "used_at")
    exclude = ("digest",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("at", "action", "actor", "fingerprint", "address")
    list_filter = ("action",)
    search_fields = ("=fingerprint", "=address", "actor")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(OutboxMail)
class OutboxAdmin(admin.ModelAdmin):
    """Every mail the server decided to send: queued, sent, failed (with the
    error), or no longer needed; a selection can be sent again."""

    list_display = ("created", "kind", "address", "state", "attempts", "next_attempt_at", "sent_at", "error")
    list_filter = ("state", "kind")
    search_fields = ("=address",)
    date_hierarchy = "created"
    readonly_fields = (
        "kind", "address", "binding", "state", "attempts", "created", "next_attempt_at", "deadline",
        "sent_at", "last_error",
    )  # fmt: skip
    exclude = ("params",)
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("last error"))
    def error(self, row: OutboxMail) -> str:
        return row.last_error[:80]

    @admin.action(description=_("Send again (a new mail; a confirmation gets a fresh link)"))
    def resend(self, request: HttpRequest, queryset: QuerySet[OutboxMail]) -> None:
        queued = outbox.resend(list(queryset.select_related("binding")))
        self.message_user(request, _("%(count)d mails queued.") % {"count": queued}, messages.SUCCESS)


# The features' own ModelAdmins register themselves when imported.
from . import admin_notices, admin_reminders, admin_server_key  # noqa: E402, F401
