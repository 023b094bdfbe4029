"""Outgoing mail, composed from translatable templates, marked Auto-Submitted.

Composition only: keys.services.outbox decides when a row of the outbox is
sent and calls `compose` at that moment, so a link's token is made at
delivery (its plain value is never stored, nor passes through the broker),
each try carries a fresh one, and the tokens of a try that failed are
deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from .. import clock, openpgp
from ..identifiers import group_fingerprint, keyserver_uri
from ..models import Binding, Key, NoticeChange, NoticeOptOut, OutboxMail, Reconfirmation, VerificationToken
from ..models.reminders import usable_until
from . import server_key, signed_mail, tokens, wks_mail
from .limits import limits

AUTO_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}
Kind = OutboxMail.Kind


def _message(
    row: OutboxMail, template: str, context: dict[str, Any], extra: dict[str, str] | None = None
) -> EmailMessage:
    context = {"site_name": settings.SITE_NAME, "site_url": settings.SITE_URL, **context}
    # Every mail is PGP/MIME signed with the server's key (RFC 3156). A
    # database away raises here, so the outbox tries again: never unsigned.
    key = server_key.current() if settings.MAIL_SIGN else None
    with translation.override(row.params.get("locale") or settings.LANGUAGE_CODE):
        subject = render_to_string(f"mail/{template}_subject.txt", context).strip()
        body: str = render_to_string(f"mail/{template}_body.txt", context)
        if key is not None:
            body = signed_mail.with_note(key, body, context)
    headers = {**_headers(row), **(extra or {})}
    if key is None:
        return EmailMessage(subject, body, to=[row.address], headers=headers)
    return signed_mail.signed(server_key.secret(key), subject, body, to=[row.address], headers=headers)


def _headers(row: OutboxMail) -> dict[str, str]:
    # The same Message-ID on every try of one row: if a try reached the SMTP
    # server but its outcome was never recorded, the copy is recognisable.
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return {**AUTO_HEADERS, "Message-ID": f"<outbox-{row.pk}.{row.created:%Y%m%d%H%M%S}@{host}>"}


def _token(
    made: list[str],
    purpose: str,
    key: Key,
    address: str,
    *,
    replace: bool = False,
    lifetime: timedelta | None = None,
) -> str:
    plain = tokens.issue(purpose, key, address, replace=replace, lifetime=lifetime)
    made.append(VerificationToken.hash(plain))
    return plain


def _verify(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """A confirmation link, while the binding still awaits confirmation."""
    binding = row.binding
    if binding is None or not binding.awaiting_confirmation:
        return None
    key = binding.key
    replace = bool(row.params.get("replace"))
    plain = _token(made, VerificationToken.Purpose.VERIFY, key, binding.address, replace=replace)
    context = {
        "address": binding.address,
        "fingerprint": group_fingerprint(key.fingerprint),
        "link": f"{settings.SITE_URL}/verify/{plain}",
        "hours": int(settings.VERIFY_TOKEN_TTL.total_seconds() // 3600),
        "replace": replace,
    }
    return _message(row, "verify", context)


def _replaced(row: OutboxMail, made: list[str]) -> EmailMessage:
    context = {
        "address": row.address,
        "fingerprint": group_fingerprint(row.params["fingerprint"]),
        "old": [group_fingerprint(f) for f in row.params["replaced"]],
    }
    return _message(row, "replaced", context)


def _welcome(row: OutboxMail, made: list[str]) -> EmailMessage:
    """A welcome mail whose body is encrypted to the key (Attester)."""
    info = openpgp.parse(row.params["armored"].encode()).certs[0]
    with translation.override(row.params.get("locale") or settings.LANGUAGE_CODE):
        inner = render_to_string(
            "mail/welcome_inner.txt",
            {"address": row.address, "site_name": settings.SITE_NAME, "site_url": settings.SITE_URL},
        )
    return _message(
        row, "welcome", {"address": row.address, "encrypted": openpgp.encrypt(info, inner.encode())}
    )


def _manage(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """One mail listing a management link for each published key of the address."""
    links = []
    for key in Key.objects.filter(pk__in=row.params["keys"]).order_by("-created"):
        plain = _token(made, VerificationToken.Purpose.MANAGE, key, row.address)
        links.append(
            {"fingerprint": group_fingerprint(key.fingerprint), "link": f"{settings.SITE_URL}/manage/{plain}"}
        )
    if not links:
        return None
    minutes = int(settings.MANAGE_TOKEN_TTL.total_seconds() // 60)
    return _message(row, "manage", {"address": row.address, "links": links, "minutes": minutes})


def _when(value: str | None, pattern: str = "%Y-%m-%d %H:%M UTC") -> str | None:
    return datetime.fromisoformat(value).strftime(pattern) if value else None


def _notice_line(change: dict[str, Any]) -> dict[str, Any]:
    detail = change.get("detail") or {}
    return {
        "change": change["change"],
        "at": _when(change["at"]),
        "via": NoticeChange.Via(change["via"]).label,
        "subkeys": ", ".join(group_fingerprint(f) for f in detail.get("subkeys", [])),
        "old": _when(detail.get("old"), "%Y-%m-%d"),
        "new": _when(detail.get("new"), "%Y-%m-%d"),
        "user_id": detail.get("user_id", ""),
        "address": detail.get("address", ""),
    }


def _notice(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """What changed on the keys published for the address, how to undo it,
    and a link to stop these notices (keys.services.notices)."""
    if NoticeOptOut.objects.filter(digest=NoticeOptOut.hash(row.address)).exists():
        return None
    changes = row.params["changes"]
    keys: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        keys.setdefault(change["fingerprint"], []).append(_notice_line(change))
    context: dict[str, Any] = {
        "address": row.address,
        "keys": [{"fingerprint": group_fingerprint(f), "changes": lines} for f, lines in keys.items()],
        "kinds": {c["change"] for c in changes},
        "days": settings.NOTICE_OPTOUT_TOKEN_TTL.days,
    }
    # The opt-out token names a key of the notice that is still stored.
    key = Key.objects.filter(fingerprint__in=list(keys)).order_by("-created").first()
    extra: dict[str, str] = {}
    if key is not None:
        plain = _token(made, VerificationToken.Purpose.NOTICES, key, row.address)
        context["optout"] = f"{settings.SITE_URL}/notices/off/{plain}"
        # RFC 8058: the mail program's own "unsubscribe" button POSTs there.
        extra = {
            "List-Unsubscribe": f"<{context['optout']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    return _message(row, "notice", context, extra)


def _wks(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """Web Key Service mails: built by keys.services.wks_mail (PGP/MIME, its own From)."""
    return wks_mail.compose(row, made, _headers(row))


def extend_commands(key: Key) -> list[str]:
    """The exact commands that extend the key by two years and send it here:
    the primary key, then every subkey (gpg extends only the primary
    without '*', and an expired encryption subkey leaves the key useless
    for mail)."""
    fpr = key.fingerprint
    lines = [f"gpg --quick-set-expire {fpr} 2y"] if key.expires is not None else []
    info = openpgp.load_stored(bytes(key.data), limits())
    if any(s.expires is not None and not s.revoked for s in info.subkeys):
        lines.append(f"gpg --quick-set-expire {fpr} 2y '*'")
    lines.append(f"gpg --keyserver {keyserver_uri(settings.SITE_URL)} --send-keys {fpr}")
    return lines


def _expiry(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """How to extend a key that stops working soon, while that is still so
    (an extension uploaded before delivery cancels the mail)."""
    binding = row.binding
    if binding is None or binding.state != Binding.State.PUBLISHED:
        return None
    key = binding.key
    until = usable_until(key)
    now = clock.now()
    if key.revoked or key.blocked or until is None or until <= now:
        return None
    if until != datetime.fromisoformat(row.params["expires"]):
        return None
    context = {
        "address": binding.address,
        "fingerprint": group_fingerprint(key.fingerprint),
        "date": f"{until:%Y-%m-%d}",
        "days": max(1, round((until - now) / timedelta(days=1))),
        "subkeys": key.expires is None or (key.encryption_expires or until) < key.expires,
        "commands": extend_commands(key),
        "page": f"{settings.SITE_URL}/key/{key.fingerprint}",
    }
    return _message(row, "expiry", context)


def _reconfirm(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """A link to confirm a published address again, valid for the grace,
    while its request is open."""
    binding = row.binding
    request = Reconfirmation.objects.filter(
        pk=row.params.get("reconfirmation"), outcome=Reconfirmation.Outcome.OPEN
    ).first()
    if binding is None or request is None:
        return None
    key = binding.key
    if (
        binding.state != Binding.State.PUBLISHED
        or binding.validation not in Binding.MAILBOX_PROOFS
        or key.revoked
        or key.blocked
    ):
        return None
    grace = timedelta(days=settings.RECONFIRM_GRACE_DAYS)
    plain = _token(made, VerificationToken.Purpose.VERIFY, key, binding.address, lifetime=grace)
    context = {
        "address": binding.address,
        "fingerprint": group_fingerprint(key.fingerprint),
        "link": f"{settings.SITE_URL}/verify/{plain}",
        "days": settings.RECONFIRM_GRACE_DAYS,
        "since": f"{binding.verified_at:%Y-%m-%d}" if binding.verified_at else "",
    }
    return _message(row, "reconfirm", context)


_COMPOSERS: dict[str, Callable[[OutboxMail, list[str]], EmailMessage | None]] = {
    Kind.VERIFY: _verify,
    Kind.REPLACED: _replaced,
    Kind.WELCOME: _welcome,
    Kind.MANAGE: _manage,
    Kind.NOTICE: _notice,
    Kind.WKS: _wks,
    Kind.EXPIRY: _expiry,
    Kind.RECONFIRM: _reconfirm,
}


def compose(row: OutboxMail, made: list[str]) -> EmailMessage | None:
    """The message for one row of the outbox; None when it is no longer
    needed (the address was confirmed meanwhile, the keys are gone). The
    digests of the tokens its links carry are added to `made`."""
    return _COMPOSERS[row.kind](row, made)
