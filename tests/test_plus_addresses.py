"""Addresses with `+` (name+tag@domain) on every lookup path.

GnuPG's dirmngr sends the `+` of a search as it is (`search=name+tag@domain`)
and, when it locates a key, as `%20`. Form decoding would read either as a
space; the server reads HKP's query string itself and a space inside an
address as the `+` it was.
"""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlparse

import pytest

from keys.identifiers import group_fingerprint

from .keyserver import Keyserver
from .test_gpg_e2e import confirm

pytestmark = pytest.mark.django_db(transaction=True)
ADDRESS = "pat+tag@example.org"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.fixture
def published(ks, cast, gpg_factory) -> str:
    owner = gpg_factory()
    fpr = owner.generate(f"Pat Plus <{ADDRESS}>")
    ks.publish(owner.run("--armor", "--export", fpr).stdout, ADDRESS)
    return fpr


@pytest.mark.parametrize(
    "query",
    [
        "op=get&options=mr&search=pat+tag@example.org",
        "op=get&options=mr&search=pat%2Btag%40example.org",
        "op=get&options=mr&exact=on&search=pat%20tag@example.org",
        "op=index&options=mr&fingerprint=on&search=pat+tag@example.org",
        "op=index&options=mr&search=Pat+Plus+%3Cpat+tag@example.org%3E",
        "op=vindex&options=mr&search=pat%2btag@example.org",
    ],
)
def test_hkp_finds_a_plus_address_however_the_plus_is_sent(client, published, query):
    answer = client.get(f"/pks/lookup?{query}")
    assert answer.status_code == 200, answer.content
    if "op=get" in query:
        assert b"BEGIN PGP PUBLIC KEY BLOCK" in answer.content
    else:
        assert f"pub:{published}:".encode() in answer.content
        assert b"uid:Pat Plus <pat+tag@example.org>" in answer.content


def test_a_plus_address_is_not_another_address(client, published):
    assert client.get("/pks/lookup?op=get&search=pattag@example.org").status_code == 404
    assert client.get("/pks/lookup?op=get&search=pat+other@example.org").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/vks/v1/by-email/pat+tag@example.org",
        "/vks/v1/by-email/pat%2Btag%40example.org",
        "/pub/pat+tag@example.org",
        "/pub/pat%2Btag@example.org",
        "/search?q=pat%2Btag%40example.org",  # what a browser's form sends
        "/search?q=pat+tag%40example.org",  # typed into the address bar
        "/fingerprint?email=pat%2Btag%40example.org",
    ],
)
def test_the_other_paths_find_a_plus_address(client, published, path):
    answer = client.get(path)
    assert answer.status_code == 200, answer.content
    if path.startswith(("/vks/", "/pub/")):
        assert b"BEGIN PGP PUBLIC KEY BLOCK" in answer.content
    else:
        assert group_fingerprint(published).encode() in answer.content


def test_the_attester_lookup_finds_a_plus_address(client, published):
    answer = client.post("/lookup/email", {"email": [ADDRESS]}, content_type="application/json")
    assert answer.json()["results"][0]["longid"] == published[-16:]


@pytest.fixture
def server(live_server, settings, smtp):
    port = urlparse(live_server.url).port
    settings.SITE_URL = f"http://127.0.0.1:{port}"
    return {"url": settings.SITE_URL, "hkp": f"hkp://127.0.0.1:{port}", "smtp": smtp}


@pytest.mark.gpg
def test_gpg_sends_searches_locates_and_receives_a_plus_address(server, gpg_factory):
    owner = gpg_factory(server["hkp"])
    fpr = owner.generate(f"Pat Plus <{ADDRESS}>")
    owner.run("--send-keys", fpr)
    confirm(server["smtp"].link(ADDRESS))

    searcher = gpg_factory(server["hkp"])
    found = searcher.run("--with-colons", "--search-keys", ADDRESS, check=False)
    assert f"pub:{fpr}:" in found.stdout.decode(), found.stderr.decode()
    assert "uid:Pat Plus <pat+tag@example.org>" in found.stdout.decode()

    locator = gpg_factory(server["hkp"])
    located = locator.run("--auto-key-locate", "clear,nodefault,keyserver", "--locate-external-keys", ADDRESS)
    assert fpr in located.stdout.decode().replace(" ", "")

    # Receiving the fingerprint the search showed.
    receiver = gpg_factory(server["hkp"])
    receiver.run("--recv-keys", fpr)
    assert f"Pat Plus <{ADDRESS}>" in receiver.colons(fpr)


@pytest.mark.parametrize("search", ["pat+tag@example.org", "pat%2Btag@example.org", "pat%20tag@example.org"])
def test_curl_gets_a_plus_address_with_each_encoding(server, gpg_factory, search):
    owner = gpg_factory(server["hkp"])
    owner.run("--send-keys", owner.generate(f"Pat Plus <{ADDRESS}>"))
    confirm(server["smtp"].link(ADDRESS))
    if not shutil.which("curl"):
        pytest.fail("curl is not installed (apt-get install curl)")
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            f"{server['url']}/pks/lookup?op=get&search={search}",
        ],
        capture_output=True,
        timeout=30,
    )
    body, _sep, status = result.stdout.decode().rpartition("\n")
    assert status == "200", body
    assert "BEGIN PGP PUBLIC KEY BLOCK" in body


def test_the_directory_check_reads_a_plus_address_as_it_is(client):
    fpr = "A" * 40
    answer = client.get(f"/api/v1/directory-check?email=pat+tag@example.org&fingerprint={fpr}")
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"match": False, "fingerprints": []}
