"""TEMPORARY stand-in for the server key of issue 13 (branch `serverkey`).

Only the interface the Web Key Service uses: `for_address`, `ServerKey`,
`secret`. The secret keys are files under VAR_DIR/server-keys-standin/ so
that `manage.py wks_receive` and the server share them; the integrator
replaces this module with the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings

from .. import openpgp
from ..models import Binding
from . import imports, publication
from .locking import locked_key


@dataclass(frozen=True)
class ServerKey:
    address: str
    fingerprint: str
    public: bytes
    created: datetime


def _path(address: str) -> Path:
    return Path(settings.VAR_DIR) / "server-keys-standin" / f"{address}.tsk"


def for_address(address: str) -> ServerKey:
    address = address.lower()
    path = _path(address)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made = openpgp.generate(f"{settings.SITE_NAME} <{address}>")
        path.with_suffix(".pub").write_bytes(made.public)
        path.write_bytes(made.secret)
    public = path.with_suffix(".pub").read_bytes()
    info = openpgp.parse(public).certs[0]
    key = imports.import_keys(public, actor="server key").keys[0].key
    with locked_key(key.pk) as key:
        binding = key.bindings.get(address=address)
        if binding.state != Binding.State.PUBLISHED:
            publication.publish(key, binding, "server_key", actor="server key")
    return ServerKey(address=address, fingerprint=info.fingerprint, public=public, created=info.created)


def secret(key: ServerKey) -> bytes:
    return _path(key.address).read_bytes()
