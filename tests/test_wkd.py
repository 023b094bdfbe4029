"""Web Key Directory: hashes, both methods, policy, what is (not) served, real clients."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.db import connection, transaction

from keys import clock, openpgp, rows
from keys.identifiers import normalize_email, wkd_hash, zbase32
from keys.models import Binding, Key

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
WKS_CLIENT = "/usr/lib/gnupg/gpg-wks-client"
IDN = "xn--bcher-kva.example"  # bücher.example


@pytest.fixture(autouse=True)
def _wkd(settings):
    settings.WKD_DOMAINS = ["example.org", "work.example.com", IDN]
    settings.ALLOWED_HOSTS = ["*"]


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def tool(path: str) -> str:
    found = shutil.which(path)
    if not found:
        pytest.fail(f"{path} is not installed (apt-get install gnupg gpg-wks-client sq)")
    return found


def sha1_zb32(text: str) -> str:
    return zbase32(hashlib.sha1(text.encode()).digest())


# -- the hashed local part (section 3.1) -------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org",
        "Joe.Doe@Example.ORG",
        "a+b@example.org",
        "first.last+tag@example.org",
        "Dörte@example.org",
        "ÄLICE@example.org",
        "user@bücher.example",
    ],
)
def test_wkd_hashes_equal_gnupgs(address):
    reference = subprocess.run(
        [tool(WKS_CLIENT), "--print-wkd-hash", address], capture_output=True, check=True
    )
    expected = reference.stdout.decode().split()[0]
    assert wkd_hash(normalize_email(address)) == expected


def test_the_drafts_own_example():
    assert wkd_hash(normalize_email("Joe.Doe@Example.ORG")) == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"


def test_only_ascii_is_lowercased_as_the_draft_says_and_sq_027_differs():
    """Section 3.1 maps only the ASCII letters A-Z to lowercase before hashing.

    gpg-wks-client and we hash "Älice" for ÄLICE@example.org; sq 0.27 lowercases
    all of Unicode and asks for "älice", which no draft-conforming directory
    has. So sq cannot find addresses whose local part has non-ASCII capitals;
    for everything else it agrees with gpg (and keeps the case of l=).
    """
    ours = wkd_hash(normalize_email("ÄLICE@example.org"))
    assert ours == sha1_zb32("Älice") != sha1_zb32("älice")
    sq_url = subprocess.run(
        [tool("sq"), "wkd", "url", "ÄLICE@example.org"], capture_output=True, check=True
    ).stdout.decode()
    assert f"/hu/{sha1_zb32('älice')}?" in sq_url
    sq_ascii = subprocess.run(
        [tool("sq"), "wkd", "direct-url", "Joe.Doe@Example.ORG"], capture_output=True, check=True
    ).stdout.decode()
    assert sq_ascii.strip().endswith(f"/hu/{wkd_hash('joe.doe@example.org')}?l=Joe.Doe")


# -- what is served ----------------------------------------------------------------------


def direct(client, address: str, method: str = "get", local: str | None = None, host: str | None = None):
    local_part, domain = address.split("@")
    path = f"/.well-known/openpgpkey/hu/{wkd_hash(address)}?l={local or local_part}"
    return getattr(client, method)(path, HTTP_HOST=host or domain)


def advanced(
    client, address: str, method: str = "get", host: str | None = None, path_domain: str | None = None
):
    local_part, domain = address.split("@")
    path = f"/.well-known/openpgpkey/{path_domain or domain}/hu/{wkd_hash(address)}?l={local_part}"
    return getattr(client, method)(path, HTTP_HOST=host or f"openpgpkey.{domain}")


def served(response) -> list[tuple[str, list[str]]]:
    """(fingerprint, user IDs) of each key in a WKD answer, in order."""
    return [(c.fingerprint, [u.value for u in c.user_ids]) for c in openpgp.parse(response.content).certs]


def test_a_published_address_is_served_by_both_methods_with_only_its_user_id(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    for response in [direct(ks.client, "alice@example.org"), advanced(ks.client, "alice@example.org")]:
        assert response.status_code == 200
        assert response["Content-Type"] == "application/octet-stream"
        assert not response.content.startswith(b"-----")  # binary, never armor (section 3.1)
        assert served(response) == [(cast.alice.fingerprint, ["Alice Example <alice@example.org>"])]
        assert response["Access-Control-Allow-Origin"] == "*"
    assert served(advanced(ks.client, "alice@work.example.com")) == [
        (cast.alice.fingerprint, ["Alice Work <alice@work.example.com>"])
    ]
    # The other domain's address under this domain's name is no address at all.
    assert direct(ks.client, "alice@example.org", host="work.example.com").status_code == 200
    assert (
        ks.client.get(
            f"/.well-known/openpgpkey/example.org/hu/{wkd_hash('alice@work.example.com')}"
        ).status_code
        == 200
    )  # same local part, same hash: alice@example.org's key
    assert direct(ks.client, "carol@example.org").status_code == 404


def test_head_answers_the_headers_without_a_body(ks, cast):
    ks.publish(cast.carol.data, "carol@example.org")
    get = advanced(ks.client, "carol@example.org")
    for head in [
        advanced(ks.client, "carol@example.org", "head"),
        direct(ks.client, "carol@example.org", "head"),
    ]:
        assert head.status_code == 200 and head.content == b""
        assert head["Content-Type"] == "application/octet-stream"
        assert head["Access-Control-Allow-Origin"] == "*"
    assert get.content
    assert advanced(ks.client, "dave@example.org", "head").status_code == 404


def test_the_content_and_case_of_l_do_not_matter(ks, cast):
    ks.publish(cast.carol.data, "carol@example.org")
    for local in ["carol", "CAROL", "Carol", "nonsense", ""]:
        assert direct(ks.client, "carol@example.org", local=local).status_code == 200
    hashed = wkd_hash("carol@example.org")
    assert ks.client.get(f"/.well-known/openpgpkey/hu/{hashed}", HTTP_HOST="example.org").status_code == 200


def test_the_host_may_carry_a_port_capitals_or_a_trailing_dot(ks, cast):
    ks.publish(cast.carol.data, "carol@example.org")
    for host in ["example.org:443", "EXAMPLE.ORG", "example.org.", "Example.Org.:8443"]:
        assert direct(ks.client, "carol@example.org", host=host).status_code == 200, host
    for host in ["openpgpkey.example.org", "www.example.org", "127.0.0.1", "[::1]:443"]:
        assert direct(ks.client, "carol@example.org", host=host).status_code == 404, host


def test_pending_and_unpublished_addresses_are_not_served_and_a_revoked_key_stops(ks, cast):
    answer = ks.upload(cast.alice.data).json()
    assert direct(ks.client, "alice@example.org").status_code == 404  # uploaded, unconfirmed
    ks.request_verify(answer["token"], ["alice@example.org"])
    assert advanced(ks.client, "alice@example.org").status_code == 404  # pending
    ks.confirm("alice@example.org")
    assert advanced(ks.client, "alice@example.org").status_code == 200
    assert advanced(ks.client, "alice@work.example.com").status_code == 404  # never requested
    ks.upload(cast.alice_revoked.data)
    assert advanced(ks.client, "alice@example.org").status_code == 404
    assert direct(ks.client, "alice@example.org").status_code == 404


@pytest.mark.parametrize("state", [s for s in Binding.State if s != Binding.State.PUBLISHED])
def test_only_the_published_state_is_served(ks, cast, state):
    """The filter is on the state, not on an empty certificate: a binding that
    keeps its per-address certificate in any other state is still not served."""
    ks.publish(cast.carol.data, "carol@example.org")
    Binding.objects.filter(address="carol@example.org").update(state=state)
    assert bytes(Binding.objects.get(address="carol@example.org").certificate)
    assert advanced(ks.client, "carol@example.org").status_code == 404
    assert direct(ks.client, "carol@example.org").status_code == 404


def test_a_key_removed_by_policy_is_not_served(ks, cast):
    ks.publish(cast.carol.data, "carol@example.org")
    Key.objects.filter(fingerprint=cast.carol.fingerprint).update(blocked=True)
    assert advanced(ks.client, "carol@example.org").status_code == 404


def test_two_keys_for_one_address_are_concatenated_newest_and_valid_first(ks, cast, gpg_factory):
    ks.publish(cast.alice.data, "alice@example.org")
    gpg = gpg_factory()
    newer = gpg.generate("Alice Laptop <alice@example.org>")
    ks.publish(gpg.run("--export", "--armor", newer).stdout, "alice@example.org")
    for response in [advanced(ks.client, "alice@example.org"), direct(ks.client, "alice@example.org")]:
        assert served(response) == [
            (newer, ["Alice Laptop <alice@example.org>"]),
            (cast.alice.fingerprint, ["Alice Example <alice@example.org>"]),
        ]
    # An expired key goes after the valid ones, however new it is.
    Key.objects.filter(fingerprint=newer).update(expires="2001-01-01T00:00:00Z")
    fingerprints = [f for f, _ in served(advanced(ks.client, "alice@example.org"))]
    assert fingerprints == [cast.alice.fingerprint, newer]


def test_a_hit_is_one_query_on_the_wkd_index(ks, cast, django_assert_num_queries):
    ks.publish(cast.carol.data, "carol@example.org")
    with django_assert_num_queries(1):
        assert advanced(ks.client, "carol@example.org").status_code == 200
    with django_assert_num_queries(1):
        assert direct(ks.client, "carol@example.org").status_code == 200
    # The planner would scan a table this small; forbid scans to show the index serves it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN " + rows.statement("wkd"),
            ["example.org", wkd_hash("carol@example.org"), "published", clock.now()],
        )
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "binding_wkd" in plan, plan


def test_an_internationalised_domain_is_served_by_its_a_label_and_its_unicode_name(ks, gpg_factory):
    gpg = gpg_factory()
    fingerprint = gpg.generate("Ute <ute@bücher.example>")
    ks.publish(gpg.run("--export", "--armor", fingerprint).stdout, f"ute@{IDN}")
    address = f"ute@{IDN}"
    assert Binding.objects.get(address=address).state == Binding.State.PUBLISHED
    # sq: the Unicode name in the path, the A-label in Host; gpg: the Unicode name in both
    # (Django refuses a non-ASCII Host before any view, so only the first two can arrive).
    for response in [
        advanced(ks.client, address, path_domain="bücher.example"),
        advanced(ks.client, address, path_domain="BÜCHER.example"),
        advanced(ks.client, address),
        direct(ks.client, address),
    ]:
        assert [f for f, _ in served(response)] == [fingerprint]


def test_domains_not_served_are_404_on_every_file(ks, cast, settings):
    settings.WKS_SUBMISSION_ADDRESS = "keys@{domain}"
    ks.publish(cast.bob.data, "bob@example.net")  # example.net is not a WKD domain here
    assert advanced(ks.client, "bob@example.net").status_code == 404
    assert direct(ks.client, "bob@example.net").status_code == 404
    for path in ["policy", "submission-address"]:
        assert ks.client.get(f"/.well-known/openpgpkey/example.net/{path}").status_code == 404
        assert ks.client.get(f"/.well-known/openpgpkey/{path}", HTTP_HOST="example.net").status_code == 404


def test_policy_for_every_served_domain_and_submission_address_when_configured(client, settings):
    for response in [
        client.get("/.well-known/openpgpkey/policy", HTTP_HOST="example.org"),
        client.get("/.well-known/openpgpkey/example.org/policy", HTTP_HOST="openpgpkey.example.org"),
        client.get("/.well-known/openpgpkey/work.example.com/policy", HTTP_HOST="keys.example.net"),
        client.head("/.well-known/openpgpkey/policy", HTTP_HOST="work.example.com"),
    ]:
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert response.content == b""  # no flags claimed (section 4.5)
        assert response["Access-Control-Allow-Origin"] == "*"
    assert client.get("/.well-known/openpgpkey/example.org/submission-address").status_code == 404
    settings.WKS_SUBMISSION_ADDRESS = "key-submission@{domain}"
    response = client.get("/.well-known/openpgpkey/example.org/submission-address")
    assert response.content == b"key-submission@example.org\n"
    direct_answer = client.get("/.well-known/openpgpkey/submission-address", HTTP_HOST="work.example.com")
    assert direct_answer.content == b"key-submission@work.example.com\n"
    settings.WKS_SUBMISSION_ADDRESS = "keys@example.org"
    assert client.get("/.well-known/openpgpkey/submission-address", HTTP_HOST="work.example.com").content == (
        b"keys@example.org\n"
    )


def test_the_advanced_method_can_be_limited_to_the_openpgpkey_host(ks, cast, settings):
    ks.publish(cast.carol.data, "carol@example.org")
    assert advanced(ks.client, "carol@example.org", host="keys.example.com").status_code == 200
    settings.WKD_ADVANCED_ANY_HOST = False
    assert advanced(ks.client, "carol@example.org", host="keys.example.com").status_code == 404
    assert advanced(ks.client, "carol@example.org", host="openpgpkey.work.example.com").status_code == 404
    assert advanced(ks.client, "carol@example.org", host="openpgpkey.example.org:443").status_code == 200
    assert advanced(ks.client, "carol@example.org").status_code == 200
    policy = "/.well-known/openpgpkey/example.org/policy"
    assert ks.client.get(policy, HTTP_HOST="keys.example.com").status_code == 404
    assert ks.client.get(policy, HTTP_HOST="openpgpkey.example.org").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/openpgpkey/",
        "/.well-known/openpgpkey/hu/",
        "/.well-known/openpgpkey/example.org/",
        "/.well-known/openpgpkey/example.org/hu/",
        "/.well-known/openpgpkey/hu/short",
        "/.well-known/openpgpkey/hu/" + "A" * 32,  # capitals are not z-base-32
        "/.well-known/openpgpkey/hu/" + "l" * 32,  # nor is l
        "/.well-known/openpgpkey/hu/" + "y" * 33,
        "/.well-known/openpgpkey/example.org/hu/../../policy",
        "/.well-known/openpgpkey/exa%00mple.org/policy",
    ],
)
def test_no_listings_and_malformed_hashes_are_404(client, path):
    response = client.get(path, HTTP_HOST="example.org")
    assert response.status_code == 404
    assert response["Access-Control-Allow-Origin"] == "*"


def test_errors_are_plain_text_and_only_get_and_head_are_allowed(client):
    missing = client.get(
        f"/.well-known/openpgpkey/hu/{wkd_hash('nobody@example.org')}", HTTP_HOST="example.org"
    )
    assert missing.status_code == 404
    assert missing["Content-Type"] == "text/plain; charset=utf-8"
    assert missing.content.decode().strip() == "No key found."
    assert client.post("/.well-known/openpgpkey/policy", HTTP_HOST="example.org").status_code == 405
    preflight = client.options("/.well-known/openpgpkey/example.org/policy")
    assert preflight.status_code == 204 and preflight["Access-Control-Allow-Origin"] == "*"


# -- real clients over HTTPS on port 443 ------------------------------------------------


@pytest.fixture
def tls_site(live_server, tmp_path):
    from .wkd_tls import TlsFront, make_certificates

    names = ["example.org", "openpgpkey.example.org"]
    ca, leaf, key = make_certificates(tmp_path, names)
    try:
        # Other tests (the WKD source's) use the port too: wait for it a little.
        front = TlsFront(leaf, key, urlparse(live_server.url).port or 80, wait=30)
    except PermissionError:
        pytest.fail("binding 127.0.0.1:443 needs root (or CAP_NET_BIND_SERVICE)")
    except OSError as exc:
        pytest.fail(f"127.0.0.1:443 stayed taken for 30 s: {exc}")
    yield ca, front
    front.close()


def expected_head(method: str, address: str) -> tuple[str, str]:
    """(request line prefix, Host) the client must send for `method` (section 3.1)."""
    local, domain = address.split("@")
    if method == "direct":
        return f"GET /.well-known/openpgpkey/hu/{wkd_hash(address)}?l={local}", domain
    return f"GET /.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}?l={local}", f"openpgpkey.{domain}"


def names_for(method: str) -> list[str]:
    # Only while openpgpkey.<domain> resolves do gpg and sq use the advanced method.
    return ["example.org"] + (["openpgpkey.example.org"] if method == "advanced" else [])


@pytest.mark.gpg
@pytest.mark.parametrize("method", ["direct", "advanced"])
def test_gpg_fetches_over_wkd(ks, cast, tls_site, tmp_path, method):
    from .wkd_tls import run_in_namespace

    ca, front = tls_site
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    hosts_before = Path("/etc/hosts").read_bytes()
    bundle_before = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    locate = ["--auto-key-locate", "clear,nodefault,wkd", "--locate-external-keys", "alice@example.org"]
    output = run_in_namespace(
        names_for(method),
        ca,
        [[tool("gpg"), "--batch", *locate], [tool("gpg"), "--batch", "--with-colons", "--list-keys"]],
        tmp_path,
    )
    assert f"fpr:::::::::{cast.alice.fingerprint}:" in output, output
    uids = [line.split(":")[9] for line in output.splitlines() if line.startswith("uid:")]
    assert uids == ["Alice Example <alice@example.org>"], output  # only the matching user ID
    line, host = expected_head(method, "alice@example.org")
    assert [h for h in front.heads if h[0].startswith(line) and h[1] == host], front.heads
    assert Path("/etc/hosts").read_bytes() == hosts_before  # nothing on the machine changed
    assert Path("/etc/ssl/certs/ca-certificates.crt").read_bytes() == bundle_before


@pytest.mark.sq
@pytest.mark.parametrize("method", ["direct", "advanced"])
def test_sq_fetches_over_wkd(ks, cast, tls_site, tmp_path, method):
    from .wkd_tls import run_in_namespace

    ca, front = tls_site
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    out = tmp_path / "fetched.pgp"
    get = [tool("sq"), "wkd", "get", "--binary", "-o"]
    output = run_in_namespace(
        names_for(method),
        ca,
        # sq 0.27 keeps the case of l= but then drops a fetched key unless a user ID
        # has the address exactly as typed: the mixed-case run reaches us and imports nothing.
        [[*get, str(out), "alice@example.org"], [*get, str(tmp_path / "mixed.pgp"), "Alice@example.org"]],
        tmp_path,
    )
    assert out.exists(), output
    assert served_bytes(out.read_bytes()) == [(cast.alice.fingerprint, ["Alice Example <alice@example.org>"])]
    line, host = expected_head(method, "alice@example.org")
    assert [h for h in front.heads if h[0].startswith(line) and h[1] == host], front.heads
    mixed = line.replace("?l=alice", "?l=Alice")
    assert [h for h in front.heads if h[0].startswith(mixed) and h[1] == host], front.heads
    assert "not found in Cert's userids" in output


def served_bytes(data: bytes) -> list[tuple[str, list[str]]]:
    return [(c.fingerprint, [u.value for u in c.user_ids]) for c in openpgp.parse(data).certs]


def test_the_running_server_answers_head_without_a_body_over_tls(ks, cast, tls_site, tmp_path):
    """The docs' curl example, against the real server: HEAD has the length, not the bytes."""
    ca, _front = tls_site
    ks.publish(cast.carol.data, "carol@example.org")
    url = f"https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/{wkd_hash('carol@example.org')}"
    curl = [tool("curl"), "--silent", "--show-error", "--cacert", str(ca)]
    resolve = ["--resolve", "openpgpkey.example.org:443:127.0.0.1"]
    head = subprocess.run([*curl, *resolve, "--head", url], capture_output=True, timeout=30, check=True)
    headers = head.stdout.decode().lower()
    assert headers.startswith("http/1.1 200"), headers
    assert "content-type: application/octet-stream" in headers
    assert "access-control-allow-origin: *" in headers
    body = subprocess.run(
        [*curl, *resolve, "--output", "-", url], capture_output=True, timeout=30, check=True
    )
    assert served_bytes(body.stdout) == [(cast.carol.fingerprint, ["Carol <carol@example.org>"])]
    assert f"content-length: {len(body.stdout)}" in headers
