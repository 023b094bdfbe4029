"""What the Web Key Service needs of the OpenPGP library: keys of its own,
decrypting a submission with the submission address's secret key.

Encrypting to a certificate is `reading.encrypt`. Errors come back as
`WksCryptoError` with a short reason, never the library's backtrace.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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


def decrypt(secret: bytes, message: bytes) -> bytes:
    """The plaintext of `message` (armored or binary), decrypted with `secret`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tsk = pysequoia.Tsk.from_bytes(secret)
        plaintext = pysequoia.decrypt(message, decryptor=tsk.decryptor(None)).bytes
        return bytes(plaintext or b"")
    except Exception as exc:  # the library raises RuntimeError/ValueError/TypeError alike
        raise WksCryptoError(str(exc).split("\n", 1)[0][:200]) from None
