"""The Key-Validation header: every key answer names the validation levels of
the addresses it serves, on every lookup path, from the application and from
the published files alike; the JSON answers carry it per key; the key page
says what each level promises."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from keys.identifiers import wkd_hash
from keys.models import Binding, Key, Source
from keys.services import policy

from .front import Front
from .keyserver import Keyserver
from .test_front_server import app, front, open_fixture, publish, scratch  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)
HEADER = "Key-Validation"


@pytest.fixture
def ks(client, mailoutbox, settings) -> Keyserver:
    settings.WKD_DOMAINS = ["example.org", "example.net"]
    settings.ALLOWED_HOSTS = ["testserver", "example.org", "openpgpkey.example.org", "example.net"]
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return Keyserver(client, mailoutbox)


def by_address_paths(address: str) -> dict[str, str]:
    return {
        "hkp get": f"/pks/lookup?op=get&options=mr&search={quote(address)}",
        "hkp get <addr>": f"/pks/lookup?op=get&options=mr&search={quote(f'Someone <{address}>')}",
        "hkp index": f"/pks/lookup?op=index&options=mr&search={quote(address)}",
        "vks by-email": f"/vks/v1/by-email/{quote(address)}",
        "pub": f"/pub/{address}",
    }


def by_id_paths(fpr: str, keyid: str) -> dict[str, str]:
    return {
        "hkp get fpr": f"/pks/lookup?op=get&options=mr&search=0x{fpr}",
        "hkp get keyid": f"/pks/lookup?op=get&options=mr&search=0x{keyid}",
        "vks by-fingerprint": f"/vks/v1/by-fingerprint/{fpr}",
        "vks by-keyid": f"/vks/v1/by-keyid/{keyid}",
        "pub keyid": f"/pub/{keyid}",
        "pub fpr": f"/pub/{fpr}",
    }


def wkd_paths(address: str) -> dict[str, tuple[str, str]]:
    local, domain = address.split("@")
    return {
        "wkd direct": (f"/.well-known/openpgpkey/hu/{wkd_hash(address)}?l={local}", domain),
        "wkd advanced": (
            f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}?l={local}",
            f"openpgpkey.{domain}",
        ),
    }


def levels(ks: Keyserver, path: str, host: str = "testserver") -> tuple[str | None, str | None, int]:
    """The header on GET and on HEAD, and the GET status."""
    got = ks.client.get(path, HTTP_HOST=host)
    head = ks.client.head(path, HTTP_HOST=host)
    return got.headers.get(HEADER), head.headers.get(HEADER), got.status_code


def assert_everywhere(ks: Keyserver, paths: dict[str, str], expected: str) -> None:
    for name, path in paths.items():
        assert levels(ks, path) == (expected, expected, 200), name


def test_a_confirmed_address_is_email_confirmed_on_every_lookup_path(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    assert_everywhere(ks, by_address_paths("alice@example.org"), "email_confirmed")
    assert_everywhere(ks, by_id_paths(cast.alice.fingerprint, cast.alice.key_id), "email_confirmed")
    for name, (path, host) in wkd_paths("alice@example.org").items():
        assert levels(ks, path, host) == ("email_confirmed", "email_confirmed", 200), name


def test_a_not_modified_answer_keeps_the_header(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    path = f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}"
    first = ks.client.get(path)
    again = ks.client.get(path, HTTP_IF_NONE_MATCH=first.headers["ETag"])
    assert again.status_code == 304 and again.headers[HEADER] == "email_confirmed"


def test_a_key_without_a_confirmed_address_is_none(ks, cast):
    ks.upload(cast.carol.data)
    answer = ks.client.get(f"/vks/v1/by-fingerprint/{cast.carol.fingerprint}")
    assert answer.status_code == 200 and answer.headers[HEADER] == "none"
    # HKP refuses it (rule 6): no key answer, no header.
    refused = ks.client.get(f"/pks/lookup?op=get&search=0x{cast.carol.fingerprint}")
    assert refused.status_code == 404 and HEADER not in refused.headers


def test_a_revocation_only_answer_is_none(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    ks.upload(cast.alice_revoked.data)
    paths = by_id_paths(cast.alice.fingerprint, cast.alice.key_id)
    del paths["pub keyid"], paths["pub fpr"]
    assert_everywhere(ks, paths, "none")


def test_several_levels_are_listed_once_each_in_a_fixed_order(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    binding = Binding.objects.get(address="alice@work.example.com")
    policy.mark_fingerprint_verified(binding, actor="staff")
    assert_everywhere(
        ks, by_id_paths(cast.alice.fingerprint, cast.alice.key_id), "email_confirmed,fingerprint_verified"
    )
    assert_everywhere(ks, by_address_paths("alice@work.example.com"), "fingerprint_verified")
    assert_everywhere(ks, by_address_paths("alice@example.org"), "email_confirmed")


def test_an_address_on_two_keys_names_the_levels_of_both(ks, cast, gpg_factory):
    ks.publish(cast.bob.data, "bob@example.net")
    gpg = gpg_factory()
    other = gpg.generate("Bob Two <bob@example.net>")
    ks.publish(gpg.run("--export", "--armor", other).stdout, "bob@example.net")
    policy.mark_fingerprint_verified(Binding.objects.get(key__fingerprint=other), actor="staff")
    assert levels(ks, "/vks/v1/by-email/bob@example.net")[0] == "email_confirmed,fingerprint_verified"


def test_the_organisations_directory_is_org_directory(ks, cast, scripted):
    scripted.routes["/vks/v1/by-email/bob@example.net"] = (200, cast.bob.data)
    scripted.routes[f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}"] = (200, cast.bob.data)
    Source.objects.create(name="org", kind="vks", url=scripted.url, authoritative_domains=["example.net"])
    assert levels(ks, "/vks/v1/by-email/bob@example.net")[0] == "org_directory"
    assert Binding.objects.get(address="bob@example.net").validation == "org_directory"
    assert_everywhere(ks, by_address_paths("bob@example.net"), "org_directory")
    assert_everywhere(ks, by_id_paths(cast.bob.fingerprint, cast.bob.key_id), "org_directory")
    path, host = wkd_paths("bob@example.net")["wkd direct"]
    assert levels(ks, path, host) == ("org_directory", "org_directory", 200)


def test_a_key_from_an_unverifying_peer_is_upstream_unverified(ks, cast, scripted):
    scripted.routes["/pks/lookup"] = (200, cast.bob.text.encode())
    Source.objects.create(name="sks", kind="hkp", url=scripted.url)
    assert levels(ks, by_address_paths("bob@example.net")["hkp get"])[0] == "upstream_unverified"
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.CACHED
    paths = by_address_paths("bob@example.net")
    del paths["hkp index"]  # the index of cached keys: not a key answer either way
    assert_everywhere(ks, paths, "upstream_unverified")
    assert_everywhere(ks, by_id_paths(cast.bob.fingerprint, cast.bob.key_id), "upstream_unverified")
    # Never on WKD (rule 3).
    path, host = wkd_paths("bob@example.net")["wkd direct"]
    assert ks.client.get(path, HTTP_HOST=host).status_code == 404


def test_lookup_email_names_the_level_of_each_key(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    answer = ks.client.post(
        "/lookup/email",
        {"email": ["alice@example.org", "nobody@example.org"]},
        content_type="application/json",
    ).json()
    assert [(r["email"], r["validation"]) for r in answer["results"]] == [
        ("alice@example.org", "email_confirmed"),
        ("nobody@example.org", None),
    ]
    assert answer["results"][0]["longid"] == cast.alice.key_id  # the Attester's shape is kept


def test_the_schema_documents_the_header(ks):
    schema = ks.client.get("/api/schema/?format=json").json()
    for path in ("/vks/v1/by-fingerprint/{fpr}", "/vks/v1/by-email/{email}", "/pub/{query}"):
        response = schema["paths"][path]["get"]["responses"]["200"]
        assert HEADER in response["headers"], path


def test_the_key_page_says_what_each_level_promises(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    policy.mark_fingerprint_verified(Binding.objects.get(address="alice@work.example.com"), actor="staff")
    page = ks.client.get(f"/key/{cast.alice.fingerprint}").content.decode()
    assert "email_confirmed" in page and "opened a confirmation link mailed to it" in page
    assert "fingerprint_verified" in page and "compared the fingerprint with the owner" in page
    german = ks.client.get(f"/key/{cast.alice.fingerprint}", HTTP_ACCEPT_LANGUAGE="de").status_code
    assert german == 200


# -- the published files and the front server ----------------------------------------------


@pytest.fixture
def tree(tmp_path, settings) -> Path:
    settings.PUBLISH_DIR = str(tmp_path / "public")
    return tmp_path / "public"


def test_each_published_answer_has_its_level_file(ks, cast, tree):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    fpr, keyid = cast.alice.fingerprint, cast.alice.key_id
    level = tree / "level"
    assert (level / f"fpr/{fpr[:2]}/{fpr}").read_text() == "email_confirmed"
    assert (level / f"keyid/{keyid[:2]}/{keyid}").read_text() == "email_confirmed"
    assert (level / "email/example.org/alice").read_text() == "email_confirmed"
    assert (level / f"wkd/example.org/{wkd_hash('alice@example.org')}").read_text() == "email_confirmed"
    policy.mark_fingerprint_verified(Binding.objects.get(address="alice@work.example.com"), actor="staff")
    assert (level / f"fpr/{fpr[:2]}/{fpr}").read_text() == "email_confirmed,fingerprint_verified"
    assert (level / "email/example.com/alice").exists() is False  # the domain is work.example.com
    assert (level / "email/work.example.com/alice").read_text() == "fingerprint_verified"
    # Removed with the answers.
    policy.remove_key_by_policy(Key.objects.get(), reason="test", actor="staff")
    assert not (level / f"fpr/{fpr[:2]}/{fpr}").exists()
    assert not (level / "email/example.org/alice").exists()


def test_the_front_server_sends_the_header_the_application_sends(front: Front, app):  # noqa: F811
    fpr = publish(front, app["smtp"], open_fixture("alice.asc"), "alice@example.org")
    paths = [
        *by_address_paths("alice@example.org").values(),
        *by_id_paths(fpr, fpr[-16:]).values(),
        f"/.well-known/openpgpkey/example.org/hu/{wkd_hash('alice@example.org')}?l=alice",
    ]
    for path in paths:
        host = {"Host": "openpgpkey.example.org"} if "well-known" in path else {}
        for method in (requests.get, requests.head):
            through = method(front.url + path, headers=host, timeout=10)
            direct = method(app["url"] + path, headers=host, timeout=10)
            assert through.status_code == direct.status_code == 200, path
            assert through.headers.get(HEADER) == direct.headers.get(HEADER) == "email_confirmed", path
    # The answers came from the files: a changed level file is what nginx sends.
    public = front.run_dir.parent / "public"
    (public / f"level/fpr/{fpr[:2]}/{fpr}").write_text("org_directory")
    through = requests.get(f"{front.url}/vks/v1/by-fingerprint/{fpr}", timeout=10)
    assert through.headers[HEADER] == "org_directory"
    # An answer without its level file is left to the application.
    (public / f"level/fpr/{fpr[:2]}/{fpr}").unlink()
    (public / f"fpr/{fpr[:2]}/{fpr}").write_bytes(b"from the file\n")
    through = requests.get(f"{front.url}/vks/v1/by-fingerprint/{fpr}", timeout=10)
    assert through.headers[HEADER] == "email_confirmed" and b"BEGIN PGP" in through.content


# -- the organisation's LDAP directory and the LDAP relay ---------------------------------


def test_the_ldap_relay_names_the_level_of_the_server_it_asked(client, settings):
    pytest.importorskip("ldap", reason="python-ldap is an optional install (requirements-ldap.txt)")
    from .test_ldap import Directory, keyserver_source, relay

    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    directory = Directory()
    try:
        fpr = directory.send("Vera Valid <vera@example.com>")
        settings.LDAP_RELAY_ALLOWED_HOSTS = [f"127.0.0.1:{directory.slapd.port}"]
        answer = relay(client, directory, "vera@example.com")
        assert answer.status_code == 200 and answer[HEADER] == "upstream_unverified"
        # The organisation's directory for the address's domain, configured as a source.
        keyserver_source(directory)
        answer = relay(client, directory, "vera@example.com")
        assert answer.status_code == 200 and answer[HEADER] == "org_directory"
        # And what the server serves from that directory.
        served = client.get("/pks/lookup", {"op": "get", "search": "vera@example.com"})
        assert served.status_code == 200 and served[HEADER] == "org_directory"
        assert client.get(f"/vks/v1/by-fingerprint/{fpr}")[HEADER] == "org_directory"
    finally:
        directory.stop()
