"""Published answers as files, for a front server to serve without the application.

Under PUBLISH_DIR (default var/public/) the tree holds the exact bytes each
lookup answers for published keys (keys.services.answers computes them for
the views too):

    fpr/<2>/<FPR>           HKP get and VKS by-fingerprint, primary and subkey fingerprints
    keyid/<2>/<KEYID>       HKP get and VKS by-keyid (every key sharing the id, one block)
    email/<domain>/<local>  HKP get and VKS by-email by address (every published key)
    email-fpr/<d>/<local>   the first key's fingerprint (VKS names the download after it)
    index/<domain>/<local>  HKP index and vindex with options=mr
    pub/<domain>/<local>    the Attester's GET /pub/<address>
    wkd/<domain>/<hash>     WKD, for the domains in WKD_DOMAINS
    level/<kind>/...        the Key-Validation header of the answers at <kind>/...
                            (fpr, keyid, email: also for index and pub, wkd)

Address path parts keep a-z, 0-9 and `._+-`; every other byte is %XX
(uppercase hex), so no address can name a path outside its directory. A
file's mtime is the time its answer last changed, so the front server's
Last-Modified and ETag ("<mtime hex>-<size hex>", as nginx makes it) equal
the application's. Cached upstream keys, misses and everything else are
never written: the front server passes them to the application. The front
server serves an answer only with its level file (written before it, removed
after it), so every answer carries the header the application would send.

How a change reaches the files (the publication owner calls `changed`):

1. In the transaction of the change: one change-log row (PublishedChange),
   and the affected files are removed at once, so from the moment the
   change commits nothing stale is served from a file (a missing file falls
   through to the application, which reads the database).
2. After the commit: the answers are computed from the database and written
   (a temporary file renamed into place), under a lock shared by every
   process of the node, reading inside the lock so the last writer wins.
3. Other web nodes follow the log by themselves (`follow`, run by
   `manage.py materialize --follow`); the tree is derived state, which
   `manage.py materialize` rebuilds from the database and `--check` compares.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from .. import clock
from ..identifiers import Query, domain_of, wkd_hash
from ..models import Binding, Key, PublishedChange, Subkey
from . import answers

_UNSAFE = re.compile(rb"[^a-z0-9._+-]")
_local = threading.local()


@dataclass
class Identifiers:
    """Everything a lookup may name: the answers one change touches."""

    fingerprints: set[str] = field(default_factory=set)
    keyids: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def update(self, other: Identifiers) -> None:
        self.fingerprints |= other.fingerprints
        self.keyids |= other.keyids
        self.addresses |= other.addresses

    def __bool__(self) -> bool:
        return bool(self.fingerprints or self.keyids or self.addresses)


@dataclass(frozen=True)
class File:
    data: bytes
    modified: datetime | None


def root() -> Path | None:
    """The tree, or None when PUBLISH_DIR is empty (no files are written)."""
    return Path(settings.PUBLISH_DIR) if settings.PUBLISH_DIR else None


# -- paths -------------------------------------------------------------------------------


def component(text: str) -> str:
    return _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], text.encode("utf-8")).decode("ascii")


def fingerprint_path(fpr: str) -> str:
    return f"fpr/{fpr[:2]}/{fpr}"


def keyid_path(keyid: str) -> str:
    return f"keyid/{keyid[:2]}/{keyid}"


def address_paths(address: str) -> dict[str, str]:
    local, domain = address.rsplit("@", 1)
    tail = f"{component(domain)}/{component(local)}"
    paths = {kind: f"{kind}/{tail}" for kind in ("email", "email-fpr", "index", "pub")}
    if domain in settings.WKD_DOMAINS:
        paths["wkd"] = f"wkd/{component(domain)}/{wkd_hash(address)}"
    return paths


def level_path(path: str) -> str:
    """Where the Key-Validation value of the answer at `path` is kept: one
    file per identifier (an address's index and pub answers share its email one)."""
    kind, _sep, rest = path.partition("/")
    return f"level/email/{rest}" if kind in ("index", "pub") else f"level/{path}"


def marker_paths(ids: Identifiers) -> list[str]:
    """The "ask the application" markers of identifiers (see `expected`)."""
    paths = [f"known/{fingerprint_path(f)}" for f in ids.fingerprints]
    paths += [f"known/{keyid_path(k)}" for k in ids.keyids]
    for address in ids.addresses:
        found = address_paths(address)
        paths.append(f"known/{found['email']}")
        if "wkd" in found:
            paths.append(f"known/{found['wkd']}")
    return paths


def paths_of(ids: Identifiers) -> list[str]:
    """The answers of the identifiers, then their level files."""
    paths = [fingerprint_path(f) for f in ids.fingerprints] + [keyid_path(k) for k in ids.keyids]
    for address in ids.addresses:
        paths += address_paths(address).values()
    return paths + list(dict.fromkeys(level_path(p) for p in paths if not p.startswith("email-fpr/")))


def _level(levels: str) -> File:
    return File(levels.encode("ascii"), None)


# -- the answers ---------------------------------------------------------------------------


# A marker: the identifier names something stored that the tree does not
# hold (a key without a confirmed address, a cached upstream key), so the
# front server must ask the application rather than answer a miss itself.
KNOWN = File(b"", None)


def _by_id(path: str, served: list[answers.Served]) -> dict[str, File | None]:
    """A file only when both HKP and VKS would answer these very bytes: every
    key in its published form, each with a user ID or revoked (rule 6)."""
    if not served:
        return {path: None, level_path(path): None, f"known/{path}": None}
    if not all(s.published for s in served) or len(answers.with_user_ids(served)) != len(served):
        return {path: None, level_path(path): None, f"known/{path}": KNOWN}
    return {
        level_path(path): _level(answers.level_header(served)[answers.LEVEL_HEADER]),
        path: File(answers.armored(served).encode("utf-8"), answers.modified(served)),
        f"known/{path}": None,
    }


def _address_files(address: str) -> dict[str, File | None]:
    paths = address_paths(address)
    served = answers.for_email(address)
    markers: dict[str, File | None] = {
        f"known/{p}": None for kind, p in paths.items() if kind in ("email", "wkd")
    }
    if served is not None and not all(s.published for s in served):
        markers[f"known/{paths['email']}"] = KNOWN  # cached upstream keys: the application's
    levels = {level_path(paths["email"])} | ({level_path(paths["wkd"])} if "wkd" in paths else set())
    if not served or not all(s.published for s in served):
        return {**{path: None for path in [*paths.values(), *levels]}, **markers}
    modified = answers.modified(served)
    per_address = answers.for_email(address, per_address=True) or []
    files: dict[str, File | None] = {
        level_path(paths["email"]): _level(answers.level_header(served)[answers.LEVEL_HEADER]),
        paths["email"]: File(answers.armored(served).encode("utf-8"), modified),
        paths["email-fpr"]: File(served[0].key.fingerprint.encode("ascii"), modified),
        paths["index"]: File(answers.mr_index(served, clock.now()).encode("utf-8"), modified),
        paths["pub"]: File(answers.attester_text(per_address).encode("utf-8"), modified),
    }
    if "wkd" in paths:
        found = answers.wkd(domain_of(address), wkd_hash(address))
        wkd_level = level_path(paths["wkd"])
        files[wkd_level] = _level(found.header[answers.LEVEL_HEADER]) if found.data else None
        files[paths["wkd"]] = File(found.data, found.modified) if found.data else None
    return {**files, **markers}


def expected(ids: Identifiers) -> dict[str, File | None]:
    """The content of each path the identifiers name (answers and markers); None: no file."""
    files: dict[str, File | None] = {}
    for fpr in ids.fingerprints:
        files.update(_by_id(fingerprint_path(fpr), answers.for_id(Query("fingerprint", fpr))))
    for keyid in ids.keyids:
        files.update(_by_id(keyid_path(keyid), answers.for_id(Query("keyid", keyid))))
    for address in ids.addresses:
        files.update(_address_files(address))
    return files


def identifiers_of(key: Key) -> Identifiers:
    """Every identifier whose answer depends on this key."""
    subkeys = list(Subkey.objects.filter(primary=key).values_list("fingerprint", "key_id"))
    return Identifiers(
        {key.fingerprint, *(f for f, _k in subkeys)},
        {key.key_id, *(k for _f, k in subkeys)},
        set(key.bindings.values_list("address", flat=True)),
    )


# -- writing -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(tree: Path) -> Iterator[None]:
    tree.mkdir(parents=True, exist_ok=True)
    with open(tree / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, file: File) -> bool:
    """Write atomically (temporary file, then rename); False if already so."""
    if file is KNOWN:
        if path.exists():
            return False
        _mark(path)
        return True
    mtime = int(file.modified.timestamp()) if file.modified else int(clock.now().timestamp())
    with contextlib.suppress(OSError):
        same_time = file.modified is None or int(path.stat().st_mtime) == mtime
        if same_time and path.read_bytes() == file.data:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(file.data)
    os.chmod(tmp, 0o644)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)
    return True


def apply(tree: Path, files: dict[str, File | None]) -> tuple[int, int]:
    """Make the tree hold `files`; (written, removed)."""
    written = removed = 0
    for rel, file in files.items():
        path = tree / rel
        if file is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        elif _write(path, file):
            written += 1
    return written, removed


def rewrite(tree: Path, ids: Identifiers) -> tuple[int, int]:
    """Recompute the identifiers' answers from the database and write them."""
    with _locked(tree):
        return apply(tree, expected(ids))


def _mark(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _remove(tree: Path, ids: Identifiers) -> None:
    """Mark the identifiers for the application first, then remove their
    answers: until the rewrite, the front server asks the application."""
    if not getattr(_local, "deferred", False):
        for rel in marker_paths(ids):
            _mark(tree / rel)
    for rel in paths_of(ids):
        with contextlib.suppress(FileNotFoundError):
            (tree / rel).unlink()


# Flags at the tree's root: a miss by key id or fingerprint (by address) is
# final when no enabled upstream source could answer it; the front server
# then answers it itself.
FINAL_MISSES = {"id": ".final-misses-id", "email": ".final-misses-email"}


def set_final_misses(tree: Path, *, ids: bool, emails: bool) -> None:
    for kind, final in (("id", ids), ("email", emails)):
        flag = tree / FINAL_MISSES[kind]
        if final:
            tree.mkdir(parents=True, exist_ok=True)
            flag.touch()
        else:
            flag.unlink(missing_ok=True)


def clear_final_misses(**_kwargs: object) -> None:
    """A source was added or changed: misses go to the application again at
    once (the follower sets the flags anew if they still hold)."""
    tree = root()
    if tree is not None:
        set_final_misses(tree, ids=False, emails=False)


# -- the hook of the publication owner -----------------------------------------------------


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """For bulk work (dump imports): affected files are still removed at
    once, but not rewritten after each commit, and no markers are written;
    the final-miss flags are lifted instead, so until `materialize`, the
    follower or the end of the import writes the tree, the front server
    asks the application for whatever it does not find."""
    tree = root()
    if tree is not None:
        set_final_misses(tree, ids=False, emails=False)
    _local.deferred = True
    try:
        yield
    finally:
        _local.deferred = False


def changed(key: Key, *, gone: Identifiers | None = None, ids: Identifiers | None = None) -> None:
    """Record, in the current transaction, that the key's answers changed.

    `gone`: identifiers the key no longer has (removed subkeys, or all of
    them when the key is deleted), which the log must name explicitly.
    `ids`: the key's identifiers, when the caller knows them (a new key).
    """
    rows = [PublishedChange(kind="key", value=key.fingerprint)] if key.pk else []
    if gone:
        rows += [PublishedChange(kind="fpr", value=f) for f in gone.fingerprints]
        rows += [PublishedChange(kind="keyid", value=k) for k in gone.keyids]
        rows += [PublishedChange(kind="email", value=a) for a in gone.addresses]
    PublishedChange.objects.bulk_create(rows)
    tree = root()
    if tree is None:
        return
    if ids is None:
        ids = identifiers_of(key) if key.pk else Identifiers()
    if gone:
        ids.update(gone)
    _remove(tree, ids)
    if not getattr(_local, "deferred", False):
        transaction.on_commit(partial(rewrite, tree, ids))


def identifiers_in(keys: QuerySet[Key]) -> Identifiers:
    """Every identifier of these keys, in three queries however many they are."""
    ids = Identifiers()
    for fpr, keyid in keys.values_list("fingerprint", "key_id"):
        ids.fingerprints.add(fpr)
        ids.keyids.add(keyid)
    for fpr, keyid in Subkey.objects.filter(primary__in=keys).values_list("fingerprint", "key_id"):
        ids.fingerprints.add(fpr)
        ids.keyids.add(keyid)
    ids.addresses.update(Binding.objects.filter(key__in=keys).values_list("address", flat=True))
    return ids


def mark_known(tree: Path, ids: Identifiers) -> None:
    """Markers for stored identifiers the tree holds no answer for."""
    for rel in marker_paths(ids):
        _mark(tree / rel)


def expand(kind: str, value: str) -> Identifiers:
    """The identifiers a change-log row names (a key: all of its current ones)."""
    if kind == "key":
        key = Key.objects.filter(fingerprint=value).first()
        return identifiers_of(key) if key else Identifiers({value})
    if kind == "fpr":
        return Identifiers(fingerprints={value})
    if kind == "keyid":
        return Identifiers(keyids={value})
    if kind == "email":
        return Identifiers(addresses={value})
    return Identifiers()  # a follower's start marker


def all_identifiers() -> Iterable[Identifiers]:
    """Per key, everything a lookup may name (for a full rebuild)."""
    for key in Key.objects.only("id", "fingerprint", "key_id").iterator(chunk_size=500):
        yield identifiers_of(key)
