"""The organisation's LDAP directory as a source, the LDAP relay and the directory check.

slapd runs from the test (python-ldap's slapdtest: its own config and port)
with GnuPG's keyserver schema (tests/fixtures/ldap), populated by real
`gpg --send-keys` to ldap://, plus a plain directory of inetOrgPerson entries.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.models import Source
from keys import openpgp
from keys.models import Binding

from .conftest import Gpg

pytestmark = pytest.mark.django_db(transaction=True)
SCHEMA = Path(__file__).parent / "fixtures" / "ldap" / "gnupg-keyserver-schema.ldif"


class Directory:
    """slapd with the keyserver layout under ou=GnuPG Keys and people under ou=People."""

    def __init__(self) -> None:
        import slapdtest

        class Slapd(slapdtest.SlapdObject):
            suffix = "dc=example,dc=com"
            openldap_schema_files = ("core.ldif", "cosine.ldif", "inetorgperson.ldif", str(SCHEMA))

        self.slapd = Slapd()
        self.slapd.start()
        s = self.slapd
        s.ldapadd(
            f"dn: {s.suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
            f"dn: ou=GnuPG Keys,{s.suffix}\nobjectClass: organizationalUnit\nou: GnuPG Keys\n\n"
            f"dn: ou=People,{s.suffix}\nobjectClass: organizationalUnit\nou: People\n\n"
            f"dn: cn=PGPServerInfo,{s.suffix}\nobjectClass: pgpServerInfo\ncn: PGPServerInfo\n"
            f"pgpBaseKeySpaceDN: ou=GnuPG Keys,{s.suffix}\npgpSoftware: GnuPG\npgpVersion: 2\n"
        )
        self.url = f"ldap://127.0.0.1:{s.port}"
        self.gpg = Gpg(f"{self.url}/????bindname={s.root_dn.replace(',', '%2c')},password={s.root_pw}")

    def send(self, uid: str) -> str:
        """A new key for `uid`, sent with real gpg --send-keys."""
        fpr = self.gpg.generate(uid)
        self.gpg.run("--send-keys", fpr)
        return fpr

    def add_person(self, name: str, mail: str, key: bytes) -> None:
        import ldap
        import ldap.modlist

        conn = ldap.initialize(self.url)
        conn.simple_bind_s(self.slapd.root_dn, self.slapd.root_pw)
        conn.add_s(
            f"cn={name},ou=People,{self.slapd.suffix}",
            ldap.modlist.addModlist(
                {
                    "objectClass": [b"inetOrgPerson"],
                    "cn": [name.encode()],
                    "sn": [name.encode()],
                    "mail": [mail.encode()],
                    "description": [key],
                }
            ),
        )
        conn.unbind_s()

    def stop(self) -> None:
        self.gpg.close()
        self.slapd.stop()


@pytest.fixture(scope="module")
def directory() -> Iterator[Directory]:
    pytest.importorskip("ldap", reason="python-ldap is an optional install (requirements-ldap.txt)")
    d = Directory()
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WKD_DOMAINS = ["example.com"]
    settings.ALLOWED_HOSTS = ["*"]


def keyserver_source(directory: Directory, **options) -> Source:
    return Source.objects.create(
        name="directory",
        kind="ldap",
        url=directory.url,
        authoritative_domains=["example.com"],
        options=options,
    )


def test_the_directory_answers_for_its_domain_and_its_keys_are_published(client, directory):
    fpr = directory.send("Lara Ldap <lara@example.com>")
    keyserver_source(directory)
    started = time.monotonic()
    response = client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.content
    certs = openpgp.parse(response.content).certs
    assert [c.fingerprint for c in certs] == [fpr]
    binding = Binding.objects.get(address="lara@example.com")
    assert (binding.state, binding.validation) == (Binding.State.PUBLISHED, Binding.Validation.ORG_DIRECTORY)
    wkd = client.get(f"/.well-known/openpgpkey/example.com/hu/{binding.wkd_hash}")
    assert wkd.status_code == 200
    print(f"fallback lookup via LDAP: {elapsed * 1000:.0f} ms")


def test_keys_are_found_by_key_id_and_fingerprint(client, directory):
    fpr = directory.send("Kim Keyid <kim@example.com>")
    keyserver_source(directory)
    response = client.get(f"/vks/v1/by-keyid/{fpr[-16:]}")
    assert response.status_code == 200
    assert openpgp.parse(response.content).certs[0].fingerprint == fpr


def test_a_plain_directory_with_the_key_in_an_attribute(client, directory, cast):
    directory.add_person("Bob Person", "bob@example.com", cast.bob.data)
    Source.objects.create(
        name="people",
        kind="ldap",
        url=directory.url,
        authoritative_domains=["example.com"],
        options={"layout": "directory", "base_dn": "ou=People,dc=example,dc=com", "attribute": "description"},
    )
    # bob's key carries bob@example.net, not bob@example.com: not an answer.
    assert client.get("/pks/lookup", {"op": "get", "search": "bob@example.com"}).status_code == 404
    gpg = Gpg()
    try:
        fpr = gpg.generate("Pat Person <pat@example.com>")
        directory.add_person("Pat Person", "pat@example.com", gpg.run("--export", "--armor", fpr).stdout)
    finally:
        gpg.close()
    response = client.get("/pks/lookup", {"op": "get", "search": "pat@example.com"})
    assert openpgp.parse(response.content).certs[0].fingerprint == fpr


def test_an_unknown_address_is_a_404_in_time(client, directory):
    keyserver_source(directory)
    started = time.monotonic()
    assert client.get("/pks/lookup", {"op": "get", "search": "nobody@example.com"}).status_code == 404
    assert time.monotonic() - started < 3


def test_a_directory_that_is_down_is_a_404_and_marked_failing(client, directory):
    from .conftest import free_port

    Source.objects.create(
        name="down",
        kind="ldap",
        url=f"ldap://127.0.0.1:{free_port()}",
        authoritative_domains=["example.com"],
        timeout=2,
    )
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 404
    source = Source.objects.get(name="down")
    assert source.failures == 1 and "cannot reach" in source.last_error


def test_wrong_bind_credentials_are_recorded(client, directory):
    keyserver_source(directory, bind_dn=directory.slapd.root_dn, bind_password="wrong")
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 404
    assert "bind credentials" in Source.objects.get().last_error


def test_without_python_ldap_the_source_says_so(monkeypatch):
    from federation import sources
    from keys.identifiers import Query

    monkeypatch.setitem(sys.modules, "federation.ldap_source", None)
    upstream = sources.upstream_for(Source(name="x", kind="ldap", url="ldap://127.0.0.1"))
    with pytest.raises(sources.SourceError, match="python-ldap"):
        upstream.fetch(Query("email", "a@example.com"))


# -- ldap-relay ------------------------------------------------------------------------


def test_the_relay_answers_for_an_allowed_host(client, directory, settings):
    fpr = directory.send("Rae Relay <rae@example.com>")
    settings.LDAP_RELAY_ALLOWED_HOSTS = [f"127.0.0.1:{directory.slapd.port}"]
    response = client.get(
        "/ldap-relay", {"server": f"127.0.0.1:{directory.slapd.port}", "search": "rae@example.com"}
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert [c.fingerprint for c in openpgp.parse(response.content).certs] == [fpr]
    assert not Binding.objects.exists()  # relayed, not stored


def test_the_relay_refuses_hosts_not_allowed(client, directory):
    response = client.get("/ldap-relay", {"server": "ldap.elsewhere.example", "search": "rae@example.com"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 403


@pytest.mark.parametrize("server", ["10.0.0.1", "keys.example.com", "169.254.169.254"])
def test_the_relay_refuses_private_targets(client, settings, server):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    settings.LDAP_RELAY_ALLOWED_HOSTS = ["10.0.0.1", "169.254.169.254"]
    settings.FEDERATION_HOST_MAP = {"keys.example.com": "10.1.2.3"}
    response = client.get("/ldap-relay", {"server": server, "search": "rae@example.com"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"server": "keys.example.com", "search": "x@[127.0.0.1]"},
        {"server": "keys.example.com", "search": "not-an-address"},
        {"server": "ldap://evil/", "search": "rae@example.com"},
        {"search": "rae@example.com"},
    ],
)
def test_the_relay_refuses_bad_input(client, params):
    assert client.get("/ldap-relay", params).status_code == 400


# -- directory check ---------------------------------------------------------------------


def test_directory_check_says_whether_a_fingerprint_is_the_directorys(client, directory):
    fpr = directory.send("Dana Check <dana@example.com>")
    keyserver_source(directory)
    spaced = " ".join(fpr[i : i + 4] for i in range(0, 40, 4)).lower()
    match = client.get("/api/v1/directory-check", {"email": "dana@example.com", "fingerprint": spaced}).json()
    assert match == {"match": True, "fingerprints": [fpr]}
    other = client.get(
        "/api/v1/directory-check", {"email": "dana@example.com", "fingerprint": "0" * 40}
    ).json()
    assert other == {"match": False, "fingerprints": [fpr]}


def test_directory_check_without_a_directory_for_the_domain(client):
    answer = client.get("/api/v1/directory-check", {"email": "a@example.org", "fingerprint": "A" * 40})
    assert answer.json() == {"match": False, "fingerprints": []}


@pytest.mark.parametrize(
    "params",
    [{"email": "a@example.com", "fingerprint": "1234"}, {"email": "bad", "fingerprint": "A" * 40}, {}],
)
def test_directory_check_refuses_bad_input(client, params):
    response = client.get("/api/v1/directory-check", params)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_gpg_locates_a_directory_key_through_this_server(live_server, directory, settings):
    from urllib.parse import urlparse

    fpr = directory.send("Gil Gpg <gil@example.com>")
    keyserver_source(directory)
    client_gpg = Gpg(f"hkp://127.0.0.1:{urlparse(live_server.url).port}")
    try:
        located = client_gpg.run(
            "--auto-key-locate", "clear,nodefault,keyserver", "--locate-external-keys", "gil@example.com"
        )
        assert fpr in located.stdout.decode().replace(" ", "")
    finally:
        client_gpg.close()
    binding = Binding.objects.get(address="gil@example.com")
    assert binding.validation == Binding.Validation.ORG_DIRECTORY


def test_a_refresh_brings_a_new_subkey_and_the_revocation_from_the_directory(client, directory):
    from federation.refresh import refresh_key
    from keys.models import Key

    fpr = directory.send("Rhea Refresh <rhea@example.com>")
    keyserver_source(directory)
    assert client.get("/pks/lookup", {"op": "get", "search": "rhea@example.com"}).status_code == 200
    local = Key.objects.get(fingerprint=fpr)
    assert local.next_refresh_at is not None and local.origin == "ldap"
    subkeys = local.subkeys.count()

    directory.gpg.run(
        "--passphrase", "", "--pinentry-mode", "loopback", "--quick-add-key", fpr, "cv25519", "encr", "1y"
    )
    directory.gpg.run("--send-keys", fpr)
    assert refresh_key(local.pk).result == "updated"
    assert local.subkeys.count() == subkeys + 1

    revocation = Path(directory.gpg.home, "openpgp-revocs.d", f"{fpr}.rev").read_text()
    directory.gpg.run("--import", input=revocation.replace(":-----BEGIN", "-----BEGIN").encode())
    directory.gpg.run("--send-keys", fpr)
    assert refresh_key(local.pk).result.startswith("updated")
    local.refresh_from_db()
    assert local.revoked
    assert client.get("/pks/lookup", {"op": "get", "search": "rhea@example.com"}).status_code == 404
