"""The organisation's LDAP directory as a source, the LDAP relay and the directory check.

slapd runs from the test (python-ldap's slapdtest: its own config and port)
with GnuPG's keyserver schema (tests/fixtures/ldap), populated by real
`gpg --send-keys` to ldap://, plus a plain directory of inetOrgPerson entries.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.sources import SourceError, upstream_for
from keys import openpgp
from keys.identifiers import Query
from keys.models import Binding, Key, PolicyBlock, Source

from .conftest import Gpg, free_port

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

    def _admin(self):
        import ldap

        conn = ldap.initialize(self.url)
        conn.simple_bind_s(self.slapd.root_dn, self.slapd.root_pw)
        return conn

    def add(self, dn: str, attrs: dict[str, list[bytes]]) -> None:
        import ldap.modlist

        conn = self._admin()
        conn.add_s(dn, ldap.modlist.addModlist(attrs))
        conn.unbind_s()

    def replace(self, dn: str, attribute: str, values: list[bytes]) -> None:
        import ldap

        conn = self._admin()
        conn.modify_s(dn, [(ldap.MOD_REPLACE, attribute, values)])
        conn.unbind_s()

    def entry(self, dn: str) -> dict[str, list[bytes]]:
        import ldap

        conn = self._admin()
        [(_dn, attrs)] = conn.search_s(dn, ldap.SCOPE_BASE)
        conn.unbind_s()
        return attrs

    def add_person(self, name: str, mail: str, key: bytes, attribute: str = "description") -> None:
        attrs = {
            "objectClass": [b"inetOrgPerson"],
            "cn": [name.encode()],
            "sn": [name.encode()],
            "mail": [mail.encode()],
            attribute: [key],
        }
        if attribute == "pgpKeyV2":
            attrs["objectClass"].append(b"pgpKeyInfoExtra")
        self.add(f"cn={name},ou=People,{self.slapd.suffix}", attrs)

    def key_dn(self, fpr: str) -> str:
        return f"pgpCertID={fpr[-16:]},ou=GnuPG Keys,{self.slapd.suffix}"

    def stop(self) -> None:
        self.gpg.close()
        self.slapd.stop()


def _have_python_ldap() -> bool:
    try:
        import ldap  # noqa: F401
    except ImportError:
        return False
    return True


# Tests that reach an LDAP server need python-ldap, an optional install.
needs_python_ldap = pytest.mark.skipif(
    not _have_python_ldap(), reason="python-ldap is an optional install (requirements-ldap.txt)"
)


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


def fetch(url: str, query: Query, timeout: float = 5, **options) -> list[bytes]:
    """One LdapUpstream call, without the fallback machinery around it."""
    return upstream_for(Source(name="t", kind="ldap", url=url, timeout=timeout, options=options)).fetch(query)


# -- what gpg writes, and the source as the domain's authority ---------------------------


def test_gpg_send_keys_writes_the_v2_schema_with_the_key_armored(directory):
    fpr = directory.send("Wanda Writes <wanda@example.com>")
    attrs = {k.lower(): v for k, v in directory.entry(directory.key_dn(fpr)).items()}
    assert attrs["pgpcertid"] == [fpr[-16:].encode()]
    assert attrs["gpgfingerprint"] == [fpr.encode()]
    assert attrs["gpgmailbox"] == [b"wanda@example.com"]
    assert attrs["pgpuserid"] == [b"Wanda Writes <wanda@example.com>"]
    assert attrs["pgpdisabled"] == [b"0"] and attrs["pgprevoked"] == [b"0"]
    assert attrs["pgpkey"][0].startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "pgpkeyv2" not in attrs


def test_the_directory_answers_for_its_domain_and_its_keys_are_published(client, directory):
    fpr = directory.send("Lara Ldap <lara@example.com>")
    keyserver_source(directory)
    started = time.monotonic()
    response = client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"})
    cold = time.monotonic() - started
    assert response.status_code == 200, response.content
    certs = openpgp.parse(response.content).certs
    assert [c.fingerprint for c in certs] == [fpr]
    binding = Binding.objects.get(address="lara@example.com")
    assert (binding.state, binding.validation) == (Binding.State.PUBLISHED, Binding.Validation.ORG_DIRECTORY)
    assert Key.objects.get(fingerprint=fpr).origin == "ldap"
    wkd = client.get(f"/.well-known/openpgpkey/example.com/hu/{binding.wkd_hash}")
    assert wkd.status_code == 200
    started = time.monotonic()
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 200
    warm = time.monotonic() - started
    assert Source.objects.get().last_ok is not None
    print(f"fallback lookup via LDAP: {cold * 1000:.0f} ms; then served locally: {warm * 1000:.0f} ms")


def test_fallback_latency_through_the_ldap_source(client, directory):
    """The figure for the report: HKP lookups that go to the directory (cold)."""
    addresses = [f"lat{i}@example.com" for i in range(5)]
    for address in addresses:
        directory.send(f"Latency <{address}>")
    keyserver_source(directory)
    timings = []
    for address in addresses:
        started = time.monotonic()
        assert client.get("/pks/lookup", {"op": "get", "search": address}).status_code == 200
        timings.append(time.monotonic() - started)
    print(
        f"LDAP fallback over {len(timings)} lookups: median {statistics.median(timings) * 1000:.0f} ms,"
        f" max {max(timings) * 1000:.0f} ms"
    )
    assert max(timings) < 2


def test_keys_are_found_by_key_id_and_fingerprint(client, directory):
    fpr = directory.send("Kim Keyid <kim@example.com>")
    other = directory.send("Fay Fingerprint <fay@example.com>")
    keyserver_source(directory)
    response = client.get(f"/vks/v1/by-keyid/{fpr[-16:]}")
    assert response.status_code == 200
    assert openpgp.parse(response.content).certs[0].fingerprint == fpr
    response = client.get("/pks/lookup", {"op": "get", "search": f"0x{other}"})
    assert response.status_code == 200
    assert openpgp.parse(response.content).certs[0].fingerprint == other
    # a subkey's fingerprint finds its primary key (gpgSubFingerprint)
    sub = next(s.fingerprint for s in openpgp.parse(response.content).certs[0].subkeys)
    assert [openpgp.load(b).fingerprint for b in fetch(directory.url, Query("fingerprint", sub))] == [other]


def test_filter_values_are_escaped(directory):
    directory.send("Star Escaped <star@example.com>")
    assert fetch(directory.url, Query("email", "*@example.com")) == []
    assert fetch(directory.url, Query("email", "star@example.com)(objectclass=*")) == []


def test_a_disabled_entry_is_not_an_answer(directory):
    fpr = directory.send("Dora Disabled <dora@example.com>")
    assert fetch(directory.url, Query("email", "dora@example.com"))
    directory.replace(directory.key_dn(fpr), "pgpDisabled", [b"1"])
    assert fetch(directory.url, Query("email", "dora@example.com")) == []


def test_a_legacy_entry_with_the_key_in_pgpKeyV2(client, directory):
    gpg = Gpg()
    try:
        fpr = gpg.generate("Lee Legacy <lee@example.com>")
        binary = gpg.run("--export", fpr).stdout
    finally:
        gpg.close()
    directory.add(
        directory.key_dn(fpr),
        {
            "objectClass": [b"pgpKeyInfo", b"pgpKeyInfoExtra"],
            "pgpCertID": [fpr[-16:].encode()],
            "pgpUserID": [b"Lee Legacy <lee@example.com>"],
            "pgpKey": [b"(moved to pgpKeyV2)"],
            "pgpKeyV2": [binary],
        },
    )
    keyserver_source(directory)
    response = client.get("/pks/lookup", {"op": "get", "search": "lee@example.com"})
    assert response.status_code == 200, response.content
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
    binding = Binding.objects.get(address="pat@example.com")
    assert (binding.state, binding.validation) == (Binding.State.PUBLISHED, Binding.Validation.ORG_DIRECTORY)
    # only addresses: a key id query is not this layout's business
    assert client.get(f"/vks/v1/by-keyid/{cast.carol.key_id}").status_code == 404


def test_a_plain_directory_with_a_binary_key(client, directory):
    gpg = Gpg()
    try:
        fpr = gpg.generate("Bin Ary <bin@example.com>")
        directory.add_person("Bin Ary", "bin@example.com", gpg.run("--export", fpr).stdout, "pgpKeyV2")
    finally:
        gpg.close()
    Source.objects.create(
        name="people",
        kind="ldap",
        url=directory.url,
        authoritative_domains=["example.com"],
        # the attribute's case need not match what the server answers with
        options={
            "layout": "directory",
            "filter": "(&(objectClass=inetOrgPerson)(mail={email}))",
            "attribute": "PGPKEYV2",
        },
    )
    response = client.get("/pks/lookup", {"op": "get", "search": "bin@example.com"})
    assert response.status_code == 200, response.content
    assert openpgp.parse(response.content).certs[0].fingerprint == fpr


def test_an_unknown_address_is_a_404_in_time(client, directory):
    keyserver_source(directory)
    started = time.monotonic()
    assert client.get("/pks/lookup", {"op": "get", "search": "nobody@example.com"}).status_code == 404
    assert time.monotonic() - started < 3
    assert Source.objects.get().failures == 0


def test_a_directory_that_is_down_is_a_404_and_marked_failing(client, directory):
    Source.objects.create(
        name="down",
        kind="ldap",
        url=f"ldap://127.0.0.1:{free_port()}",
        authoritative_domains=["example.com"],
        timeout=2,
    )
    started = time.monotonic()
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 404
    assert time.monotonic() - started < 3
    source = Source.objects.get(name="down")
    assert source.failures == 1 and "cannot reach" in source.last_error


def _hang(conn: socket.socket) -> None:
    time.sleep(4)


def _garbage(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(b"\x30\x84\xff\xff\xff\xffHTTP/1.1 200 OK\r\n\r\n" * 10)
    time.sleep(1)


@pytest.mark.parametrize("behaviour", [_hang, _garbage])
def test_a_server_that_hangs_or_speaks_garbage_is_cut_at_the_timeout(client, serve_raw, behaviour):
    server = serve_raw(behaviour)
    Source.objects.create(
        name="odd",
        kind="ldap",
        url=f"ldap://127.0.0.1:{server.port}",
        authoritative_domains=["example.com"],
        timeout=1,
    )
    started = time.monotonic()
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 404
    assert time.monotonic() - started < 2.5
    source = Source.objects.get()
    assert source.failures == 1 and source.last_error.isprintable()


def test_wrong_bind_credentials_are_recorded(client, directory):
    keyserver_source(directory, bind_dn=directory.slapd.root_dn, bind_password="wrong")
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 404
    assert "bind credentials" in Source.objects.get().last_error
    with pytest.raises(SourceError) as error:
        fetch(
            directory.url,
            Query("email", "lara@example.com"),
            bind_dn=directory.slapd.root_dn,
            bind_password="x",
        )
    assert error.value.permanent


def test_a_bind_with_the_right_credentials(directory):
    directory.send("Bea Bind <bea@example.com>")
    blocks = fetch(
        directory.url,
        Query("email", "bea@example.com"),
        bind_dn=directory.slapd.root_dn,
        bind_password=directory.slapd.root_pw,
        base_dn="dc=example,dc=com",
    )
    assert len(blocks) == 1


def test_the_ssrf_guard_applies_to_the_directory(client, directory, settings):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    keyserver_source(directory)
    assert client.get("/pks/lookup", {"op": "get", "search": "lara@example.com"}).status_code == 404
    assert "non-public" in Source.objects.get().last_error


def test_starttls_verifies_the_directory_certificate(directory):
    directory.send("Tess Tls <tess@example.com>")
    query = Query("email", "tess@example.com")
    assert len(fetch(directory.url, query, starttls=True, ca_file=directory.slapd.cafile)) == 1
    # the throwaway CA of the test server is not among the system's CAs
    with pytest.raises(SourceError):
        fetch(directory.url, query, starttls=True)


def test_size_and_byte_caps(directory, settings):
    directory.send("Cap One <cap@example.com>")
    directory.send("Cap Two <cap@example.com>")
    query = Query("email", "cap@example.com")
    assert len(fetch(directory.url, query)) == 2
    with pytest.raises(SourceError, match="too many entries") as error:
        fetch(directory.url, query, size_limit=1)
    assert error.value.permanent
    settings.FEDERATION_MAX_RESPONSE_BYTES = 500
    with pytest.raises(SourceError, match="larger than 500 bytes"):
        fetch(directory.url, query)


def test_bad_options_are_clear_errors(directory):
    query = Query("email", "a@example.com")
    with pytest.raises(SourceError, match="no cn=PGPServerInfo"):
        fetch(directory.url, query, base_dn="ou=Nowhere,o=elsewhere")
    with pytest.raises(SourceError, match="unknown layout"):
        fetch(directory.url, query, layout="x")
    with pytest.raises(SourceError, match=r"\{email\}"):
        fetch(directory.url, query, layout="directory", filter="(mail=*)")
    with pytest.raises(SourceError, match="ldap:// or ldaps://"):
        fetch("http://127.0.0.1", query)
    with pytest.raises(SourceError, match="invalid URL"):
        fetch("ldap://127.0.0.1:99999", query)


def test_without_python_ldap_the_source_says_so(client, monkeypatch, settings):
    monkeypatch.setitem(sys.modules, "ldap", None)  # `import ldap` now fails
    monkeypatch.delitem(sys.modules, "federation.sources.ldap", raising=False)
    import federation.sources

    monkeypatch.delattr(federation.sources, "ldap", raising=False)
    upstream = upstream_for(Source(name="x", kind="ldap", url="ldap://127.0.0.1"))
    with pytest.raises(SourceError, match="python-ldap") as error:
        upstream.fetch(Query("email", "a@example.com"))
    assert error.value.permanent
    Source.objects.create(
        name="x", kind="ldap", url="ldap://127.0.0.1", authoritative_domains=["example.com"]
    )
    assert client.get("/pks/lookup", {"op": "get", "search": "a@example.com"}).status_code == 404
    assert "python-ldap" in Source.objects.get().last_error
    response = client.get("/ldap-relay", {"server": "127.0.0.1", "search": "a@example.com"})
    assert response.status_code == 503
    assert "python-ldap" in response.json()["error"]["message"]


# -- ldap-relay ------------------------------------------------------------------------


def relay(client, directory, address: str):
    return client.get("/ldap-relay", {"server": f"127.0.0.1:{directory.slapd.port}", "search": address})


def test_the_relay_answers_for_an_allowed_host(client, directory, settings):
    fpr = directory.send("Rae Relay <rae@example.com>")
    directory.gpg.run("--quick-add-uid", fpr, "Rae Elsewhere <rae@elsewhere.example>")
    directory.gpg.run("--send-keys", fpr)
    settings.LDAP_RELAY_ALLOWED_HOSTS = [f"127.0.0.1:{directory.slapd.port}"]
    response = relay(client, directory, "RAE@example.com")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    [cert] = openpgp.parse(response.content).certs
    assert cert.fingerprint == fpr
    assert [u.value for u in cert.user_ids] == ["Rae Relay <rae@example.com>"]  # reduced to the address
    assert not Key.objects.exists() and not Binding.objects.exists()  # relayed, not stored
    assert relay(client, directory, "nobody@example.com").status_code == 404


def test_the_relay_may_ask_the_configured_ldap_sources(client, directory):
    fpr = directory.send("Sol Source <sol@example.org>")
    keyserver_source(directory)
    response = relay(client, directory, "sol@example.org")
    assert response.status_code == 200, response.content
    assert openpgp.parse(response.content).certs[0].fingerprint == fpr


def test_the_relay_never_relays_secret_or_blocked_keys(client, directory, settings):
    settings.LDAP_RELAY_ALLOWED_HOSTS = [f"127.0.0.1:{directory.slapd.port}"]
    gpg = Gpg()
    try:
        fpr = gpg.generate("Sid Secret <sid@example.com>")
        secret = gpg.run("--export-secret-keys", "--armor", fpr).stdout
    finally:
        gpg.close()
    directory.add(
        directory.key_dn(fpr),
        {
            "objectClass": [b"pgpKeyInfo"],
            "pgpCertID": [fpr[-16:].encode()],
            "gpgMailbox": [b"sid@example.com"],
            "pgpKey": [secret],
        },
    )
    response = relay(client, directory, "sid@example.com")
    assert response.status_code == 404 and b"PRIVATE" not in response.content

    blocked = directory.send("Blake Blocked <blake@example.com>")
    assert relay(client, directory, "blake@example.com").status_code == 200
    PolicyBlock.objects.create(fingerprint=blocked, reason="test")
    assert relay(client, directory, "blake@example.com").status_code == 404


def test_the_relay_refuses_hosts_not_allowed(client, directory, settings):
    response = client.get("/ldap-relay", {"server": "ldap.elsewhere.example", "search": "rae@example.com"})
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": 403,
        "message": "This LDAP server may not be queried through this relay.",
    }
    # keys.<domain of the address> is allowed on the LDAP port only, not as a port scanner
    response = client.get("/ldap-relay", {"server": "keys.example.com:22", "search": "rae@example.com"})
    assert response.status_code == 403
    # an allowed host means its LDAP port
    settings.LDAP_RELAY_ALLOWED_HOSTS = ["127.0.0.1"]
    assert relay(client, directory, "rae@example.com").status_code == 403


@needs_python_ldap
def test_the_relay_asks_keys_of_the_domain_and_answers_404_when_nothing_listens(client, settings):
    settings.FEDERATION_HOST_MAP = {"keys.example.com": "127.0.0.1"}
    started = time.monotonic()
    response = client.get("/ldap-relay", {"server": "keys.example.com", "search": "rae@example.com"})
    assert time.monotonic() - started < settings.FEDERATION_SOURCE_TIMEOUT + 1
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No OpenPGP LDAP server on this address."


def test_loopback_needs_the_allowed_networks(client, directory, settings):
    directory.send("Lou Loopback <lou@example.com>")
    settings.LDAP_RELAY_ALLOWED_HOSTS = [f"127.0.0.1:{directory.slapd.port}"]
    assert relay(client, directory, "lou@example.com").status_code == 200
    settings.FEDERATION_ALLOWED_NETWORKS = []
    response = relay(client, directory, "lou@example.com")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Private and loopback addresses may not be queried."


@pytest.mark.parametrize("server", ["10.0.0.1", "keys.example.com", "169.254.169.254", "127.0.0.1"])
def test_the_relay_refuses_private_targets(client, settings, server):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    settings.LDAP_RELAY_ALLOWED_HOSTS = ["10.0.0.1", "169.254.169.254", "127.0.0.1"]
    settings.FEDERATION_HOST_MAP = {"keys.example.com": "10.1.2.3"}
    response = client.get("/ldap-relay", {"server": server, "search": "rae@example.com"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"server": "keys.example.com", "search": "x@[127.0.0.1]"},
        {"server": "keys.example.com", "search": "not-an-address"},
        {"server": "keys.example.com"},
        {"server": "ldap://evil/", "search": "rae@example.com"},
        {"server": "keys.example.com:99999", "search": "rae@example.com"},
        {"server": "keys.example.com:0", "search": "rae@example.com"},
        {"server": "[::1]", "search": "rae@example.com"},
        {"server": "evil.example/x", "search": "rae@example.com"},
        {"search": "rae@example.com"},
    ],
)
def test_the_relay_refuses_bad_input(client, params):
    response = client.get("/ldap-relay", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_the_relay_is_rate_limited(client, settings):
    settings.FEDERATION_RATE_PER_CLIENT = "2/60"
    settings.FEDERATION_HOST_MAP = {"keys.example.com": "10.1.2.3"}
    params = {"server": "keys.example.com", "search": "rae@example.com"}
    assert [client.get("/ldap-relay", params).status_code for _ in range(3)] == [403, 403, 429]


# -- directory check ---------------------------------------------------------------------


def test_directory_check_says_whether_a_fingerprint_is_the_directorys(client, directory):
    fpr = directory.send("Dana Check <dana@example.com>")
    keyserver_source(directory)
    spaced = " ".join(fpr[i : i + 4] for i in range(0, 40, 4)).lower()
    match = client.get("/api/v1/directory-check", {"email": "dana@example.com", "fingerprint": spaced}).json()
    assert match == {"match": True, "fingerprints": [fpr]}
    other = client.get(
        "/api/v1/directory-check", {"email": "dana@example.com", "fingerprint": "0x" + "0" * 40}
    ).json()
    assert other == {"match": False, "fingerprints": [fpr]}
    assert not Key.objects.exists()  # asked afresh, nothing stored
    # a second key for the address: both listed; asked afresh each time
    second = directory.send("Dana Again <dana@example.com>")
    answer = client.get(
        "/api/v1/directory-check", {"email": "dana@example.com", "fingerprint": second}
    ).json()
    assert answer["match"] and sorted(answer["fingerprints"]) == sorted([fpr, second])


def test_directory_check_without_a_directory_for_the_domain(client):
    answer = client.get("/api/v1/directory-check", {"email": "a@example.org", "fingerprint": "A" * 40})
    assert answer.json() == {"match": False, "fingerprints": []}


def test_directory_check_when_the_directory_cannot_be_asked(client):
    Source.objects.create(
        name="down",
        kind="ldap",
        url=f"ldap://127.0.0.1:{free_port()}",
        authoritative_domains=["example.com"],
        timeout=2,
    )
    response = client.get("/api/v1/directory-check", {"email": "a@example.com", "fingerprint": "A" * 40})
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "The organisation's directory could not be asked."


@pytest.mark.parametrize(
    "params",
    [
        {"email": "a@example.com", "fingerprint": "1234"},
        {"email": "a@example.com", "fingerprint": "A" * 16},
        {"email": "bad", "fingerprint": "A" * 40},
        {"email": "a@example.com"},
        {},
    ],
)
def test_directory_check_refuses_bad_input(client, params):
    response = client.get("/api/v1/directory-check", params)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


# -- real clients end to end -----------------------------------------------------------------


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
