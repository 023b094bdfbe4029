"""Certificates made on the spot with pysequoia: fast, and able to carry
user IDs GnuPG refuses to make (control characters)."""

from __future__ import annotations

import warnings
from typing import Any


def make_cert(*uids: str) -> Any:
    """A fresh certificate (secret parts kept, for adding user IDs later)."""
    import pysequoia

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cert = pysequoia.Cert.generate(uids[0])
    return with_user_ids(cert, *uids[1:])


def with_user_ids(cert: Any, *uids: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for uid in uids:
            cert = cert.add_user_id(uid, cert.secrets.certifier())
    return cert


def public_key(*addresses: str) -> str:
    """The armored public part of a fresh key with one user ID per address."""
    return str(make_cert(*(f"Test <{a}>" for a in addresses)))
