"""The Web Key Service: keys published into the WKD by mail
(draft-koch-openpgp-webkey-service, section 4; gpg-wks-client's protocol).

`handle` takes one RFC 5322 message (from `manage.py wks_receive` or the
SMTP listener `manage.py wks_smtpd`) and does one of two things:

1. A submission to a submission address (multipart/encrypted, PGP/MIME,
   encrypted to that address's server key, an application/pgp-keys part
   inside): the key goes through the one import service (every limit and
   refusal applies) and each of its addresses on a served domain gets a
   confirmation request (application/vnd.gnupg.wks, type
   confirmation-request, encrypted to the submitted key, composed by the
   outbox at delivery so the nonce is made then and stored only hashed).
2. A confirmation response (type confirmation-response, encrypted to the
   submission address's key) whose nonce is live, single use and for that
   address: the address is published as `wks_confirmed`.

Anything else is refused with a reason, logged (never the nonce, the key or
the body) and, where the sender would want to know and the mail is not
itself automatic, answered by a plain mail; nothing stored changes. A
database error is not a refusal: it propagates, so the MTA pipe exits with
EX_TEMPFAIL and the mail is tried again.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from .. import clock, openpgp
from ..errors import InvalidToken, KeyserverError
from ..identifiers import domain_of
from ..models import Binding, Event, Key, OutboxMail, VerificationToken
from . import outbox, publication, server_key, submission, tokens, verification
from .limits import limits

log = logging.getLogger("keyserver.wks")
Kind = OutboxMail.Kind
WKS_TYPE = "application/vnd.gnupg.wks"
KEYS_TYPE = "application/pgp-keys"
ENCRYPTED_PROTOCOL = "application/pgp-encrypted"
DRAFT_VERSION = "3"


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    reason: str  # a short code: "submitted", "published", "not encrypted", ...
    detail: str = ""


class Refused(Exception):
    """A mail this service will not act on; `answer`: tell its sender why."""

    def __init__(self, reason: str, detail: str = "", *, answer: bool = False, told: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.answer = answer
        self.told = told  # what the answer says instead of the reason's own sentence

    @classmethod
    def by(cls, error: KeyserverError) -> Refused:
        """A refusal by the import or publication service: the answer gives its message."""
        return cls(type(error).__name__, error.message, answer=True, told=error.message)


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


def ensure_keys() -> list[server_key.ServerKey]:
    """Every submission address's key, made and published on first use (gpg-wks-client
    looks it up over WKD before it encrypts a submission)."""
    return [server_key.for_address(address) for address in submission_addresses()]


# -- one inbound mail --------------------------------------------------------------------


def handle(raw: bytes, *, recipient: str = "") -> Outcome:
    """Handle one message; `recipient` is the envelope recipient when known
    (SMTP RCPT, the MTA's original recipient), else the To header counts."""
    sender, to = "", ""
    message: email.message.Message | None = None
    try:
        if len(raw) > settings.WKS_MAX_MESSAGE_BYTES:
            raise Refused("oversized", f"{len(raw)} bytes > {settings.WKS_MAX_MESSAGE_BYTES}")
        message = _parse(raw)
        sender = _sender(message)
        to = _recipient(message, recipient)
        outcome = _handle(message, to, sender)
    except Refused as refused:
        record_refusal(refused, sender)
        if refused.answer:
            _answer(message, sender, to, refused)
        return Outcome(False, refused.reason, refused.detail)
    log.info("wks mail handled: %s", outcome.reason, extra={"reason": outcome.reason})
    return outcome


def record_refusal(refused: Refused, sender: str = "") -> None:
    """Log a refusal and keep it as a `wks_refused` event (also for mail the
    SMTP listener refused before it reached `handle`)."""
    log.warning(
        "wks mail refused: %s", refused.reason, extra={"reason": refused.reason, "detail": refused.detail}
    )
    Event.objects.record(
        "wks_refused", address=sender[:254], actor="wks", detail=f"{refused.reason}: {refused.detail}"[:500]
    )


def _parse(raw: bytes) -> email.message.Message:
    try:
        message = email.message_from_bytes(raw)
    except Exception as exc:  # the parser is lenient; anything it still raises is garbage
        raise Refused("garbage", type(exc).__name__) from None
    if not message.keys():
        raise Refused("garbage", "no mail headers")
    return message


def _sender(message: email.message.Message) -> str:
    return email.utils.parseaddr(str(message.get("From", "")))[1].strip().lower()


def _recipient(message: email.message.Message, given: str) -> str:
    addresses = submission_addresses()
    if given:
        candidates = [given]
    else:
        headers = [str(v) for v in message.get_all("To", []) + message.get_all("Cc", [])]
        candidates = [a for _, a in email.utils.getaddresses(headers)]
    for candidate in candidates:
        if candidate.strip().lower() in addresses:
            return candidate.strip().lower()
    raise Refused("wrong recipient", ", ".join(candidates)[:200] or "none")


def _handle(message: email.message.Message, to: str, sender: str) -> Outcome:
    encrypted = _encrypted_body(message)
    try:
        secret = server_key.secret(server_key.for_address(to))
        # A submission holds one key; a compressed one unpacks to at most this.
        limit = 2 * settings.MAX_KEY_BYTES + settings.WKS_MAX_MESSAGE_BYTES
        plaintext = openpgp.decrypt(secret, encrypted, limit=limit)
    except openpgp.WksCryptoError as exc:
        raise Refused("cannot decrypt", str(exc), answer=True) from None
    inner = email.message_from_bytes(plaintext)
    for part in inner.walk():
        kind = part.get_content_type()
        if kind == KEYS_TYPE:
            return _submission(_payload(part), to=to, sender=sender)
        if kind == WKS_TYPE:
            return _response(_payload(part), to=to, sender=sender)
    raise Refused("garbage", "neither a key nor WKS data inside", answer=True)


def _encrypted_body(message: email.message.Message) -> bytes:
    """The OpenPGP message of a PGP/MIME mail (RFC 3156, section 4)."""
    if (
        message.get_content_type() != "multipart/encrypted"
        or str(message.get_param("protocol", "")).lower() != ENCRYPTED_PROTOCOL
    ):
        raise Refused("not encrypted", message.get_content_type(), answer=True)
    payload = message.get_payload()
    parts = [p for p in payload if isinstance(p, email.message.Message)] if isinstance(payload, list) else []
    if len(parts) != 2 or parts[0].get_content_type() != ENCRYPTED_PROTOCOL:
        raise Refused("not encrypted", "malformed multipart/encrypted", answer=True)
    return _payload(parts[1])


def _payload(part: email.message.Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


# -- a submission ----------------------------------------------------------------------


def _submission(data: bytes, *, to: str, sender: str) -> Outcome:
    """Store the key (the one import service) and ask each served address to confirm."""
    try:
        upload = openpgp.parse(data, limits())  # refusals before anything is stored
    except KeyserverError as exc:
        raise Refused.by(exc) from None
    if len(upload.certs) != 1:
        raise Refused("garbage", f"{len(upload.certs)} keys, one expected", answer=True)
    served = [a for a in upload.certs[0].emails if domain_of(a) in settings.WKD_DOMAINS]
    if not served:
        raise Refused("domain not served", ", ".join(upload.certs[0].emails)[:200], answer=True)
    with transaction.atomic():
        try:
            key = submission.counted_import(data, actor=f"wks {sender}"[:150]).keys[0].key
        except KeyserverError as exc:
            raise Refused.by(exc) from None
        queued = [a for a in served if _request(key, a, to)]
    if not queued:
        return Outcome(True, "nothing to confirm", "published already, or a request is out")
    return Outcome(True, "submitted", ", ".join(queued))


def _request(key: Key, address: str, to: str) -> bool:
    binding = key.bindings.filter(address=address).first()
    if binding is None or binding.state not in verification.CONFIRMABLE or key.revoked or key.blocked:
        return False
    if outbox.free_at(address, Kind.WKS, settings.RATE_MAIL_PER_ADDRESS) is not None:
        return False
    publication.mark_pending(binding)  # as a confirmation mail from the upload page does
    Event.objects.record("wks_confirmation_requested", key=key, address=address, actor="wks")
    outbox.enqueue(
        Kind.WKS, address, binding=binding, phase="request", sender=to, fingerprint=key.fingerprint
    )
    return True


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
        token.used_at = clock.now()
        token.save(update_fields=["used_at"])
        try:
            verification.publish_proven(token.key, address, Binding.Validation.WKS_CONFIRMED, actor="wks")
        except KeyserverError as exc:
            raise Refused.by(exc) from None
        outbox.enqueue(Kind.WKS, address, phase="published", sender=to, fingerprint=token.fingerprint)
    return Outcome(True, "published", address)


# -- answers -------------------------------------------------------------------------------


def _answer(message: email.message.Message | None, sender: str, to: str, refused: Refused) -> None:
    """Tell the sender why, once per limit window, unless the mail was automatic
    or came from one of our own addresses (no mail loops, little backscatter)."""
    if message is None or not to or "@" not in sender or sender in submission_addresses():
        return
    if str(message.get("Auto-Submitted", "no")).strip().lower() != "no":
        return
    if outbox.free_at(sender, Kind.WKS, settings.RATE_MAIL_PER_ADDRESS) is not None:
        return
    with transaction.atomic():
        outbox.enqueue(Kind.WKS, sender, phase="refused", sender=to, reason=refused.reason, told=refused.told)
