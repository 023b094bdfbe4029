"""Reading one inbound Web Key Service mail (keys.services.wks): its
addresses, its PGP/MIME structure, the decrypted MIME entity, and whether
it may be answered at all.

Whatever a mail holds, reading it ends in its parts or in a `Refused`,
never in another exception: the standard library's parsers recurse (a
`From:` of five hundred "(", a thousand nested multiparts) and raise
RecursionError, which is garbage like any other unreadable mail. An
address with control characters (a NUL cannot even be stored) is garbage
too, so nothing of it is written or answered.
"""

from __future__ import annotations

import email
import email.message
import email.utils

from ..errors import KeyserverError

WKS_TYPE = "application/vnd.gnupg.wks"
KEYS_TYPE = "application/pgp-keys"
ENCRYPTED_PROTOCOL = "application/pgp-encrypted"
# The decrypted MIME entity: gpg-wks-client sends one part; more is garbage.
MAX_MIME_DEPTH = 8
MAX_MIME_PARTS = 64
# Senders never answered (RFC 3834): bounces and the mail system's own.
ROBOTS = ("mailer-daemon", "postmaster")
BULK = ("bulk", "list", "junk")


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


def printable(text: str) -> str:
    """`text` with every control (non-printable) character as "?"."""
    return "".join(c if c.isprintable() else "?" for c in text)


def is_address(text: str) -> bool:
    """Something an answer may go to: an @, no control characters, no spaces."""
    return "@" in text and text.isprintable() and " " not in text


def parse(raw: bytes) -> email.message.Message:
    try:
        message = email.message_from_bytes(raw)
    except Exception as exc:  # the parser is lenient; anything it still raises is garbage
        raise Refused("garbage", type(exc).__name__) from None
    if not message.keys():
        raise Refused("garbage", "no mail headers")
    return message


def sender(message: email.message.Message) -> str:
    """The From address, lowercased ("" without one)."""
    try:  # "From: ((((...": the address parser recurses into comments
        found = email.utils.parseaddr(str(message.get("From", "")))[1].strip().lower()
    except Exception as exc:
        raise Refused("garbage", f"unreadable From header ({type(exc).__name__})") from None
    if found and not is_address(found):
        raise Refused("garbage", "a From address with control characters or spaces")
    return found


def recipient(message: email.message.Message, given: str, addresses: list[str]) -> str:
    """The submission address (of `addresses`) the mail is for: `given`, the
    envelope recipient, when known, else the first in To or Cc."""
    if given:
        candidates = [given]
    else:
        headers = [str(v) for v in message.get_all("To", []) + message.get_all("Cc", [])]
        try:
            candidates = [a for _, a in email.utils.getaddresses(headers)]
        except Exception as exc:
            raise Refused("garbage", f"unreadable To or Cc header ({type(exc).__name__})") from None
    for candidate in candidates:
        if candidate.strip().lower() in addresses:
            return candidate.strip().lower()
    raise Refused("wrong recipient", ", ".join(candidates)[:200] or "none")


def encrypted_body(message: email.message.Message) -> bytes:
    """The OpenPGP message of a PGP/MIME mail (RFC 3156, section 4). Any
    other mail is refused unanswered: spam would get answers."""
    if (
        message.get_content_type() != "multipart/encrypted"
        or str(message.get_param("protocol", "")).lower() != ENCRYPTED_PROTOCOL
    ):
        raise Refused("not encrypted", message.get_content_type())
    payload = message.get_payload()
    parts = [p for p in payload if isinstance(p, email.message.Message)] if isinstance(payload, list) else []
    if len(parts) != 2 or parts[0].get_content_type() != ENCRYPTED_PROTOCOL:
        raise Refused("not encrypted", "malformed multipart/encrypted")
    return payload_of(parts[1])


def parts(plaintext: bytes) -> list[email.message.Message]:
    """The parts of the decrypted MIME entity, walked without recursion,
    at most MAX_MIME_DEPTH deep and MAX_MIME_PARTS many."""
    try:
        inner = email.message_from_bytes(plaintext)
    except Exception as exc:  # RecursionError from a thousand nested multiparts
        raise Refused("garbage", f"unreadable MIME inside ({type(exc).__name__})", answer=True) from None
    found: list[email.message.Message] = []
    stack = [(inner, 0)]
    while stack:
        part, depth = stack.pop()
        found.append(part)
        if depth > MAX_MIME_DEPTH or len(found) > MAX_MIME_PARTS:
            raise Refused("garbage", "MIME nested too deep or too many parts inside", answer=True)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack += [(p, depth + 1) for p in reversed(payload) if isinstance(p, email.message.Message)]
    return found


def payload_of(part: email.message.Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def automatic(message: email.message.Message, from_address: str, envelope_sender: str | None) -> bool:
    """Mail that must not be answered (RFC 3834): a bounce (a null envelope
    sender), the mail system's own, a list's or bulk mail, a report."""
    if envelope_sender is not None:
        envelope = envelope_sender.strip().strip("<>").strip().lower()
        if not envelope or envelope.partition("@")[0] in ROBOTS:
            return True
    if from_address.partition("@")[0] in ROBOTS:
        return True
    return (
        str(message.get("Auto-Submitted", "no")).strip().lower() != "no"
        or str(message.get("Precedence", "")).strip().lower() in BULK
        or message.get("List-Id") is not None
        or message.get_content_type() == "multipart/report"
    )
