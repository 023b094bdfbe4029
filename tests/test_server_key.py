"""The server's own OpenPGP key: made once, stored sealed, published, shown,
rotated (the old key certifies the new one, checked by real gpg), exported."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from keys import openpgp
from keys.identifiers import group_fingerprint, wkd_hash
from keys.models import Binding, ServerKey
from keys.services import server_key

from .signed_mail import assert_signed_by_server

pytestmark = pytest.mark.django_db(transaction=True)
FROM = "keyserver@example.org"


@pytest.fixture(autouse=True)
def from_address(settings):
    settings.DEFAULT_FROM_EMAIL = f"Keyserver <{FROM}>"
    settings.WKD_DOMAINS = ["example.org"]
    settings.ALLOWED_HOSTS = ["*"]


def command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("server_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def served(client, address: str) -> dict[str, bytes]:
    domain = address.split("@")[1]
    answers = {
        "hkp": client.get("/pks/lookup", {"op": "get", "search": address}),
        "vks": client.get(f"/vks/v1/by-email/{address}"),
        "wkd": client.get(
            f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}", HTTP_HOST=f"openpgpkey.{domain}"
        ),
    }
    return {name: r.content if r.status_code == 200 else b"" for name, r in answers.items()}


def fingerprints(data: bytes) -> list[str]:
    return [info.fingerprint for info in openpgp.parse(data).certs] if data else []


def test_the_key_is_made_once_for_the_from_address():
    first = server_key.current()
    assert server_key.current().pk == first.pk
    assert first.address == FROM and first.active and len(first.fingerprint) == 40
    assert openpgp.load(bytes(first.public)).fingerprint == first.fingerprint
    assert ServerKey.objects.count() == 1


def test_another_address_has_a_key_of_its_own():
    submission = server_key.for_address("Key-Submission@example.org")
    assert submission.address == "key-submission@example.org"
    assert submission.fingerprint != server_key.current().fingerprint
    assert server_key.for_address("key-submission@example.org").pk == submission.pk


def test_two_first_calls_at_once_make_one_key():
    """The second caller finds no committed key, makes one, and its insert
    waits on the first's; when the first commits, it takes the first's key."""
    made = threading.Event()
    results: dict[str, str] = {}

    def first() -> None:
        with transaction.atomic():
            results["first"] = server_key.current().fingerprint
            made.set()
            time.sleep(1.5)  # the second caller's insert waits on this transaction
        connection.close()

    def second() -> None:
        made.wait(10)
        results["second"] = server_key.current().fingerprint
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results["first"] == results["second"]
    assert ServerKey.objects.count() == 1


def test_the_stored_secret_is_sealed_under_the_secret_key(settings):
    key = server_key.current()
    tsk = server_key.secret(key)
    assert openpgp.secret_fingerprint(tsk) == key.fingerprint
    assert b"PRIVATE KEY" in openpgp.armor_secret(tsk).encode()
    sealed = bytes(ServerKey.objects.get(pk=key.pk).sealed_secret)
    assert tsk not in sealed and bytes(key.public)[:40] not in sealed
    # No window of the secret's key material (32-byte ed25519 scalars) is readable.
    assert not any(tsk[i : i + 16] in sealed for i in range(len(tsk) - 16))
    settings.SECRET_KEY = "another secret key"
    with pytest.raises(server_key.ServerKeyUnreadable, match="rotate"):
        server_key.secret(key)


def test_the_key_is_published_over_hkp_vks_and_wkd(client):
    key = server_key.current()
    binding = Binding.objects.get(address=FROM, key__fingerprint=key.fingerprint)
    assert binding.state == Binding.State.PUBLISHED
    assert binding.validation == Binding.Validation.SERVER_KEY
    for name, data in served(client, FROM).items():
        assert fingerprints(data) == [key.fingerprint], name
    # Every answer names what it serves: the server's own key.
    answer = client.get("/pks/lookup", {"op": "get", "search": f"0x{key.fingerprint}"})
    assert answer["Key-Validation"] == "server_key"
    assert client.get(f"/vks/v1/by-email/{FROM}")["Key-Validation"] == "server_key"


def test_an_address_that_cannot_be_published_still_has_a_key(settings, client):
    settings.DEFAULT_FROM_EMAIL = "keyserver@localhost"
    key = server_key.current()
    assert key.key is None and server_key.secret(key)


def test_rotate_makes_a_new_active_key_the_old_one_certifies(client, gpg_factory):
    old = server_key.current()
    out, _err = command("rotate")
    new = server_key.current()
    assert new.fingerprint != old.fingerprint and group_fingerprint(new.fingerprint) in out
    assert "certifies the new key" in out
    old.refresh_from_db()
    assert old.retired_at is not None and new.predecessor == old
    # Real gpg: the new key's user ID carries a good certification by the old key.
    gpg = gpg_factory()
    gpg.run("--import", input=bytes(old.public))
    gpg.run("--import", input=server_key.armored(new).encode())
    sigs = gpg.run("--with-colons", "--check-sigs", new.fingerprint).stdout.decode()
    certifications = [line.split(":") for line in sigs.splitlines() if line.startswith("sig:")]
    assert any(f[1] == "!" and f[4] == old.fingerprint[-16:] and f[10] == "13x" for f in certifications), sigs
    # The address now serves the new key only; the old one stays known by fingerprint.
    for name, data in served(client, FROM).items():
        assert fingerprints(data) == [new.fingerprint], name
    assert ServerKey.objects.filter(address=FROM, retired_at__isnull=True).count() == 1


def test_only_the_given_out_form_carries_the_certification(client, gpg_factory):
    """The check above can fail: the form HKP serves has no third-party
    signatures (never kept), so gpg finds no certification by the old key there."""
    old = server_key.current()
    command("rotate")
    new = server_key.current()
    gpg = gpg_factory()
    gpg.run("--import", input=bytes(old.public))
    gpg.run("--import", input=served(client, FROM)["hkp"])
    sigs = gpg.run("--with-colons", "--check-sigs", new.fingerprint).stdout.decode()
    assert new.fingerprint in sigs and old.fingerprint[-16:] not in sigs


def test_rotating_after_the_secret_key_changed_makes_an_uncertified_key(settings):
    old = server_key.current()
    settings.SECRET_KEY = "another secret key"
    _out, err = command("rotate")
    assert "not certified" in err
    new = server_key.current()
    assert new.predecessor == old and server_key.secret(new)


def test_show_prints_the_fingerprint_address_date_and_key():
    out, _err = command("show")
    key = server_key.current()
    assert group_fingerprint(key.fingerprint) in out and FROM in out
    assert key.created.date().isoformat() in out and "BEGIN PGP PUBLIC KEY BLOCK" in out


def test_export_gives_the_public_key_and_the_secret_only_when_asked(gpg_factory):
    public, err = command("export")
    assert "BEGIN PGP PUBLIC KEY BLOCK" in public and "PRIVATE" not in public and err == ""
    secret, warning = command("export", "--secret")
    assert "BEGIN PGP PRIVATE KEY BLOCK" in secret and "WARNING" in warning and "SECRET" in warning
    gpg = gpg_factory()
    gpg.run("--import", input=secret.encode())
    listed = gpg.run("--with-colons", "--list-secret-keys").stdout.decode()
    assert server_key.current().fingerprint in listed
    with pytest.raises(Exception, match="only with export"):
        command("show", "--secret")


def test_the_about_page_shows_the_key_and_how_to_fetch_it(client):
    page = client.get("/about")
    assert page.status_code == 200
    html = page.content.decode()
    key = server_key.current()
    assert group_fingerprint(key.fingerprint) in html
    assert 'href="/about/server-key.asc"' in html
    assert f"--recv-keys {key.fingerprint}" in html and "gpg --fetch-keys http" in html
    assert 'href="/about"' in client.get("/").content.decode()  # linked from every page
    download = client.get("/about/server-key.asc")
    assert download.status_code == 200 and download["Content-Type"] == "application/pgp-keys"
    assert fingerprints(download.content) == [key.fingerprint]


def test_the_key_file_says_its_validation(client, settings):
    """/about/server-key.asc is a key answer: Key-Validation as on every other."""
    assert client.get("/about/server-key.asc")["Key-Validation"] == "server_key"  # published
    settings.DEFAULT_FROM_EMAIL = "keyserver@localhost"  # cannot be published: still given out
    download = client.get("/about/server-key.asc")
    assert download.status_code == 200 and download["Key-Validation"] == "none"
    assert client.get("/about/server-key.asc?address=someone@example.org").status_code == 404


def test_the_web_key_services_keys_are_on_about_and_its_mails_name_the_key_that_signs_them(
    client, settings, smtp
):
    from keys.services import wks

    from .test_wks import submission

    settings.WKS_SUBMISSION_ADDRESS = "key-submission@{domain}"
    html = client.get("/about").content.decode()
    submit = server_key.active("key-submission@example.org")
    assert submit is not None and group_fingerprint(submit.fingerprint) in html
    url = "/about/server-key.asc?address=key-submission@example.org"
    assert f'href="http://testserver{url}"' in html
    download = client.get(url)
    assert fingerprints(download.content) == [submit.fingerprint]
    assert download["Key-Validation"] == "server_key"
    user = openpgp.generate("Wendy <wendy@example.org>")
    assert wks.handle(submission(user, "wendy@example.org")).accepted
    text = assert_signed_by_server(smtp.raw_to("wendy@example.org")[-1])  # by the submission key
    assert group_fingerprint(submit.fingerprint) in text
    assert f"gpg --fetch-keys http://testserver{url}" in text


def test_the_about_page_names_the_previous_key_after_a_rotation(client):
    old = server_key.current()
    command("rotate")
    assert group_fingerprint(old.fingerprint) in client.get("/about").content.decode()


def test_a_former_secret_key_in_the_fallbacks_still_opens_it_and_rotate_reseals(settings, gpg_factory):
    old = server_key.current()
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the new secret key"
    assert openpgp.secret_fingerprint(server_key.secret(old)) == old.fingerprint
    out, _err = command("rotate")
    assert "certifies the new key" in out
    settings.SECRET_KEY_FALLBACKS = []
    assert server_key.secret(server_key.current())  # sealed under the new SECRET_KEY


def test_the_admin_lists_the_server_keys_read_only(admin_client):
    key = server_key.current()
    page = admin_client.get("/admin/keys/serverkey/")
    assert page.status_code == 200 and key.fingerprint in page.content.decode()
    assert admin_client.get("/admin/keys/serverkey/add/").status_code == 403


@pytest.mark.django_db(transaction=True)
@pytest.mark.gpg
@pytest.mark.parametrize("sender", ["Keyserver <keyserver@example.org>", "keyserver@localhost"])
def test_the_commands_on_the_about_page_fetch_the_key_with_real_gpg(
    live_server, settings, gpg_factory, sender
):
    """Each gpg line of /about, run as printed in an empty home, imports the
    server key: published (by key server and by URL) or not (by URL only)."""
    import html as html_module
    import re
    import shlex

    import requests

    port = live_server.url.rsplit(":", 1)[1]
    settings.SITE_URL = f"http://127.0.0.1:{port}"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.DEFAULT_FROM_EMAIL = sender
    key = server_key.current()
    page = requests.get(settings.SITE_URL + "/about", timeout=10).text
    lines = [
        html_module.unescape(line).strip()
        for block in re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S)
        for line in block.splitlines()
        if line.strip().startswith("gpg ")
    ]
    assert len(lines) == (2 if key.key_id else 1), lines
    for line in lines:
        reader = gpg_factory()
        done = reader.run(*shlex.split(line)[1:], check=False)
        assert done.returncode == 0, (line, done.stderr.decode())
        listed = reader.run("--with-colons", "--list-keys", key.fingerprint).stdout.decode()
        assert f"fpr:::::::::{key.fingerprint}:" in listed, line
