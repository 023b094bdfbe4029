"""Lookups from a real streaming replica, writes and confirmations on the primary.

Two PostgreSQL clusters of the test's own: a primary, and a hot standby
made from it with `pg_basebackup -R`; gunicorn runs the application with
DATABASE_URL at the primary and DATABASE_REPLICA_URL at the standby. Replay
on the standby is paused to make the replica visibly behind: what a lookup
answers then shows which server it read. The router's rules are also
tested in-process (keys.replica).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.db import DEFAULT_DB_ALIAS, transaction

from keys import replica
from keys.models import Key, Source

from .conftest import free_port
from .stack import ROOT, OwnPostgres, _as_postgres, _pg_bin, wait_for


def _dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://")


def _one(url: str, sql: str, params: tuple[object, ...] = ()) -> Any:
    with psycopg.connect(_dsn(url), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


class Standby(OwnPostgres):
    """A hot standby of `primary`, streaming from it (started, stopped and
    removed as an OwnPostgres; max_connections equal to the primary's)."""

    def __init__(self, primary: OwnPostgres) -> None:
        self._place("ks-standby-")
        subprocess.run(
            _as_postgres([_pg_bin("pg_basebackup"), "-R", "-X", "stream", "-c", "fast", "-D", str(self.data),
                          "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start()
        wait_for(lambda: _one(self.url, "SELECT pg_is_in_recovery()") is True, 30, "the standby")

    def pause(self) -> None:
        _one(self.url, "SELECT pg_wal_replay_pause()")
        wait_for(lambda: _one(self.url, "SELECT pg_get_wal_replay_pause_state()") == "paused", 30, "pause")

    def resume(self) -> None:
        _one(self.url, "SELECT pg_wal_replay_resume()")

    def reads(self) -> int:
        """Rows this server returned to its clients so far (its own counter)."""
        return int(_one(self.url, "SELECT tup_returned FROM pg_stat_database WHERE datname = 'keyserver'"))


class ReplicatedSite:
    def __init__(self, var: Path) -> None:
        self.var = var
        self.web: subprocess.Popen | None = None
        self.standby: Standby | None = None
        self.primary = OwnPostgres()
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        var = self.var
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "REDIS"))}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "attester.settings",
                "VAR_DIR": str(var),
                "DATABASE_URL": self.primary.url,
                "SITE_URL": self.url,
                "SECRET_KEY": "replica-tests-" + "x" * 40,
                "PUBLISH_DIR": "",
                "CONN_MAX_AGE": "60",
            }
        )
        for command in (["migrate", "--noinput"], ["createcachetable"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, check=True,
                           capture_output=True)  # fmt: skip
        self.standby = Standby(self.primary)
        self.env["DATABASE_REPLICA_URL"] = self.standby.url
        self.log = open(var / "web.log", "ab")  # noqa: SIM115
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "attester.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "1"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: requests.get(f"{self.url}/healthz", timeout=1).ok, 30, "gunicorn")

    def close(self) -> None:
        """Whatever was started, also after a failed start."""
        if self.web is not None:
            self.web.terminate()
            self.web.wait(timeout=30)
            self.log.close()
        if self.standby is not None:
            self.standby.remove()
        self.primary.remove()

    def link(self, address: str) -> str:
        for path in sorted((self.var / "mail").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True):
            for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
                message = email.message_from_bytes(chunk.strip())
                if address not in str(message["To"]):
                    continue
                for part in message.walk():
                    if part.get_content_type() == "text/plain":
                        text = bytes(part.get_payload(decode=True)).decode()
                        found = re.search(r"https?://\S+/verify/[A-Za-z0-9_-]+", text)
                        if found:
                            return found.group(0)
        raise AssertionError(f"no mail to {address}")


@pytest.fixture(scope="module")
def site() -> Iterator[ReplicatedSite]:
    var = Path(tempfile.mkdtemp(prefix="ks-replica-"))
    built = ReplicatedSite(var)
    try:
        yield built
    finally:
        built.close()
        shutil.rmtree(var, ignore_errors=True)


def _key_on(url: str, fingerprint: str) -> bool:
    return bool(_one(url, "SELECT count(*) FROM keys_key WHERE fingerprint = %s", (fingerprint,)))


def _published_on(url: str, address: str) -> bool:
    sql = "SELECT count(*) FROM keys_binding WHERE address = %s AND state = 'published'"
    return bool(_one(url, sql, (address,)))


def test_lookups_read_the_replica_writes_and_confirmations_the_primary(site, cast):
    base, standby, address = site.url, site.standby, "alice@example.org"
    assert _one(site.primary.url, "SHOW wal_level") == "replica"
    assert _one(standby.url, "SELECT pg_is_in_recovery()") is True

    # A write: the standby is read-only, so it can only have gone to the primary.
    upload = requests.post(f"{base}/vks/v1/upload", json={"keytext": cast.alice.text}, timeout=30)
    assert upload.status_code == 200, upload.text
    assert _key_on(site.primary.url, cast.alice.fingerprint)
    wait_for(lambda: _key_on(standby.url, cast.alice.fingerprint), 30, "the key replicated")

    # The standby stops replaying: from now on it is behind the primary.
    standby.pause()
    verify = requests.post(
        f"{base}/vks/v1/request-verify",
        json={"token": upload.json()["token"], "addresses": [address]},
        timeout=30,
    )
    assert verify.json()["status"][address] == "pending"
    link = site.link(address)

    # The confirmation link is read on the primary: the standby has not seen its token.
    browser = requests.Session()
    page = browser.get(link, timeout=30)
    assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text, page.text[:500]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    confirmed = browser.post(link, data={"csrfmiddlewaretoken": csrf}, headers={"Referer": link}, timeout=30)
    # The confirming request sees its own change at once.
    assert confirmed.status_code == 200, confirmed.text[:500]
    assert address in confirmed.text and cast.alice.fingerprint[-16:] in confirmed.text.replace(" ", "")
    assert _published_on(site.primary.url, address) and not _published_on(standby.url, address)

    # A lookup reads the standby: the address is not published there yet.
    reads = standby.reads()
    lookup = requests.get(f"{base}/vks/v1/by-email/{address}", timeout=30)
    assert lookup.status_code == 404
    by_fpr = requests.get(f"{base}/vks/v1/by-fingerprint/{cast.alice.fingerprint}", timeout=30)
    assert by_fpr.status_code == 200  # the key itself was replayed before the pause
    assert standby.reads() > reads  # the standby's own counter of returned rows moved

    # The browser that confirmed carries the pin: it reads the primary and sees its change.
    assert browser.cookies.get(replica.PIN_COOKIE) == "1"
    assert browser.get(f"{base}/vks/v1/by-email/{address}", timeout=30).status_code == 200

    standby.resume()
    wait_for(lambda: _published_on(standby.url, address), 30, "replay")
    assert requests.get(f"{base}/vks/v1/by-email/{address}", timeout=30).status_code == 200


def test_with_the_replica_down_lookups_read_the_primary_and_readyz_says_so(site, cast):
    if not _published_on(site.primary.url, "alice@example.org"):
        pytest.skip("needs the key the test above published")
    site.standby.stop()
    try:
        answer = requests.get(f"{site.url}/vks/v1/by-fingerprint/{cast.alice.fingerprint}", timeout=30)
        ready = requests.get(f"{site.url}/readyz", timeout=30)
    finally:
        site.standby.start()
    assert answer.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["degraded"] == {"replica": "unavailable"}
    wait_for(
        lambda: requests.get(f"{site.url}/readyz", timeout=30).json() == {"ready": True}, 30, "the replica"
    )


# -- The router's rules, in-process ---------------------------------------------


@pytest.fixture
def with_replica(monkeypatch):
    monkeypatch.setattr(replica, "has_replica", lambda: True)
    replica.set_pinned(False)
    yield
    replica.pin()


def test_without_a_replica_everything_reads_the_primary():
    replica.set_pinned(False)
    try:
        assert replica.read_alias() == DEFAULT_DB_ALIAS
    finally:
        replica.pin()


def test_a_thread_reads_the_primary_until_a_safe_request_unpins_it(monkeypatch):
    monkeypatch.setattr(replica, "has_replica", lambda: True)
    assert replica.pinned()  # tasks, commands, the shell
    assert replica.read_alias() == DEFAULT_DB_ALIAS
    seen = {}

    class Request:
        COOKIES: dict[str, str] = {}

        def __init__(self, method: str) -> None:
            self.method = method

    def view(request):
        seen[request.method] = replica.read_alias()
        from django.http import HttpResponse

        return HttpResponse()

    middleware: Any = replica.ReplicaMiddleware(view)
    get = middleware(Request("GET"))
    post = middleware(Request("POST"))
    assert seen == {"GET": replica.REPLICA, "POST": DEFAULT_DB_ALIAS}
    assert replica.PIN_COOKIE not in get.cookies and post.cookies[replica.PIN_COOKIE].value == "1"
    pinned_get = Request("GET")
    pinned_get.COOKIES = {replica.PIN_COOKIE: "1"}
    middleware(pinned_get)
    assert seen["GET"] == DEFAULT_DB_ALIAS
    assert replica.pinned()  # after the request, the thread is pinned again


@pytest.mark.django_db(transaction=True)  # no test transaction around it
def test_writes_pin_and_transactions_read_the_primary(with_replica):
    router = replica.PrimaryReplicaRouter()
    assert router.db_for_read(Key) == replica.REPLICA
    assert router.db_for_read(Source) == replica.REPLICA
    from django.contrib.sessions.models import Session

    assert router.db_for_read(Session) == DEFAULT_DB_ALIAS  # a session just written must be read
    with transaction.atomic():
        assert router.db_for_read(Key) == DEFAULT_DB_ALIAS
        assert replica.read_alias() == DEFAULT_DB_ALIAS
    assert router.db_for_read(Key) == replica.REPLICA
    with replica.primary():
        assert router.db_for_read(Key) == DEFAULT_DB_ALIAS
    assert router.db_for_read(Key) == replica.REPLICA
    assert router.db_for_write(Key) == DEFAULT_DB_ALIAS
    assert router.db_for_read(Key) == DEFAULT_DB_ALIAS  # the rest of the request sees the write
    assert not router.allow_migrate(replica.REPLICA, "keys") and router.allow_migrate(
        DEFAULT_DB_ALIAS, "keys"
    )
