"""What the Web Key Service needs of the OpenPGP library: keys of its own,
decrypting a submission with the submission address's secret key.

Encrypting to a certificate is `reading.encrypt`. Errors come back as
`WksCryptoError` with a short reason, never the library's backtrace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pysequoia


class WksCryptoError(Exception):
    """A message that cannot be decrypted (not to us, damaged, not OpenPGP)."""


@dataclass(frozen=True)
class GeneratedKey:
    fingerprint: str
    public: bytes  # binary certificate
    secret: bytes  # binary transferable secret key (TSK), unprotected


def generate(user_id: str) -> GeneratedKey:
    """A new v4 key (certification, signing and encryption keys) for `user_id`."""
    tsk = pysequoia.Tsk.generate(user_id=user_id)
    cert = tsk.extract_certificate()
    return GeneratedKey(fingerprint=cert.fingerprint.upper(), public=bytes(cert), secret=bytes(tsk))


# What a decryption may cost: its output (a MIME entity holding a key or a
# short response) and its time. A compressed message unpacks up to a
# thousand times its size; the child stops at these.
DECRYPT_SECONDS = 20
DECRYPT_MEMORY = 1024 * 1024 * 1024
CHILD = Path(__file__).with_name("decrypt_child.py")


def decrypt(secret: bytes, message: bytes, limit: int = 4 * 1024 * 1024) -> bytes:
    """The plaintext of `message` (armored or binary), decrypted with `secret`,
    at most `limit` bytes: decrypted in a child process that caps its own
    file size and memory (keys/openpgp/decrypt_child.py) and is given
    DECRYPT_SECONDS. The secret goes to it on standard input, never into a file."""
    with tempfile.TemporaryDirectory(prefix="wks-") as work:
        encrypted, plain = Path(work, "message"), Path(work, "plain")
        encrypted.write_bytes(message)
        try:
            done = subprocess.run(
                [sys.executable, str(CHILD), str(limit), str(DECRYPT_MEMORY), str(encrypted), str(plain)],
                input=secret,
                capture_output=True,
                timeout=DECRYPT_SECONDS,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except subprocess.TimeoutExpired:
            raise WksCryptoError(f"decrypting took longer than {DECRYPT_SECONDS} s") from None
        size = plain.stat().st_size if plain.exists() else 0
        if size > limit:
            raise WksCryptoError(f"the decrypted message is larger than {limit} bytes")
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise WksCryptoError(reason[-1][:200] if reason else f"decryption failed ({done.returncode})")
        return plain.read_bytes()
