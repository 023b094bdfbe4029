"""The server's own secret key: made, certified by its predecessor, signing.

Everything here handles a transferable secret key (TSK) that this server
made itself, never an upload: `generate` makes one, `public_part` strips it
to the certificate, `certify` has the old key certify the new key's user ID
(a third-party certification, signature type 0x10 to 0x13 of RFC 9580,
5.2.1, made by the old primary key), and `sign_detached` makes the detached
signature of PGP/MIME (RFC 3156, 5). Secret material never leaves this
package except as the bytes the caller stores encrypted.
"""

from __future__ import annotations

import pysequoia

# The names an operator may give SERVER_KEY_ALGORITHM.
SUITES = {
    "ed25519": pysequoia.CipherSuite.Cv25519,
    "ed448": pysequoia.CipherSuite.Cv448,
    "p256": pysequoia.CipherSuite.P256,
    "p384": pysequoia.CipherSuite.P384,
    "rsa3072": pysequoia.CipherSuite.RSA3k,
    "rsa4096": pysequoia.CipherSuite.RSA4k,
}


class SigningError(Exception):
    """The server's own key could not be read or used."""


def generate(user_id: str, algorithm: str = "ed25519") -> bytes:
    """A new TSK (binary): a certification-only primary key, a signing and
    an encryption subkey, one user ID, no expiry (it is rotated by hand)."""
    if algorithm not in SUITES:
        raise SigningError(f"unknown key algorithm {algorithm!r}; one of {', '.join(SUITES)}")
    suite = SUITES[algorithm]
    return bytes(pysequoia.Tsk.generate(user_id, cipher_suite=suite, profile=pysequoia.Profile.RFC4880))


def _tsk(data: bytes) -> pysequoia.Tsk:
    try:
        return pysequoia.Tsk.from_bytes(data)
    except Exception as exc:
        raise SigningError(f"not a usable secret key: {str(exc).splitlines()[0]}") from None


def public_part(tsk: bytes) -> bytes:
    """The certificate of a TSK (binary), without any secret material."""
    return bytes(_tsk(tsk).extract_certificate())


def fingerprint(tsk_or_cert: bytes) -> str:
    """The primary key's fingerprint, upper-case hex."""
    return str(pysequoia.Cert.from_bytes(tsk_or_cert).fingerprint).upper()


def certify(certifier_tsk: bytes, cert: bytes, user_id: str) -> bytes:
    """`cert` with `user_id` certified by the primary key of `certifier_tsk`
    (binary). The user ID must be the one the certificate already binds:
    Sequoia merges the new signature into that user ID's signatures."""
    certifier = _tsk(certifier_tsk).certifier()
    return bytes(pysequoia.Cert.from_bytes(cert).add_user_id(user_id, certifier))


def sign_detached(tsk: bytes, data: bytes) -> bytes:
    """An armored detached signature of `data` (a binary document, type
    0x00) by the TSK's signing subkey."""
    signed = pysequoia.sign(_tsk(tsk).signer(), data, mode=pysequoia.SignatureMode.DETACHED)
    return signed if isinstance(signed, bytes) else str(signed).encode("ascii")


def signature_hash(signature: bytes) -> str:
    """The hash algorithm a signature really uses, lower case ("sha512"),
    for the micalg parameter of multipart/signed (RFC 3156, 5)."""
    sig = pysequoia.Sig.from_bytes(signature)
    return str(sig.hash_algorithm).rsplit(".", 1)[-1].lower()


def armor_secret(tsk: bytes) -> str:
    """The TSK as an armored PRIVATE KEY BLOCK."""
    return str(_tsk(tsk))
