"""The front server (deploy/nginx) with a real nginx in front of the live
application: the same bytes and headers on every lookup path, gpg and sq
round trips through it, slow clients, the body cap and the lookup limit."""

from __future__ import annotations

import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from keys.identifiers import wkd_hash

from .front import Front, readable_dir
from .test_gpg_e2e import confirm

pytestmark = pytest.mark.django_db(transaction=True)
IGNORED = {"date", "server", "connection", "keep-alive", "transfer-encoding"}


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = readable_dir("ks-front.")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def app(live_server, settings, smtp, scratch):
    settings.PUBLISH_DIR = str(scratch / "public")
    settings.WKD_DOMAINS = ["example.org"]
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "example.org", "openpgpkey.example.org"]
    settings.SERVE_LOOKUP_RATE_EXEMPT = ["127.0.0.1"]
    return {"url": f"http://127.0.0.1:{urlparse(live_server.url).port}", "smtp": smtp}


@pytest.fixture
def front(app, settings, scratch) -> Iterator[Front]:
    server = Front(scratch / "nginx", app["url"].removeprefix("http://"))
    settings.SITE_URL = server.url
    yield server
    server.stop()


def publish(front: Front, smtp, armored: bytes, address: str) -> str:
    upload = requests.post(f"{front.url}/vks/v1/upload", json={"keytext": armored.decode()}, timeout=10)
    assert upload.status_code == 200, upload.text
    answer = upload.json()
    requests.post(
        f"{front.url}/vks/v1/request-verify",
        json={"token": answer["token"], "addresses": [address]},
        timeout=10,
    )
    confirm(smtp.link(address))
    return answer["key_fpr"]


def shape(response: requests.Response) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers; a page's CSRF token and cookie as placeholders."""
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in IGNORED}
    # A fresh id per request, from nginx ($request_id) or the application alike.
    assert re.fullmatch(r"[0-9a-f]{32}", headers.pop("x-request-id", "")), response.url
    if "set-cookie" in headers:
        # The token is random and its expiry a date to the second: two requests may straddle one.
        cookie = re.sub(r"csrftoken=[^;]+", "csrftoken=TOKEN", headers["set-cookie"])
        headers["set-cookie"] = re.sub(r"expires=[^;]+", "expires=DATE", cookie)
    body = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"CSRF", response.content)
    return response.status_code, body, headers


def lookup_paths(fpr: str, address: str) -> list[str]:
    local, domain = address.split("@")
    return [
        f"/pks/lookup?op=get&options=mr&search=0x{fpr}",
        f"/pks/lookup?op=get&options=mr&search=0x{fpr[-16:]}",
        f"/pks/lookup?op=get&options=mr&search={fpr.lower()}",
        f"/pks/lookup?op=get&options=mr&search={address}",
        f"/pks/lookup?op=get&options=mr&search={local.upper()}@{domain}",
        f"/pks/lookup?op=get&options=mr&exact=on&search=Some+Name+%3C{local}%40{domain}%3E",
        f"/pks/lookup?op=index&options=mr&fingerprint=on&search={address}",
        f"/pks/lookup?op=vindex&options=mr&search={address}",
        f"/vks/v1/by-fingerprint/{fpr}",
        f"/vks/v1/by-keyid/{fpr[-16:]}",
        f"/vks/v1/by-email/{address}",
        f"/vks/v1/by-email/{local}%40{domain}",
        f"/pub/{address}",
        f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}?l={local}",
        # Not in the tree: the application answers, through the front server.
        f"/pks/lookup?op=index&search={address}",
        f"/pub/{fpr[-16:]}",
        "/pks/lookup?op=get&search=nobody@example.org",
        "/pks/lookup?op=get&search=0x1234ABCD",
        f"/vks/v1/by-fingerprint/{'0' * 40}",
        "/pks/lookup?op=stats",
    ]


def test_every_lookup_answers_the_same_through_the_front_server(front, app):
    fpr = publish(front, app["smtp"], open_fixture("alice.asc"), "alice@example.org")
    for path in lookup_paths(fpr, "alice@example.org"):
        host = {"Host": "openpgpkey.example.org"} if "well-known" in path else {}
        for method in (requests.get, requests.head):
            through = method(front.url + path, headers=host, timeout=10)
            direct = method(app["url"] + path, headers=host, timeout=10)
            assert shape(through) == shape(direct), (method.__name__, path)
    # The published answers came from the files, not the application.
    public = front.run_dir.parent / "public"
    tree_file = next(p for p in public.rglob(fpr) if p.parent.parent == public / "fpr")
    tree_file.write_bytes(b"from the file\n")
    assert requests.get(f"{front.url}/vks/v1/by-fingerprint/{fpr}", timeout=10).content == b"from the file\n"


def test_the_front_server_revalidates_like_the_application(front, app):
    fpr = publish(front, app["smtp"], open_fixture("bob.asc"), "bob@example.net")
    path = f"/pks/lookup?op=get&options=mr&search=0x{fpr}"
    first = requests.get(front.url + path, timeout=10)
    for base in (front.url, app["url"]):
        again = requests.get(base + path, headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
        assert again.status_code == 304, base
        since = requests.get(
            base + path, headers={"If-Modified-Since": first.headers["Last-Modified"]}, timeout=10
        )
        assert since.status_code == 304, base


def open_fixture(name: str) -> bytes:
    from .conftest import FIXTURES

    return (FIXTURES / name).read_bytes()


@pytest.mark.gpg
def test_gpg_round_trip_through_the_front_server(front, app, gpg_factory):
    hkp = f"hkp://127.0.0.1:{front.port}"
    owner = gpg_factory(hkp)
    fpr = owner.generate("Nina Nginx <nina@example.org>")
    assert b"sending key" in owner.run("--send-keys", fpr).stderr
    confirm(app["smtp"].link("nina@example.org"))

    reader = gpg_factory(hkp)
    reader.run("--recv-keys", fpr)
    assert "Nina Nginx <nina@example.org>" in reader.colons(fpr)
    found = gpg_factory(hkp).run("--with-colons", "--search-keys", "nina@example.org", check=False)
    assert f"pub:{fpr}:" in found.stdout.decode()
    locator = gpg_factory(hkp)
    located = locator.run(
        "--auto-key-locate", "clear,nodefault,keyserver", "--locate-external-keys", "nina@example.org"
    )
    assert fpr in located.stdout.decode().replace(" ", "")


@pytest.mark.sq
def test_sq_fetches_through_the_front_server(front, app, tmp_path, gpg_factory):
    if not shutil.which("sq"):
        pytest.fail("sq is not installed (apt-get install sq)")
    owner = gpg_factory()
    fpr = owner.generate("Sven Sq <sven@example.org>")
    publish(front, app["smtp"], owner.run("--armor", "--export", fpr).stdout, "sven@example.org")
    for query in (fpr, "sven@example.org"):
        result = subprocess.run(
            ["sq", "keyserver", "-p", "insecure", "--server", f"hkp://127.0.0.1:{front.port}", "get", query],
            capture_output=True,
            timeout=60,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stderr.decode()
        assert b"BEGIN PGP PUBLIC KEY BLOCK" in result.stdout


def _lookup_time(url: str) -> float:
    started = time.monotonic()
    assert requests.get(url, timeout=10).status_code == 200
    return time.monotonic() - started


def test_slow_clients_do_not_delay_a_lookup(front, app):
    """200 connections trickling their headers (slowloris) hold nginx
    connections, never an application worker."""
    fpr = publish(front, app["smtp"], open_fixture("carol.asc"), "carol@example.org")
    url = f"{front.url}/pks/lookup?op=get&options=mr&search=0x{fpr}"
    before = statistics.median(_lookup_time(url) for _ in range(7))
    slow = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", front.port), timeout=5)
            sock.sendall(b"GET /pks/lookup?op=get&search=carol@example.org HTTP/1.1\r\nHost: localhost\r\n")
            slow.append(sock)
        time.sleep(0.5)
        for sock in slow[::10]:
            sock.sendall(b"X-Trickle: 1\r\n")
        during = statistics.median(_lookup_time(url) for _ in range(7))
        # And a lookup the application answers (a miss), while they hang on.
        miss = requests.get(f"{front.url}/pks/lookup?op=get&search=nobody@example.org", timeout=10)
    finally:
        for sock in slow:
            sock.close()
    assert miss.status_code == 404
    print(f"lookup {before * 1000:.1f} ms before, {during * 1000:.1f} ms with 200 slow clients")
    assert during - before < 0.1


def test_bodies_above_the_cap_are_refused_by_the_front_server(front):
    huge = b"keytext=" + b"A" * (4 * 1024 * 1024)
    answer = requests.post(
        f"{front.url}/pks/add",
        data=huge,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert answer.status_code == 413
    assert "too large" in answer.text
    # Just above the application's own limit: its 413, in the protocol's format.
    from django.conf import settings

    near = b'{"keytext": "' + b"A" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 100 * 1024) + b'"}'
    vks = requests.post(
        f"{front.url}/vks/v1/upload", data=near, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert vks.status_code == 413
    assert "error" in vks.json()


def test_lookups_are_rate_limited_per_client(app, settings, scratch):
    settings.SERVE_LOOKUP_RATE = "1r/m"
    settings.SERVE_LOOKUP_RATE_EXEMPT = []
    server = Front(scratch / "limited", app["url"].removeprefix("http://"))
    try:
        with requests.Session() as session:
            codes = [
                session.get(
                    f"{server.url}/pks/lookup?op=get&search=nobody@example.org", timeout=10
                ).status_code
                for _ in range(215)
            ]
    finally:
        server.stop()
    assert codes[:200] == [404] * 200  # the burst passes
    assert 429 in codes[200:]
    assert "limiting requests" in server.error_log()


def test_final_misses_are_answered_by_the_front_server_as_the_application_would(front, app, settings):
    """No upstream source: a miss is final, and nginx answers it (flags in the tree)."""
    from django.core.management import call_command

    call_command("materialize", "--quiet")
    tree = front.run_dir.parent / "public"
    assert (tree / ".final-misses-id").exists() and (tree / ".final-misses-email").exists()
    misses = [
        "/pks/lookup?op=get&options=mr&search=nobody@example.org",
        "/pks/lookup?op=index&options=mr&search=nobody@example.org",
        f"/pks/lookup?op=get&options=mr&search=0x{'A' * 40}",
        f"/pks/lookup?op=get&options=mr&search=0x{'B' * 16}",
        f"/vks/v1/by-fingerprint/{'C' * 40}",
        "/vks/v1/by-email/nobody@example.org",
        "/pub/nobody@example.org",
        f"/.well-known/openpgpkey/example.org/hu/{wkd_hash('nobody@example.org')}",
    ]
    languages = [{}, {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}, {"Accept-Language": "fr, en;q=0.3"}]
    languages.append({"Cookie": "django_language=de", "Accept-Language": "en"})
    for path in misses:
        for headers in languages:
            if "well-known" in path:
                headers = {**headers, "Host": "openpgpkey.example.org"}
            through = requests.get(front.url + path, headers=headers, timeout=10)
            direct = requests.get(app["url"] + path, headers=headers, timeout=10)
            assert through.status_code == 404, path
            assert shape(through) == shape(direct), (path, headers)
            assert (
                "server" not in {k.lower() for k in through.headers} or through.headers["Server"] == "nginx"
            )


def test_a_stored_key_without_a_confirmed_address_is_left_to_the_application(front, app):
    from django.core.management import call_command

    requests.post(f"{front.url}/pks/add", data={"keytext": open_fixture("bob.asc")}, timeout=10)
    call_command("materialize", "--quiet")
    fpr = "7C631D067EF61DF1967D5CDDBCEB415D6D114CE5"
    hkp = requests.get(f"{front.url}/pks/lookup?op=get&options=mr&search=0x{fpr}", timeout=10)
    assert hkp.status_code == 404 and "no confirmed address" in hkp.text
    assert requests.get(f"{front.url}/vks/v1/by-fingerprint/{fpr}", timeout=10).status_code == 200
    pub = requests.get(f"{front.url}/pub/{fpr}", timeout=10)
    assert pub.status_code == 404 and "no confirmed address" in pub.text
    assert requests.get(f"{front.url}/key/{fpr}", timeout=10).status_code == 200


def test_with_an_upstream_source_misses_go_to_the_application(front, app, settings):
    from django.core.management import call_command

    from keys.models import Source

    call_command("materialize", "--quiet")
    tree = front.run_dir.parent / "public"
    Source.objects.create(name="peer", kind="hkp", url="http://192.0.2.1:9", timeout=0.5)
    assert not (tree / ".final-misses-id").exists()  # cleared at once by the change of sources
    call_command("materialize", "--quiet")
    assert not (tree / ".final-misses-id").exists()
    settings.FEDERATION_ALLOWED_NETWORKS = []
    answer = requests.get(f"{front.url}/pks/lookup?op=get&options=mr&search=nobody@example.org", timeout=10)
    assert answer.status_code == 404
    assert Source.objects.get().last_error  # the application asked the source
