"""Shared test parts: the named cast of certificates, a real SMTP sink, gpg homes.

Tests run on PostgreSQL (DATABASE_URL, default the local server) with Redis
as the cache; Celery tasks run eagerly unless a test starts a real worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import TypeVar

import pytest

from .signed_mail import mail_text

T = TypeVar("T")

FIXTURES = Path(__file__).parent / "fixtures"


def _manifest() -> dict[str, dict]:
    return json.loads((FIXTURES / "manifest.json").read_text())


@dataclass
class CastMember:
    name: str
    data: bytes
    fingerprint: str
    key_id: str
    subkeys: list[str]
    emails: list[str]

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class Cast:
    """The certificates in tests/fixtures, by file stem: cast.alice, cast["v6"]."""

    def __init__(self) -> None:
        self._manifest = _manifest()

    def __getitem__(self, name: str) -> CastMember:
        for suffix in (".asc", ".pgp"):
            path = FIXTURES / f"{name}{suffix}"
            if path.exists():
                meta = self._manifest.get(path.name, {})
                return CastMember(
                    name=name,
                    data=path.read_bytes(),
                    fingerprint=meta.get("fingerprint", ""),
                    key_id=meta.get("key_id", ""),
                    subkeys=meta.get("subkeys", []),
                    emails=meta.get("emails", []),
                )
        raise KeyError(name)

    def __getattr__(self, name: str) -> CastMember:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.fixture(scope="session")
def cast() -> Cast:
    return Cast()


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Rate-limit counters and the process's list of sources must not leak
    from one test into the next (a flushed table sends no delete signals)."""
    from django.core.cache import cache

    from keys.managers import SourceManager

    cache.clear()
    SourceManager.forget()
    yield
    cache.clear()
    SourceManager.forget()


@pytest.fixture(autouse=True)
def _real_clock() -> Iterator[None]:
    from keys import clock

    yield
    clock.set_now(None)


def at_once(function: Callable[[], T], threads: int) -> list[T]:
    """`function` run in `threads` threads let go together (a barrier), each
    on its own database connection, closed after; their results."""
    from django.db import connection

    start = threading.Barrier(threads)
    results: list[T] = []

    def one() -> None:
        start.wait()
        try:
            results.append(function())
        finally:
            connection.close()

    running = [threading.Thread(target=one) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return results


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------
# A real SMTP server (aiosmtpd) that keeps what it receives.


class SmtpSink:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        self.raw: list[bytes] = []  # as received, CRLF: signatures are checked on these
        self.fail_next = 0
        self.delay = 0.0  # seconds each message takes to accept, as a slow relay
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                if sink.delay:
                    await asyncio.sleep(sink.delay)
                with sink._lock:
                    if sink.fail_next > 0:
                        sink.fail_next -= 1
                        return "451 4.3.0 try again later"
                    sink.messages.append(message_from_bytes(envelope.content))
                    sink.raw.append(envelope.content)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["To"]]

    def raw_to(self, address: str) -> list[bytes]:
        return [raw for raw, m in zip(self.raw, self.messages, strict=True) if address in m["To"]]

    def link(self, address: str) -> str:
        """The confirmation link of the newest mail to `address`."""
        import re

        mails = self.to(address)
        assert mails, f"no mail to {address}"
        body = mail_text(mails[-1])
        match = re.search(r"https?://\S+/verify/[A-Za-z0-9_-]+", body)
        assert match, body
        return match.group(0)


@pytest.fixture
def smtp(settings) -> Iterator[SmtpSink]:
    sink = SmtpSink()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    yield sink
    sink.stop()


# ---------------------------------------------------------------------------
# GnuPG and sq as clients


class Gpg:
    """A throwaway GNUPGHOME (short path: the agent socket must fit)."""

    def __init__(self, keyserver: str | None = None) -> None:
        self.home = tempfile.mkdtemp(dir="/tmp", prefix="gpg.")
        os.chmod(self.home, 0o700)
        if keyserver:
            Path(self.home, "dirmngr.conf").write_text(f"keyserver {keyserver}\n")

    def run(self, *args: str, input: bytes | None = None, check: bool = True, timeout: int = 60):
        env = {**os.environ, "GNUPGHOME": self.home}
        result = subprocess.run(
            ["gpg", "--batch", "--no-tty", *args],
            input=input,
            capture_output=True,
            env=env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"gpg {args} failed: {result.stderr.decode(errors='replace')}")
        return result

    def generate(self, uid: str, algo: str = "future-default") -> str:
        """A new key without passphrase; returns its fingerprint (the newest key)."""
        self.run(
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-gen-key",
            uid,
            algo,
            "default",
            "never",
        )
        out = self.run("--with-colons", "--list-keys").stdout.decode().splitlines()
        primaries = [out[i + 1].split(":")[9] for i, line in enumerate(out) if line.startswith("pub:")]
        return primaries[-1]

    def fingerprint(self, who: str) -> str:
        out = self.run("--with-colons", "--list-keys", who).stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))

    def colons(self, *who: str) -> str:
        return self.run("--with-colons", "--list-keys", *who, check=False).stdout.decode()

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": self.home}, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def gpg_factory() -> Iterator:
    if not shutil.which("gpg"):
        pytest.fail("gpg is not installed (apt-get install gnupg dirmngr)")
    homes: list[Gpg] = []

    def make(keyserver: str | None = None) -> Gpg:
        home = Gpg(keyserver)
        homes.append(home)
        return home

    yield make
    for home in homes:
        home.close()


@pytest.fixture
def serve_raw() -> Iterator:
    """Start misbehaving or scripted TCP upstreams (tests/upstreams.py), closed after the test."""
    from . import upstreams

    servers = []

    def start(behaviour):
        server = upstreams.RawServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def scripted():
    """An HTTP upstream answering what a test scripts (tests/upstreams.py)."""
    from . import upstreams

    server = upstreams.Scripted()
    yield server
    server.close()
