"""Proving addresses: confirmation mails, their tokens, and other proofs.

An address becomes published only when proven (publication rule 3): by a
confirmed verification mail here, or by a proof another part checked (an
OIDC id_token on the Attester API, the organisation's directory).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from .. import clock, metrics, ratelimit
from ..errors import InvalidKey, InvalidToken, RateLimited
from ..models import Binding, Event, Key, OutboxMail, PolicyBlock, Source, VerificationToken
from . import outbox, publication, reconfirmation, tokens
from .locking import locked_key

State = Binding.State
Validation = Binding.Validation
CONFIRMABLE = publication.CONFIRMABLE


@dataclass(frozen=True)
class Mailing:
    """What a request did for one address: a mail queued now, or none
    because a limit is reached until `retry_at`: the address's own
    (`earlier`: its mail from before is still out, so the address stays
    pending) or the requesting client's (`client_limited`)."""

    sent: bool
    earlier: bool = False
    retry_at: datetime | None = None
    client_limited: bool = False


def request_verification(
    key: Key,
    addresses: Iterable[str],
    *,
    client: str,
    locale: str = "",
    actor: str = "",
    replace: bool = False,
    partial: bool = False,
) -> dict[str, Mailing]:
    """Mail a confirmation link to each requested address (publication rule 8);
    what was done for each address a mail was considered for.

    Addresses already published are left alone. A repeat for the same address
    within its limit sends nothing (a 429 there would tell a stranger that
    someone else asked): the address stays pending. When the client's own
    limit stops the request part-way, what was sent before stays sent; with
    `partial` the rest are answered as `client_limited` (for a page that says
    per address what happened), else the request is a 429.
    """
    requested = list(dict.fromkeys(addresses))[: settings.MAX_MAILS_PER_UPLOAD]
    done: dict[str, Mailing] = {}
    if not requested:
        return done
    limited = False
    with locked_key(key.pk) as key:
        if key.revoked or key.blocked:
            return done
        organisation = Source.objects.authoritative_domains()
        for binding in key.bindings.filter(address__in=requested).order_by("id"):
            if binding.state not in CONFIRMABLE or binding.domain in organisation:
                continue  # rule 7: not published over the organisation's directory
            if limited:
                done[binding.address] = _client_limited()
                continue
            mailing = _mail_one(key, binding, client=client, locale=locale, actor=actor, replace=replace)
            limited = mailing.client_limited
            done[binding.address] = mailing
    if limited and not partial:
        raise RateLimited(
            _("Too many confirmation mails were requested from your address. Please try again later."),
            retry_after=ratelimit.seconds_left(settings.RATE_MAIL_PER_CLIENT),
        )
    return done


def _client_limited() -> Mailing:
    return Mailing(
        sent=False, client_limited=True, retry_at=ratelimit.window_end(settings.RATE_MAIL_PER_CLIENT)
    )


def _mail_one(key: Key, binding: Binding, *, client: str, locale: str, actor: str, replace: bool) -> Mailing:
    """Mark one address pending and queue its mail, within the limits.

    The address's limit counts the confirmation mails queued or sent to it
    (the outbox), not requests: a request that failed spent nothing.
    """
    retry_at = outbox.free_at(binding.address, OutboxMail.Kind.VERIFY, settings.RATE_MAIL_PER_ADDRESS)
    if retry_at is not None:
        earlier = OutboxMail.objects.outstanding_for(binding.pk)
        if earlier:
            publication.mark_pending(binding)  # its mail is out: pending, as the owner expects
        return Mailing(sent=False, earlier=earlier, retry_at=retry_at)
    if not ratelimit.allow(f"mail-ip:{client}", settings.RATE_MAIL_PER_CLIENT):
        return _client_limited()
    publication.mark_pending(binding)
    Event.objects.record("verification_requested", key=key, address=binding.address, actor=actor or client)
    outbox.enqueue(OutboxMail.Kind.VERIFY, binding.address, binding=binding, locale=locale, replace=replace)
    return Mailing(sent=True)


def verification_target(plain: str) -> VerificationToken:
    """The token behind a confirmation link, for the page that shows it."""
    token = tokens.find(plain, VerificationToken.Purpose.VERIFY)
    binding = token.key.bindings.filter(address=token.address).first()
    if binding is None or binding.state in (State.REVOKED, State.REMOVED_BY_POLICY):
        raise InvalidToken(_("This address can no longer be confirmed for this key."))
    return token


def confirmable(key: Key, binding: Binding | None) -> bool:
    """Whether a proof of its mailbox may still publish `binding` (rule 7, a
    policy block, revocation): for a confirmation link, and for the proofs
    other services take, such as a Web Key Service confirmation."""
    return not (
        binding is None
        or key.revoked
        or key.blocked
        or binding.state in (State.REVOKED, State.REMOVED_BY_POLICY)
        or PolicyBlock.objects.blocked_addresses([binding.address])
        or binding.domain in Source.objects.authoritative_domains()
    )


def confirm(plain: str, *, actor: str = "", locale: str = "") -> Binding:
    """Publish the address of a verification token (single use); `locale`:
    the language of the page it was confirmed on, for later mails."""
    with transaction.atomic():
        token = tokens.find(plain, VerificationToken.Purpose.VERIFY, for_update=True)
        with locked_key(token.key.pk) as key:
            binding = key.bindings.filter(address=token.address).first()
            token.used_at = clock.now()
            token.save(update_fields=["used_at"])
            if binding is None or not confirmable(key, binding):
                raise InvalidToken(_("This address can no longer be confirmed for this key."))
            again = binding.state == State.PUBLISHED and binding.validation == Validation.EMAIL_CONFIRMED
            publication.publish(key, binding, Validation.EMAIL_CONFIRMED, actor=actor or "email")
            reconfirmation.confirmed(key, binding, again=again, actor=actor or "email")
            if locale and binding.locale != locale:
                binding.locale = locale
                binding.save(update_fields=["locale"])
            if token.replace:
                replace_others(binding.address, keep=key, actor=actor or "email")
    metrics.CONFIRMATIONS.inc()
    return binding


def publish_proven(key: Key, address: str, validation: str, *, actor: str, replace: bool = False) -> Binding:
    """Publish an address proven another way than by mail (OIDC, directory)."""
    with locked_key(key.pk) as key:
        binding = key.bindings.filter(address=address).first()
        if (
            binding is None
            or key.revoked
            or key.blocked
            or binding.state in (State.REVOKED, State.REMOVED_BY_POLICY)
        ):
            raise InvalidKey(_("This key has no valid user ID for %(address)s.") % {"address": address})
        again = binding.state == State.PUBLISHED and binding.validation == validation
        publication.publish(key, binding, validation, actor=actor)
        if validation in reconfirmation.MAILBOX_PROOFS:  # a WKS confirmation proves the mailbox again
            reconfirmation.confirmed(key, binding, again=again, actor=actor)
        if replace:
            replace_others(address, keep=key, actor=actor)
    return binding


def upload_token(key: Key) -> str:
    """The VKS upload token: request-verify may use it for an hour."""
    return tokens.issue(VerificationToken.Purpose.UPLOAD, key)


def key_for_upload_token(plain: str) -> Key:
    return tokens.find(plain, VerificationToken.Purpose.UPLOAD).key


def replace_others(address: str, *, keep: Key, actor: str) -> list[str]:
    """Unpublish `address` on every key but `keep` (publication rule 4).

    The owner is told by mail which keys were replaced; nothing is sent when
    nothing changed. Runs inside the caller's transaction.
    """
    replaced: list[str] = []
    locale = ""  # the language the replaced keys' owner confirmed the address in
    for key_pk in Binding.objects.published_elsewhere(address, keep):
        with locked_key(key_pk) as key:
            bindings = key.bindings.filter(address=address, state=State.PUBLISHED)
            locale = locale or next((b.locale for b in bindings if b.locale), "")
            publication.unpublish(
                key, bindings, actor=actor, event="address_replaced", detail=keep.fingerprint
            )
        replaced.append(key.fingerprint)
    if replaced:
        outbox.enqueue(
            OutboxMail.Kind.REPLACED,
            address,
            fingerprint=keep.fingerprint,
            replaced=replaced,
            locale=locale,
        )
    return replaced
