"""PGP/MIME signed mail (RFC 3156): the bytes signed are the bytes sent.

The text is put into a MIME part in canonical form: CRLF line ends and
quoted-printable (7-bit, lines of at most 76 characters, trailing white
space and a leading "From " encoded), so no SMTP hop or mbox has a reason
to change it (RFC 3156, 3). That part is signed as it is, and the message
is written from those same bytes: the multipart/signed body is kept as a
finished string, and Python's generator writes a multipart body given as
a string unchanged; only the line ends follow the backend (CRLF for SMTP,
which is what was signed; LF for the file backend, readable on disk).
"""

from __future__ import annotations

import secrets
from email import charset, generator
from email.message import Message
from io import BytesIO, StringIO
from typing import Any

from django.core.mail import EmailMessage
from django.template.loader import render_to_string

from .. import openpgp
from ..identifiers import group_fingerprint
from . import server_key

PREAMBLE = "This is an OpenPGP/MIME signed message (RFC 4880 and 3156)"


def _quoted_printable(text: str) -> str:
    body = charset.Charset("utf-8")
    body.body_encoding = charset.QP
    lines = text.replace("\r\n", "\n").split("\n")
    encoded = body.body_encode("\n".join(lines)) or ""
    # body_encode leaves "From " alone: mboxes would turn it into ">From ".
    out = ["=46rom" + line[4:] if line.startswith("From ") else line for line in encoded.split("\n")]
    return "\r\n".join(out)


def signed_part(text: str) -> bytes:
    """The text as a canonical MIME entity: its headers, a blank line, the body (CRLF)."""
    head = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
    return f"{head}\r\n{_quoted_printable(text)}".encode("ascii")


class _SignedMIME(Message):
    """A multipart/signed message whose body is a finished string (CRLF)."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self._crlf_body = body

    def _flatten(self, gen: generator.Generator, unixfrom: bool, linesep: str) -> None:
        self.set_payload(self._crlf_body.replace("\r\n", linesep))
        gen.flatten(self, unixfrom=unixfrom, linesep=linesep)

    # Django's backends call these with `linesep` (django.core.mail.message.MIMEMixin).
    def as_string(self, unixfrom: bool = False, linesep: str = "\n", **_: Any) -> str:  # type: ignore[override]
        out = StringIO()
        self._flatten(generator.Generator(out, mangle_from_=False), unixfrom, linesep)
        return out.getvalue()

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n", **_: Any) -> bytes:  # type: ignore[override]
        out = BytesIO()
        self._flatten(generator.BytesGenerator(out, mangle_from_=False), unixfrom, linesep)
        return out.getvalue()


class SignedEmailMessage(EmailMessage):
    """An EmailMessage that is sent PGP/MIME signed. `body` stays the plain
    text (what tests and the locmem backend read); `message()` gives the
    signed MIME message, its signed part made once, when it was signed."""

    def __init__(self, *args: Any, part: bytes, signature: bytes, micalg: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signed_part = part
        self.signature = signature
        self.micalg = micalg

    def message(self) -> Message:
        plain = super().message()  # the headers, checked and encoded by Django
        boundary = f"=-signed-{secrets.token_hex(12)}"
        signature = self.signature.decode("ascii").replace("\r\n", "\n").strip("\n").replace("\n", "\r\n")
        body = (
            f"{PREAMBLE}\r\n--{boundary}\r\n{self.signed_part.decode('ascii')}\r\n--{boundary}\r\n"
            'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
            "Content-Description: OpenPGP digital signature\r\n"
            'Content-Disposition: attachment; filename="signature.asc"\r\n'
            f"\r\n{signature}\r\n--{boundary}--\r\n"
        )
        msg = _SignedMIME(body)
        for name, value in plain.items():
            if name.lower() not in ("content-type", "content-transfer-encoding"):
                msg[name] = value
        msg["Content-Type"] = (
            f'multipart/signed; micalg="pgp-{self.micalg}"; protocol="application/pgp-signature"; '
            f'boundary="{boundary}"'
        )
        return msg


def mixed_part(text: str, attachment_type: str, attachment: str) -> bytes:
    """A canonical multipart/mixed entity: the text (quoted-printable) and a
    7-bit attachment (an armored OpenPGP message, say), CRLF throughout."""
    boundary = f"=-mixed-{secrets.token_hex(12)}"
    body = attachment.replace("\r\n", "\n").strip("\n").replace("\n", "\r\n")
    return (
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n{signed_part(text).decode('ascii')}\r\n"
        f"--{boundary}\r\nContent-Type: {attachment_type}\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{body}\r\n--{boundary}--\r\n"
    ).encode("ascii")


def signed(
    tsk: bytes, subject: str, body: str, *, part: bytes | None = None, **kwargs: Any
) -> SignedEmailMessage:
    """The mail, its text (or the canonical MIME entity `part`, when given)
    signed with the secret key `tsk` (detached, RFC 3156, 5)."""
    part = signed_part(body) if part is None else part
    signature = openpgp.sign_detached(tsk, part)
    return SignedEmailMessage(
        subject, body, part=part, signature=signature, micalg=openpgp.signature_hash(signature), **kwargs
    )


def with_note(key: server_key.ServerKey, body: str, context: dict[str, Any]) -> str:
    """`body` with its closing note: which key signs it and how to check it
    (in the language active now)."""
    note = {
        **context,
        "server_fingerprint": group_fingerprint(key.fingerprint),
        "key_url": server_key.url_of(key),
    }
    return body.rstrip("\n") + "\n\n" + render_to_string("mail/signed_by.txt", note).strip("\n") + "\n"
