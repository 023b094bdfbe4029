"""End to end with real GnuPG and sq against the running server and a real SMTP sink."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gpg]


@pytest.fixture
def server(live_server, settings, smtp):
    port = urlparse(live_server.url).port
    settings.SITE_URL = f"http://127.0.0.1:{port}"
    return {"url": settings.SITE_URL, "hkp": f"hkp://127.0.0.1:{port}", "smtp": smtp}


def confirm(link: str) -> None:
    """Open the link (a page with a button), then press the button."""
    session = requests.Session()
    page = session.get(link, timeout=10)
    assert page.status_code == 200
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, page.text
    token = match.group(1)
    done = session.post(link, data={"csrfmiddlewaretoken": token}, timeout=10)
    assert done.status_code == 200, done.text
    assert "published" in done.text


def revocation_certificate(home: str, fpr: str) -> bytes:
    text = Path(home, "openpgp-revocs.d", f"{fpr}.rev").read_text()
    return text.replace(":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK").encode()


def test_gpg_round_trip_send_confirm_receive_search_locate_revoke(server, gpg_factory):
    owner = gpg_factory(server["hkp"])
    fpr = owner.generate("Olivia Owner <olivia@example.org>")
    sent = owner.run("--send-keys", fpr)
    assert b"sending key" in sent.stderr

    # Before confirmation: nothing to find, nothing to import.
    reader = gpg_factory(server["hkp"])
    search = reader.run("--with-colons", "--search-keys", "olivia@example.org", check=False)
    assert fpr not in search.stdout.decode()
    assert reader.run("--recv-keys", fpr, check=False).returncode != 0
    assert fpr not in reader.colons()

    # The confirmation mail reached the SMTP sink; the owner confirms.
    mails = server["smtp"].to("olivia@example.org")
    assert len(mails) == 1
    assert mails[0]["Auto-Submitted"] == "auto-generated"
    confirm(server["smtp"].link("olivia@example.org"))

    reader.run("--recv-keys", fpr)
    assert f"fpr:::::::::{fpr}:" in reader.colons(fpr)
    assert "Olivia Owner <olivia@example.org>" in reader.colons(fpr)

    searcher = gpg_factory(server["hkp"])
    found = searcher.run("--with-colons", "--search-keys", "olivia@example.org", check=False).stdout.decode()
    assert f"pub:{fpr}:" in found
    assert "uid:Olivia Owner <olivia@example.org>" in found

    locator = gpg_factory(server["hkp"])
    located = locator.run(
        "--auto-key-locate", "clear,nodefault,keyserver", "--locate-external-keys", "olivia@example.org"
    )
    assert fpr in located.stdout.decode().replace(" ", "")
    assert f"fpr:::::::::{fpr}:" in locator.colons(fpr)

    # The owner revokes the key and sends it again; a refresh learns of it.
    owner.run("--import", input=revocation_certificate(owner.home, fpr))
    owner.run("--send-keys", fpr)
    reader.run("--refresh-keys")
    pub = next(line for line in reader.colons(fpr).splitlines() if line.startswith("pub:"))
    assert pub.startswith("pub:r:"), pub

    # And the address is no longer found.
    late = gpg_factory(server["hkp"])
    assert late.run("--recv-keys", fpr).returncode == 0  # by fingerprint: the revocation
    assert (
        fpr
        not in late.run("--with-colons", "--search-keys", "olivia@example.org", check=False).stdout.decode()
    )


def test_gpg_cannot_publish_an_address_without_the_mail(server, gpg_factory):
    owner = gpg_factory(server["hkp"])
    fpr = owner.generate("Mallory <victim@example.org>")
    owner.run("--send-keys", fpr)
    reader = gpg_factory(server["hkp"])
    assert reader.run("--recv-keys", fpr, check=False).returncode != 0
    located = reader.run(
        "--auto-key-locate",
        "clear,nodefault,keyserver",
        "--locate-external-keys",
        "victim@example.org",
        check=False,
    )
    assert located.returncode != 0


@pytest.mark.sq
def test_sq_fetches_by_fingerprint_and_by_address(server, gpg_factory, tmp_path):
    if not shutil.which("sq"):
        pytest.fail("sq is not installed (apt-get install sq)")
    owner = gpg_factory(server["hkp"])
    fpr = owner.generate("Sam Sq <sam@example.org>")
    owner.run("--send-keys", fpr)
    confirm(server["smtp"].link("sam@example.org"))

    def sq(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sq", "keyserver", "-p", "insecure", "--server", server["hkp"], "get", *args],
            capture_output=True,
            timeout=60,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )

    by_fpr = sq(fpr)
    assert by_fpr.returncode == 0, by_fpr.stderr.decode()
    assert b"BEGIN PGP PUBLIC KEY BLOCK" in by_fpr.stdout
    by_address = sq("sam@example.org")
    assert by_address.returncode == 0, by_address.stderr.decode()

    checker = gpg_factory()
    checker.run("--import", input=by_address.stdout)
    assert "Sam Sq <sam@example.org>" in checker.colons(fpr)
