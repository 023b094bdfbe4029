"""The Web Key Service's mails (keys.services.wks), composed at delivery by the outbox.

- `request`: the confirmation request of draft-koch-openpgp-webkey-service
  (section 4.4): a multipart/mixed with a text part and the
  application/vnd.gnupg.wks part (type, sender, address, fingerprint,
  nonce) encrypted to the submitted key. The nonce is a WKS token made now
  and stored hashed.
- `published`: the address is published (gpg-wks-server's notice).
- `refused`: why a submission or response was not acted on.

From is the submission address, so the client's response goes there.
"""

from __future__ import annotations

from email.mime.application import MIMEApplication
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import SafeMIMEMultipart
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from .. import openpgp
from ..models import Key, OutboxMail, VerificationToken
from . import publication, server_key, signed_mail, tokens

DRAFT_HEADERS = {"Wks-Draft-Version": "3"}

# What a refusal (keys.services.wks.Refused) tells its sender, in the mail's
# language; a refusal by the import service gives its own message instead.
REFUSALS = {
    "cannot decrypt": _(
        "It could not be decrypted with the key of the submission address. gpg-wks-client encrypts "
        "to the key it finds over WKD: send the request again with it."
    ),
    "garbage": _("It holds neither one OpenPGP key nor a Web Key Service message."),
    "not encrypted": _(
        "It was not encrypted. The Web Key Service takes only PGP/MIME encrypted mail, as "
        "gpg-wks-client sends it."
    ),
    "domain not served": _("The key has no address in a domain this server publishes."),
    "wrong recipient": _("The confirmation names another submission address."),
    "nonce unknown, used or expired": _(
        "The confirmation was used already or has expired: send the request again."
    ),
    "response for another key": _("The confirmation belongs to another address."),
}


class RequestMessage(EmailMessage):
    """The confirmation request as gpg-wks-client 2.2 reads it: multipart/mixed,
    the text part in the clear, the application/vnd.gnupg.wks part an
    armored OpenPGP message encrypted to the submitted key. (Inside a
    multipart/encrypted, 2.2.40 cannot tell which key decrypted it and
    refuses: "confirmation request not decrypted with target key".)"""

    def __init__(self, *args: Any, armored: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armored = armored

    def message(self, *args: Any, **kwargs: Any) -> Any:
        plain = super().message(*args, **kwargs)
        outer = SafeMIMEMultipart("mixed", encoding=settings.DEFAULT_CHARSET)
        outer.attach(MIMEText(str(self.body), "plain", "utf-8"))
        outer.attach(MIMEApplication(self.armored, "vnd.gnupg.wks", _encoder=_seven_bit))
        for name, value in plain.items():
            if name.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
                outer[name] = value
        return outer


def _seven_bit(part: MIMENonMultipart) -> None:
    part["Content-Transfer-Encoding"] = "7bit"


def _render(
    row: OutboxMail, template: str, context: dict[str, Any], signer: server_key.ServerKey | None
) -> tuple[str, str]:
    """Subject and text; the text ends with the note on the key that signs
    it (the submission address's own), as every signed mail does."""
    context = {"site_name": settings.SITE_NAME, "site_url": settings.SITE_URL, **context}
    with translation.override(row.params.get("locale") or settings.LANGUAGE_CODE):
        subject = render_to_string(f"mail/wks_{template}_subject.txt", context).strip()
        body: str = render_to_string(f"mail/wks_{template}_body.txt", context)
        if signer is not None:
            body = signed_mail.with_note(signer, body, context)
    return subject, body


def _signer(row: OutboxMail) -> server_key.ServerKey | None:
    """The key that signs the mail (that of the address it comes from); None unsigned."""
    if not settings.MAIL_SIGN:
        return None
    sender = row.params.get("sender")
    return server_key.for_address(sender) if sender else server_key.current()


def _request(
    row: OutboxMail, made: list[str], headers: dict[str, str], signer: server_key.ServerKey | None
) -> EmailMessage | None:
    binding = row.binding
    if binding is None or binding.state not in publication.CONFIRMABLE:
        return None  # published meanwhile, revoked, removed
    key: Key = binding.key
    if key.revoked or key.blocked or key.fingerprint != row.params["fingerprint"]:
        return None
    nonce = tokens.issue(VerificationToken.Purpose.WKS, key, binding.address)
    made.append(VerificationToken.hash(nonce))
    subject, text = _render(row, "request", {"address": binding.address}, signer)
    wks = (
        "type: confirmation-request\n"
        f"sender: {row.params['sender']}\n"
        f"address: {binding.address}\n"
        f"fingerprint: {key.fingerprint}\n"
        f"nonce: {nonce}\n"
    )
    armored = openpgp.encrypt(openpgp.load_stored(bytes(key.data)), wks.encode())
    fields: dict[str, Any] = {
        "from_email": row.params["sender"],
        "to": [row.address],
        "headers": {**headers, **DRAFT_HEADERS, "Wks-Phase": "confirm"},
    }
    if signer is not None:
        # Signed like every mail: the whole multipart/mixed, by the submission address's key.
        part = signed_mail.mixed_part(text, "application/vnd.gnupg.wks", armored)
        return signed_mail.signed(server_key.secret(signer), subject, text, part=part, **fields)
    return RequestMessage(subject, text, armored=armored, **fields)


def _explanation(params: dict[str, Any]) -> Any:
    """Lazy, so the template renders it in the mail's language."""
    reason = params.get("reason", "")
    return params.get("told") or REFUSALS.get(reason) or reason


def compose(row: OutboxMail, made: list[str], headers: dict[str, str]) -> EmailMessage | None:
    phase = row.params.get("phase")
    signer = _signer(row)
    if phase == "request":
        return _request(row, made, headers, signer)
    if phase == "published":
        subject, body = _render(row, "published", {"address": row.address}, signer)
        phase_headers = {"Wks-Phase": "done"}
    else:
        subject, body = _render(row, "refused", {"reason": _explanation(row.params)}, signer)
        phase_headers = {"Wks-Phase": "error"}
    sender = row.params.get("sender") or None
    fields: dict[str, Any] = {
        "from_email": sender,
        "to": [row.address],
        "headers": {**headers, **DRAFT_HEADERS, **phase_headers},
    }
    if signer is None:
        return EmailMessage(subject, body, **fields)
    # Signed like every other mail, by the key of the address it comes from.
    return signed_mail.signed(server_key.secret(signer), subject, body, **fields)
