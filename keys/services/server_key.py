"""The server's own OpenPGP keys: made on first need, stored sealed, published.

One active key per address the server sends from (DEFAULT_FROM_EMAIL, and
the addresses other parts own, such as a WKS submission address). A key is
made on the first call that needs it (a mail, the /about page, the
command), by whichever process gets there first: the partial unique
constraint on the active key of an address lets one insert win, and the
loser takes the winner's key.

The secret part (the binary TSK) is sealed with AES-GCM under a key derived
by HKDF-SHA256 from SECRET_KEY, with the fingerprint as associated data, so
a database dump alone does not reveal it and a sealed secret cannot be
moved to another row. With another SECRET_KEY the stored secret cannot be
opened: `rotate` then makes a new key (without the old key's
certification) and mail is held in the outbox until it has.

Each key is published for its address through the one import service and
the publication owner (validation `server_key`), so HKP, VKS and WKD serve
it like any proven key. The published form loses the predecessor's
certification (third-party signatures are never kept, publication rule 1);
`ServerKey.public` keeps it, and the /about page and `manage.py server_key
export` give that form out.
"""

from __future__ import annotations

import logging
import os
from email.utils import parseaddr
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction

from .. import clock, openpgp
from ..errors import InvalidEmail, KeyserverError
from ..identifiers import normalize_email
from ..models import Binding, ServerKey
from . import imports, publication
from .locking import locked_key

log = logging.getLogger("keyserver.server_key")
ACTOR = "server_key"
# Changing this string makes every stored secret unreadable: it versions the sealing.
_HKDF_INFO = b"keyserver server-key sealing v1"
_UNPUBLISHABLE = (Binding.State.REVOKED, Binding.State.REMOVED_BY_POLICY)


class ServerKeyUnreadable(Exception):
    """The stored secret cannot be opened: SECRET_KEY changed since it was sealed."""


def default_address() -> str:
    """The From address of every mail (DEFAULT_FROM_EMAIL without its name)."""
    return (parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or settings.DEFAULT_FROM_EMAIL).strip().lower()


def user_id(address: str) -> str:
    return f"{settings.SITE_NAME} <{address}>"


def current() -> ServerKey:
    """The active key of DEFAULT_FROM_EMAIL, made (and published) on first call."""
    return for_address(default_address())


def active(address: str) -> ServerKey | None:
    return ServerKey.objects.filter(address=address.strip().lower(), retired_at__isnull=True).first()


def for_address(address: str) -> ServerKey:
    """The active key of `address`, an address this server owns; made, stored
    and published (validation server_key) on first call."""
    address = address.strip().lower()
    return active(address) or _make(address)


def history(address: str | None = None) -> list[ServerKey]:
    """Every key of the address, newest first."""
    return list(ServerKey.objects.filter(address=address or default_address()).order_by("-created"))


# -- sealing ---------------------------------------------------------------------------


def _aead(secret_key: str | None = None) -> AESGCM:
    material = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        (secret_key if secret_key is not None else settings.SECRET_KEY).encode()
    )
    return AESGCM(material)


def _seal(tsk: bytes, fingerprint: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + _aead().encrypt(nonce, tsk, fingerprint.encode())


def secret(key: ServerKey) -> bytes:
    """The decrypted binary secret key (TSK) of `key`, for the OpenPGP seam."""
    sealed = bytes(key.sealed_secret)
    # Django's SECRET_KEY_FALLBACKS, the old keys of a SECRET_KEY rotation, open it too.
    for secret_key in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])):
        try:
            return _aead(secret_key).decrypt(sealed[:12], sealed[12:], key.fingerprint.encode())
        except InvalidTag:
            continue
    raise ServerKeyUnreadable(
        f"the secret of server key {key.fingerprint} cannot be opened with this SECRET_KEY; "
        "run `manage.py server_key rotate` to make a new one"
    )


def armored_secret(key: ServerKey) -> str:
    """The secret key, armored (`manage.py server_key export --secret`)."""
    return openpgp.armor_secret(secret(key))


def url_of(key: ServerKey) -> str:
    """Where the key is given out (`gpg --fetch-keys` takes it)."""
    url = f"{settings.SITE_URL}/about/server-key.asc"
    return url if key.address == default_address() else f"{url}?address={quote(key.address, safe='@')}"


def validation_of(key: ServerKey) -> str:
    """The Key-Validation of the key as given out: `server_key` while it is
    published for its address, else `none` (as a key page says)."""
    if key.key_id is None:
        return "none"
    published = Binding.objects.filter(key_id=key.key_id, address=key.address, state=Binding.State.PUBLISHED)
    return Binding.Validation.SERVER_KEY.value if published.exists() else "none"


def armored(key: ServerKey) -> str:
    """The public certificate as given out (with the predecessor's certification)."""
    return openpgp.armor(bytes(key.public))


# -- making, rotating, publishing ----------------------------------------------------


def _new_secret(address: str) -> tuple[bytes, bytes, str]:
    tsk = openpgp.generate_secret(user_id(address), settings.SERVER_KEY_ALGORITHM)
    return tsk, openpgp.public_part(tsk), openpgp.secret_fingerprint(tsk)


def _make(address: str) -> ServerKey:
    """Two steps in one transaction: insert the key (the constraint lets one
    of concurrent first calls win; the others take its key), publish it."""
    tsk, public, fingerprint = _new_secret(address)
    try:
        with transaction.atomic():
            row = _insert(address, tsk, public, fingerprint)
            _publish(row)
    except IntegrityError:
        winner = active(address)
        if winner is None:
            raise
        return winner
    log.info("made server key %s for %s", fingerprint, address)
    return row


def _insert(
    address: str, tsk: bytes, public: bytes, fingerprint: str, predecessor: ServerKey | None = None
) -> ServerKey:
    """The row of a new active key, its secret sealed."""
    return ServerKey.objects.create(
        address=address,
        fingerprint=fingerprint,
        public=public,
        sealed_secret=_seal(tsk, fingerprint),
        created=clock.now(),
        predecessor=predecessor,
    )


def rotate(address: str | None = None) -> tuple[ServerKey, ServerKey | None, bool]:
    """A new active key for the address: (new, old, certified).

    The old key certifies the new key's user ID (a third-party
    certification), so whoever trusts the old key can accept the new one;
    `certified` is False when there was no old key or its secret cannot be
    opened (SECRET_KEY changed). Then, in one transaction: retire the old
    key, insert the new one, unpublish the old key's address, publish the new.
    """
    address = (address or default_address()).strip().lower()
    tsk, public, fingerprint = _new_secret(address)
    certified = False
    previous = active(address)
    if previous is not None:
        try:
            public = openpgp.certify(secret(previous), public, user_id(address))
            certified = True
        except ServerKeyUnreadable as exc:
            log.warning("%s; the new key is not certified by it", exc)
    with transaction.atomic():
        old = ServerKey.objects.select_for_update().filter(address=address, retired_at__isnull=True).first()
        if old is not None and (previous is None or old.pk != previous.pk):
            certified = False  # another rotation came first; this one follows it uncertified
        if old is not None:
            old.retired_at = clock.now()
            old.save(update_fields=["retired_at"])
        row = _insert(address, tsk, public, fingerprint, predecessor=old)
        if old is not None and old.key_id is not None:
            with locked_key(old.key_id) as key:
                publication.unpublish(
                    key,
                    key.bindings.filter(address=address),
                    actor=ACTOR,
                    event="address_replaced",
                    detail=fingerprint,
                )
        _publish(row)
    log.info("rotated server key of %s to %s", address, fingerprint)
    return row, old, certified


def _publish(row: ServerKey) -> None:
    """Publish the key for its address: imported like any key, the address
    proven by being this server's own (validation server_key). An address
    that cannot be published (keyserver@localhost, a policy block) leaves
    the key unpublished but usable for signing."""
    try:
        address = normalize_email(row.address)
    except InvalidEmail:
        log.info("server key %s not published: %s is not a publishable address", row.fingerprint, row.address)
        return
    try:
        with transaction.atomic():
            imported = imports.import_keys(bytes(row.public), actor=ACTOR).keys[0].key
            # What verification.publish_proven does, without its mail (keys.services
            # stays acyclic: the mail composer needs this module).
            with locked_key(imported.pk) as key:
                binding = key.bindings.filter(address=address).exclude(state__in=_UNPUBLISHABLE).first()
                if binding is None or key.revoked or key.blocked:
                    raise KeyserverError(f"the key has no publishable user ID for {address}")
                publication.publish(key, binding, Binding.Validation.SERVER_KEY, actor=ACTOR)
    except KeyserverError as exc:
        log.warning("server key %s not published for %s: %s", row.fingerprint, address, exc.message)
        return
    row.key = key
    row.save(update_fields=["key"])
