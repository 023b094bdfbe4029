"""Checks of signed service mail with real gpg, for every mail kind's tests.

`assert_signed_by_server(raw)` takes a mail as the SMTP server received it
(bytes, CRLF) and checks it the way a mail client does (RFC 3156): it is
multipart/signed with protocol application/pgp-signature, the first part
(cut from the raw bytes, not re-serialised) is 7-bit with CRLF line ends,
and gpg, knowing only the server's public key, says the detached signature
over it is good, made by the active server key of the From address, with
the hash micalg names. It returns the text of the signed part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from email import message_from_bytes
from email.message import Message
from email.utils import parseaddr
from pathlib import Path

# RFC 9580, 9.5: hash algorithm numbers as gpg's VALIDSIG reports them.
HASHES = {"2": "sha1", "8": "sha256", "9": "sha384", "10": "sha512", "11": "sha224", "12": "sha3-256"}


def mail_text(message: Message) -> str:
    """The text of a mail, signed (multipart) or plain."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text/plain part")


def signed_parts(raw: bytes) -> tuple[Message, bytes, bytes]:
    """(the message, its signed part as sent, the signature) of a PGP/MIME mail."""
    message = message_from_bytes(raw)
    assert message.get_content_type() == "multipart/signed", message.get_content_type()
    assert message.get_param("protocol") == "application/pgp-signature"
    boundary = message.get_boundary()
    assert boundary
    body = raw[raw.index(b"\r\n\r\n") + 4 :]
    # RFC 2046, 5.1.1: the CRLF before a boundary belongs to the boundary.
    pieces = body.split(b"\r\n--" + boundary.encode())
    assert len(pieces) == 4 and pieces[3].startswith(b"--"), pieces
    part, signature_part = pieces[1], pieces[2]
    assert part.startswith(b"\r\n") and signature_part.startswith(b"\r\n")
    signature_entity = message_from_bytes(signature_part[2:])
    assert signature_entity.get_content_type() == "application/pgp-signature"
    signature = signature_entity.get_payload(decode=True)
    assert isinstance(signature, bytes)
    return message, part[2:], signature


def gpg_verify(public: bytes, part: bytes, signature: bytes) -> tuple[int, str]:
    """(gpg's exit code, its status lines) for `gpg --verify signature part`,
    in a throwaway GNUPGHOME that knows only `public`."""
    home = tempfile.mkdtemp(dir="/tmp", prefix="gpg.")
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": home}
    try:
        Path(home, "key.pgp").write_bytes(public)
        Path(home, "part").write_bytes(part)
        Path(home, "part.sig").write_bytes(signature)
        subprocess.run(
            ["gpg", "--batch", "--import", f"{home}/key.pgp"], env=env, check=True, capture_output=True
        )
        result = subprocess.run(
            ["gpg", "--batch", "--status-fd", "1", "--verify", f"{home}/part.sig", f"{home}/part"],
            env=env,
            capture_output=True,
        )
        return result.returncode, result.stdout.decode(errors="replace")
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)


def assert_signed_by_server(raw: bytes) -> str:
    """Assert that `raw` is signed by this server's active key for its From address."""
    from keys.services import server_key

    message, part, signature = signed_parts(raw)
    assert all(byte < 128 for byte in part), "the signed part is not 7-bit"
    assert b"\n" not in part.replace(b"\r\n", b""), "the signed part has a bare LF"
    assert max(len(line) for line in part.split(b"\r\n")) <= 78
    address = parseaddr(message["From"])[1]
    key = server_key.active(address)
    assert key is not None, f"no server key for {address}"
    code, status = gpg_verify(bytes(key.public), part, signature)
    assert code == 0, status
    valid = next(line.split() for line in status.splitlines() if line.startswith("[GNUPG:] VALIDSIG"))
    assert valid[-1] == key.fingerprint, (valid, key.fingerprint)  # the primary key's fingerprint
    assert message.get_param("micalg") == f"pgp-{HASHES[valid[9]]}", (message.get_param("micalg"), valid)
    return mail_text(message_from_bytes(part))
