"""The Web Key Service: keys published into the WKD by mail
(draft-koch-openpgp-webkey-service, section 4; gpg-wks-client's protocol).

`handle` takes one RFC 5322 message (from `manage.py wks_receive` or the
SMTP listener `manage.py wks_smtpd`) and does one of two things:

1. A submission to a submission address (multipart/encrypted, PGP/MIME,
   encrypted to that address's server key, an application/pgp-keys part
   inside): the key goes through the one import service (every limit and
   refusal applies) and each of its addresses that this submission address
   serves (its own domain with `{domain}` in WKS_SUBMISSION_ADDRESS, else
   every served domain) and that may be published here (publication rule
   7: not a domain of the organisation's directory, not blocked by policy,
   not revoked) gets a confirmation request (application/vnd.gnupg.wks,
   type confirmation-request, encrypted to the submitted key, composed by
   the outbox at delivery so the nonce is made then and stored only
   hashed): at most MAX_MAILS_PER_UPLOAD per submission, RATE_MAIL_PER_CLIENT
   per sender and RATE_MAIL_PER_ADDRESS per address.
2. A confirmation response (type confirmation-response, encrypted to the
   submission address's key) whose nonce is live, single use and for that
   address: the address is published as `wks_confirmed`, if it still may be.

Anything else is refused with a reason, logged (never the nonce, the key or
the body) and, where the sender would want to know and the mail is neither
a bounce nor automatic, answered by a mail; nothing stored changes. Mail
that is not even encrypted is never answered: spam would get answers. A
database error or a server key whose secret cannot be opened is not a
refusal: it propagates, so the MTA pipe exits with EX_TEMPFAIL (the
listener answers 451) and the mail is tried again.
"""

from __future__ import annotations

import email.message
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, transaction

from .. import clock, openpgp, ratelimit
from ..errors import InvalidToken, KeyserverError
from ..identifiers import domain_of
from ..models import Binding, Event, Key, OutboxMail, VerificationToken
from . import outbox, publication, server_key, submission, tokens, verification
from . import wks_inbound as inbound
from .limits import limits
from .server_key import ServerKeyUnreadable
from .wks_inbound import KEYS_TYPE, WKS_TYPE, Refused

log = logging.getLogger("keyserver.wks")
Kind = OutboxMail.Kind
DRAFT_VERSION = "3"
# Not a refusal: the MTA keeps the mail and tries again (EX_TEMPFAIL, 451).
TEMPORARY = (DatabaseError, ServerKeyUnreadable)


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    reason: str  # a short code: "submitted", "published", "not encrypted", ...
    detail: str = ""


# -- the submission addresses ------------------------------------------------------------


def submission_address(domain: str) -> str | None:
    """The submission address of a served domain; None without a Web Key Service."""
    template = settings.WKS_SUBMISSION_ADDRESS
    if not template or domain not in settings.WKD_DOMAINS:
        return None
    return template.replace("{domain}", domain).lower()


def submission_addresses() -> list[str]:
    found = (submission_address(d) for d in settings.WKD_DOMAINS)
    return list(dict.fromkeys(a for a in found if a))


def served_domains(to: str) -> list[str]:
    """The domains whose addresses a mail to the submission address `to` may
    publish: its own domain with `{domain}` in the setting, every served
    domain with one fixed address."""
    if "{domain}" in settings.WKS_SUBMISSION_ADDRESS:
        return [d for d in settings.WKD_DOMAINS if submission_address(d) == to]
    return list(settings.WKD_DOMAINS)


def ensure_keys() -> list[server_key.ServerKey]:
    """Every submission address's key, made and published on first use (gpg-wks-client
    looks it up over WKD before it encrypts a submission)."""
    return [server_key.for_address(address) for address in submission_addresses()]


# -- one inbound mail --------------------------------------------------------------------


def handle(raw: bytes, *, recipient: str = "", envelope_sender: str | None = None) -> Outcome:
    """Handle one message; `recipient` is the envelope recipient when known
    (SMTP RCPT, the MTA's original recipient), else the To header counts;
    `envelope_sender` is the envelope sender when known (SMTP MAIL FROM; ""
    or "<>" for a bounce, which is never answered)."""
    sender, to = "", ""
    message: email.message.Message | None = None
    try:
        if len(raw) > settings.WKS_MAX_MESSAGE_BYTES:
            raise Refused("oversized", f"{len(raw)} bytes > {settings.WKS_MAX_MESSAGE_BYTES}")
        message = inbound.parse(raw)
        sender = inbound.sender(message)
        to = inbound.recipient(message, recipient, submission_addresses())
        outcome = _handle(message, to, sender)
    except Refused as refused:
        record_refusal(refused, sender)
        if refused.answer and message is not None:
            _answer(message, sender, to, refused, envelope_sender)
        return Outcome(False, refused.reason, refused.detail)
    except ServerKeyUnreadable:
        log.error(
            "wks mail deferred: the secret of the key of %s cannot be opened (SECRET_KEY changed?); "
            "every submission to it is deferred until `manage.py server_key rotate --address %s` "
            "makes a new key",
            to,
            to,
        )
        raise
    log.info("wks mail handled: %s", outcome.reason, extra={"reason": outcome.reason})
    return outcome


def record_refusal(refused: Refused, sender: str = "") -> None:
    """Log a refusal and keep it as a `wks_refused` event (also for mail the
    SMTP listener refused before it reached `handle`). What the mail said is
    kept without its control characters (a NUL cannot be stored)."""
    detail = inbound.printable(f"{refused.reason}: {refused.detail}")[:500]
    log.warning("wks mail refused: %s", refused.reason, extra={"reason": refused.reason, "detail": detail})
    address = sender[:254] if inbound.is_address(sender) else ""
    Event.objects.record("wks_refused", address=address, actor="wks", detail=detail)


def _handle(message: email.message.Message, to: str, sender: str) -> Outcome:
    encrypted = inbound.encrypted_body(message)
    try:
        secret = server_key.secret(server_key.for_address(to))
        # A submission holds one key; a compressed one unpacks to at most this.
        limit = 2 * settings.MAX_KEY_BYTES + settings.WKS_MAX_MESSAGE_BYTES
        plaintext = openpgp.decrypt(secret, encrypted, limit=limit)
    except openpgp.WksCryptoError as exc:
        raise Refused("cannot decrypt", str(exc), answer=True) from None
    for part in inbound.parts(plaintext):
        kind = part.get_content_type()
        if kind == KEYS_TYPE:
            return _submission(inbound.payload_of(part), to=to, sender=sender)
        if kind == WKS_TYPE:
            return _response(inbound.payload_of(part), to=to, sender=sender)
    raise Refused("garbage", "neither a key nor WKS data inside", answer=True)


# -- a submission ----------------------------------------------------------------------


def _submission(data: bytes, *, to: str, sender: str) -> Outcome:
    """Store the key (the one import service) and ask each served address to confirm."""
    try:
        upload = openpgp.parse(data, limits())  # refusals before anything is stored
    except KeyserverError as exc:
        raise Refused.by(exc) from None
    if len(upload.certs) != 1:
        raise Refused("garbage", f"{len(upload.certs)} keys, one expected", answer=True)
    domains = served_domains(to)
    served = list(dict.fromkeys(a for a in upload.certs[0].emails if domain_of(a) in domains))
    if not served:
        raise Refused("domain not served", ", ".join(upload.certs[0].emails)[:200], answer=True)
    with transaction.atomic():
        try:
            key = submission.counted_import(data, actor=f"wks {sender}"[:150]).keys[0].key
        except KeyserverError as exc:
            raise Refused.by(exc) from None
        queued = _requests(key, served, to=to, sender=sender)
    if not queued:
        return Outcome(True, "nothing to confirm", "published already, not publishable, or a request is out")
    return Outcome(True, "submitted", ", ".join(queued))


def _requests(key: Key, served: list[str], *, to: str, sender: str) -> list[str]:
    """Queue the confirmation requests of one submission, within the limits:
    MAX_MAILS_PER_UPLOAD, the sender's and each address's. A sender past its
    limit before any request is refused, and the key is not stored."""
    queued: list[str] = []
    bindings = {b.address: b for b in key.bindings.filter(address__in=served)}
    for address in served:
        if len(queued) >= settings.MAX_MAILS_PER_UPLOAD:
            break
        binding = bindings.get(address)
        if not _requestable(key, binding) or _spent(address, "request"):
            continue
        if not ratelimit.allow(f"wks-sender:{sender}", settings.RATE_MAIL_PER_CLIENT):
            if not queued:
                raise Refused("rate limited", f"{sender}: {settings.RATE_MAIL_PER_CLIENT}")
            break
        assert binding is not None  # _requestable
        publication.mark_pending(binding)  # as a confirmation mail from the upload page does
        Event.objects.record("wks_confirmation_requested", key=key, address=address, actor="wks")
        outbox.enqueue(
            Kind.WKS, address, binding=binding, phase="request", sender=to, fingerprint=key.fingerprint
        )
        queued.append(address)
    return queued


def _requestable(key: Key, binding: Binding | None) -> bool:
    """Not published yet, and publishable here (rule 7, policy, not revoked)."""
    return (
        binding is not None
        and binding.state in verification.CONFIRMABLE
        and verification.confirmable(key, binding)
    )


def _spent(address: str, phase: str) -> bool:
    """True while `address` has had RATE_MAIL_PER_ADDRESS WKS mails of `phase`
    ("request" or "refused"): refusal answers, which anyone can cause with a
    forged From, never use up the limit of a confirmation request."""
    return outbox.sent_within(address, Kind.WKS, settings.RATE_MAIL_PER_ADDRESS, phase)


# -- a confirmation response -------------------------------------------------------------


def fields(data: bytes) -> dict[str, str]:
    """The `name: value` lines of WKS data (the first of each name counts)."""
    found: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() and not name.startswith((" ", "\t")):
            found.setdefault(name.strip().lower(), value.strip())
    return found


def _response(data: bytes, *, to: str, sender: str) -> Outcome:
    values = fields(data)
    if values.get("type") != "confirmation-response":
        raise Refused("garbage", f"unexpected WKS message type {values.get('type', '')!r}"[:200])
    if values.get("sender", "").lower() != to:
        raise Refused("wrong recipient", "the response names another submission address", answer=True)
    address = values.get("address", "").lower()
    with transaction.atomic():
        try:
            token = tokens.find(values.get("nonce", ""), VerificationToken.Purpose.WKS, for_update=True)
        except InvalidToken:
            raise Refused("nonce unknown, used or expired", address, answer=True) from None
        if token.address != address:
            raise Refused("response for another key", f"{address} != {token.address}", answer=True)
        binding = token.key.bindings.filter(address=address).first()
        if domain_of(address) not in served_domains(to) or not verification.confirmable(token.key, binding):
            raise Refused("not publishable", address)  # rule 7, policy, revoked since the request
        token.used_at = clock.now()
        token.save(update_fields=["used_at"])
        try:
            verification.publish_proven(token.key, address, Binding.Validation.WKS_CONFIRMED, actor="wks")
        except KeyserverError as exc:
            raise Refused.by(exc) from None
        outbox.enqueue(Kind.WKS, address, phase="published", sender=to, fingerprint=token.fingerprint)
    return Outcome(True, "published", address)


# -- answers -------------------------------------------------------------------------------


def _answer(
    message: email.message.Message, sender: str, to: str, refused: Refused, envelope_sender: str | None
) -> None:
    """Tell the sender why, once per limit window (of refusal answers alone),
    unless the mail was a bounce or automatic, or came from one of our own
    addresses (no mail loops, little backscatter)."""
    if not to or not inbound.is_address(sender) or sender in submission_addresses():
        return
    if inbound.automatic(message, sender, envelope_sender) or _spent(sender, "refused"):
        return
    with transaction.atomic():
        outbox.enqueue(Kind.WKS, sender, phase="refused", sender=to, reason=refused.reason, told=refused.told)
