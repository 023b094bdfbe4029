"""Storage: keys, their subkeys, address bindings, tokens, policy blocks,
events and upstream sources.

Every lookup path reads one indexed row set and serves precomputed bytes:
the published certificate and its armored text live on Key, the per-address
certificate on Binding. Both are rebuilt by keys.services.publication in
the transaction that changes the key or a binding. The queries live on the
managers (keys.managers).
"""

from __future__ import annotations

import hashlib

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..managers import (
    BindingManager,
    EventManager,
    KeyManager,
    OutboxMailManager,
    PolicyBlockManager,
    SourceManager,
    SubkeyManager,
    VerificationTokenManager,
)


class Origin(models.TextChoices):
    UPLOAD = "upload", _("upload")
    LDAP = "ldap", _("LDAP directory")
    HKP = "hkp", _("HKP peer")
    VKS = "vks", _("VKS server")
    WKD = "wkd", _("WKD")
    IMPORT = "import", _("dump import")


class Key(models.Model):
    fingerprint = models.CharField(_("fingerprint"), max_length=64, unique=True)
    version = models.PositiveSmallIntegerField(_("version"))
    key_id = models.CharField(_("key ID"), max_length=16, db_index=True)
    algorithm = models.CharField(_("algorithm"), max_length=40)
    algorithm_id = models.PositiveSmallIntegerField(_("algorithm number"), default=0)
    bits = models.PositiveIntegerField(_("bits"), null=True, blank=True)
    created = models.DateTimeField(_("created"))
    expires = models.DateTimeField(_("expires"), null=True, blank=True)
    # When its last encryption subkey expires (openpgp.encryption_expires):
    # the key is of no use for mail past it, whatever the primary says.
    encryption_expires = models.DateTimeField(_("encryption subkeys expire"), null=True, blank=True)
    revoked = models.BooleanField(_("revoked"), default=False)
    # Removed from distribution by policy: served nowhere, not even by id.
    blocked = models.BooleanField(_("removed by policy"), default=False)

    data = models.BinaryField(_("stored certificate"))
    published = models.BinaryField(_("published certificate"), default=b"")
    published_armor = models.TextField(_("published certificate (armored)"), blank=True)
    # The user IDs the published certificate carries (HKP index, rule 6).
    published_user_ids = models.JSONField(default=list, blank=True)
    # The key reduced to its published and cached (found upstream) addresses:
    # served by id only when nothing of it is published (rule 3).
    fallback = models.BinaryField(_("fallback certificate"), default=b"")
    fallback_armor = models.TextField(_("fallback certificate (armored)"), blank=True)
    fallback_user_ids = models.JSONField(default=list, blank=True)

    origin = models.CharField(_("origin"), max_length=8, choices=Origin.choices, default=Origin.UPLOAD)
    source = models.ForeignKey(
        "federation.Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="keys"
    )
    first_seen = models.DateTimeField(_("first seen"), auto_now_add=True)
    updated = models.DateTimeField(_("updated"), auto_now=True)
    refreshed_at = models.DateTimeField(_("refreshed at"), null=True, blank=True)
    next_refresh_at = models.DateTimeField(_("next refresh"), null=True, blank=True)
    last_refresh_result = models.TextField(_("last refresh result"), blank=True)
    refresh_failures = models.PositiveIntegerField(_("refresh failures"), default=0)

    objects = KeyManager()

    class Meta:
        indexes = [
            models.Index(
                fields=["next_refresh_at"],
                name="key_due_refresh",
                condition=Q(next_refresh_at__isnull=False),
            ),
            # The published file trees rewrite a key's answers when it expires
            # (its mr index flags and its place in address answers change).
            models.Index(fields=["expires"], name="key_expires", condition=Q(expires__isnull=False)),
            # Expiry reminders (keys.services.reminders) look for either date.
            models.Index(
                fields=["encryption_expires"],
                name="key_encryption_expires",
                condition=Q(encryption_expires__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.fingerprint

    @property
    def is_expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    @property
    def is_valid(self) -> bool:
        return not self.revoked and not self.is_expired


class Subkey(models.Model):
    primary = models.ForeignKey(Key, on_delete=models.CASCADE, related_name="subkeys")
    fingerprint = models.CharField(_("fingerprint"), max_length=64, db_index=True)
    key_id = models.CharField(_("key ID"), max_length=16, db_index=True)

    objects = SubkeyManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["primary", "fingerprint"], name="subkey_unique_per_key")
        ]

    def __str__(self) -> str:
        return self.fingerprint


class Binding(models.Model):
    """One address on one key."""

    class State(models.TextChoices):
        UNPUBLISHED = "unpublished", _("unpublished")
        PENDING = "pending", _("pending confirmation")
        PUBLISHED = "published", _("published")
        CACHED = "cached", _("cached from upstream")
        REVOKED = "revoked", _("revoked")
        REMOVED_BY_POLICY = "removed_by_policy", _("removed by policy")

    class Validation(models.TextChoices):
        EMAIL_CONFIRMED = "email_confirmed", _("email confirmed")
        OIDC_VERIFIED = "oidc_verified", _("OIDC verified")
        ORG_DIRECTORY = "org_directory", _("organisation directory")
        UPSTREAM_VERIFIED = "upstream_verified", _("verifying upstream")
        UPSTREAM_UNVERIFIED = "upstream_unverified", _("unverified upstream")
        FINGERPRINT_VERIFIED = "fingerprint_verified", _("fingerprint verified")
        SERVER_KEY = "server_key", _("this server's own key")
        WKS_CONFIRMED = "wks_confirmed", _("confirmed over the Web Key Service")

    # The validations the address's mailbox proved: a recycled mailbox makes
    # them untrue (keys.services.reconfirmation asks them again).
    MAILBOX_PROOFS = (Validation.EMAIL_CONFIRMED, Validation.WKS_CONFIRMED)

    key = models.ForeignKey(Key, on_delete=models.CASCADE, related_name="bindings")
    address = models.CharField(_("address"), max_length=254)
    domain = models.CharField(_("domain"), max_length=253)
    wkd_hash = models.CharField(_("WKD hash"), max_length=32)
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.UNPUBLISHED)
    validation = models.CharField(
        _("validation level"), max_length=24, choices=Validation.choices, blank=True
    )
    # The key reduced to this address's user IDs (WKD, single-address answers).
    certificate = models.BinaryField(_("per-address certificate"), default=b"")
    pending_since = models.DateTimeField(_("pending since"), null=True, blank=True)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    last_audited_at = models.DateTimeField(_("last audited at"), null=True, blank=True)
    # The language of the page its owner confirmed it on: later mails to the
    # address (notices, reminders, re-confirmation) are in it. Empty: the server's.
    locale = models.CharField(_("language"), max_length=12, blank=True, default="")
    created = models.DateTimeField(_("created"), auto_now_add=True)
    updated = models.DateTimeField(_("updated"), auto_now=True)

    objects = BindingManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "address"], name="binding_unique_per_key")]
        indexes = [
            models.Index(fields=["address", "state"], name="binding_address_state"),
            models.Index(fields=["domain", "wkd_hash", "state"], name="binding_wkd"),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def awaiting_confirmation(self) -> bool:
        """A confirmation mail was sent: pending, or cached with a mail out."""
        return self.state == self.State.PENDING or (
            self.state == self.State.CACHED and self.pending_since is not None
        )


class VerificationToken(models.Model):
    """A token sent by mail or returned to a client; only its sha256 is kept."""

    class Purpose(models.TextChoices):
        VERIFY = "verify", _("verify an address")
        UPLOAD = "upload", _("upload session")
        MANAGE = "manage", _("manage a key")
        # A change notice's opt-out link (reusable while it lasts; keys.services.notices).
        NOTICES = "notices", _("stop change notices")
        WKS = "wks", _("Web Key Service nonce")

    digest = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    key = models.ForeignKey(Key, on_delete=models.CASCADE, related_name="tokens")
    fingerprint = models.CharField(max_length=64)
    address = models.CharField(max_length=254, blank=True)
    created = models.DateTimeField()
    expires = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    # Confirming replaces the address's other keys (Attester POST /pub, rule 4).
    replace = models.BooleanField(default=False)

    objects = VerificationTokenManager()

    def __str__(self) -> str:
        return f"{self.purpose} token for {self.fingerprint}"

    @staticmethod
    def hash(plain: str) -> str:
        return hashlib.sha256(plain.encode("utf-8")).hexdigest()


class PolicyBlock(models.Model):
    """A fingerprint or an address pattern removed from distribution."""

    fingerprint = models.CharField(_("fingerprint"), max_length=64, blank=True, db_index=True)
    address_pattern = models.CharField(
        _("address pattern"),
        max_length=254,
        blank=True,
        help_text=_("An exact address, or a pattern such as *@example.org"),
    )
    reason = models.TextField(_("reason"))
    created = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)

    objects = PolicyBlockManager()

    class Meta:
        verbose_name = _("policy block")

    def __str__(self) -> str:
        return self.fingerprint or self.address_pattern


class Event(models.Model):
    """The audit trail: who or what changed which key or binding, when."""

    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    actor = models.CharField(_("actor"), max_length=150)
    action = models.CharField(_("action"), max_length=40, db_index=True)
    key = models.ForeignKey(Key, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    fingerprint = models.CharField(_("fingerprint"), max_length=64, blank=True, db_index=True)
    address = models.CharField(_("address"), max_length=254, blank=True, db_index=True)
    detail = models.TextField(_("detail"), blank=True)

    objects = EventManager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.fingerprint} {self.address}"


class OutboxMail(models.Model):
    """One mail the server decided to send (keys.services.outbox).

    Written in the transaction of the change that caused it, so a mail is
    never decided without its row nor a row left without its change; a
    worker delivers it, retrying until `deadline`.
    """

    class Kind(models.TextChoices):
        VERIFY = "verify", _("confirm an address")
        REPLACED = "replaced", _("key replaced")
        WELCOME = "welcome", _("welcome")
        MANAGE = "manage", _("management links")
        NOTICE = "notice", _("change notice")
        EXPIRY = "expiry", _("expiry reminder")
        RECONFIRM = "reconfirm", _("re-confirm an address")
        WKS = "wks", _("Web Key Service")

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("no longer needed")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    address = models.CharField(_("to"), max_length=254)
    binding = models.ForeignKey(
        Binding, null=True, blank=True, on_delete=models.CASCADE, related_name="mails"
    )
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    created = models.DateTimeField(_("created"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    deadline = models.DateTimeField(_("deadline"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    objects = OutboxMailManager()

    class Meta:
        verbose_name = _("outgoing mail")
        verbose_name_plural = _("outbox")
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["address", "kind", "created"], name="outbox_address"),
            models.Index(fields=["next_attempt_at"], name="outbox_due", condition=models.Q(state="queued")),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.address} ({self.state})"


class PublishedChange(models.Model):
    """One entry of the change log the published file trees follow.

    Written in the transaction of every change of a key's answers (by
    keys.services.published_files), so a web node that did not make the
    change brings its own tree up to date by reading the log in id order
    (`manage.py materialize --follow`). `kind` is "key" (every answer of a
    stored key: fingerprints, key ids, addresses), or "fpr", "keyid",
    "email" for one identifier that no stored key names any more.
    """

    kind = models.CharField(max_length=8)
    value = models.CharField(max_length=400)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Source(models.Model):
    """An upstream: the organisation's directory or a public keyserver.

    Declared here, beside the other tables, because publication rule 7 (the
    organisation's domains) is a domain rule that keys.services reads; it
    keeps its app label, so its table, migrations, admin page and
    permissions stay those of the federation app.
    """

    class Kind(models.TextChoices):
        LDAP = "ldap", "LDAP"
        HKP = "hkp", "HKP"
        VKS = "vks", "VKS (keys.openpgp.org)"
        WKD = "wkd", "WKD"

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
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

    objects = SourceManager()

    class Meta:
        app_label = "federation"
        ordering = ["order", "name"]
        verbose_name = _("upstream source")
        verbose_name_plural = _("upstream sources")

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


models.signals.post_save.connect(SourceManager.forget, sender=Source)
models.signals.post_delete.connect(SourceManager.forget, sender=Source)
from .notices import NoticeChange, NoticeOptOut  # noqa: E402, F401
from .reminders import ExpiryReminder, Reconfirmation  # noqa: E402, F401
from .server_key import ServerKey  # noqa: E402, F401
