"""Web Key Directory: hashes, both methods, policy, and what is (not) served."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from keys import openpgp
from keys.identifiers import normalize_email, wkd_hash
from keys.models import Binding

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
WKS_CLIENT = "/usr/lib/gnupg/gpg-wks-client"


@pytest.fixture(autouse=True)
def _wkd(settings):
    settings.WKD_DOMAINS = ["example.org", "work.example.com"]
    settings.ALLOWED_HOSTS = ["*"]


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


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
    reference = subprocess.run([WKS_CLIENT, "--print-wkd-hash", address], capture_output=True, check=True)
    expected = reference.stdout.decode().split()[0]
    assert wkd_hash(normalize_email(address)) == expected


def direct(client, address: str, method: str = "get", local: str | None = None):
    local_part, domain = address.split("@")
    path = f"/.well-known/openpgpkey/hu/{wkd_hash(address)}?l={local or local_part}"
    return getattr(client, method)(path, HTTP_HOST=domain)


def advanced(client, address: str, method: str = "get", host: str | None = None):
    domain = address.split("@")[1]
    path = f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}"
    return getattr(client, method)(path, HTTP_HOST=host or f"openpgpkey.{domain}")


def served_uids(response) -> list[str]:
    return [u.value for c in openpgp.parse(response.content).certs for u in c.user_ids]


def test_a_published_address_is_served_by_both_methods_with_only_its_user_id(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    for response in [direct(ks.client, "alice@example.org"), advanced(ks.client, "alice@example.org")]:
        assert response.status_code == 200
        assert response["Content-Type"] == "application/octet-stream"
        assert not response.content.startswith(b"-----")  # binary, not armor
        assert served_uids(response) == ["Alice Example <alice@example.org>"]
        assert response["Access-Control-Allow-Origin"] == "*"
    assert served_uids(advanced(ks.client, "alice@work.example.com")) == [
        "Alice Work <alice@work.example.com>"
    ]


def test_head_answers_without_a_body(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.publish(cast.carol.data, "carol@example.org")
    head = advanced(ks.client, "carol@example.org", "head")
    assert head.status_code == 200 and head.content == b""
    assert direct(ks.client, "carol@example.org", "head").status_code == 200


def test_the_case_of_l_does_not_matter(ks, cast):
    ks.publish(cast.carol.data, "carol@example.org")
    for local in ["carol", "CAROL", "Carol", "nonsense"]:
        assert direct(ks.client, "carol@example.org", local=local).status_code == 200


def test_unpublished_pending_cached_and_revoked_addresses_are_not_served(ks, cast):
    answer = ks.upload(cast.alice.data).json()
    assert direct(ks.client, "alice@example.org").status_code == 404
    ks.request_verify(answer["token"], ["alice@example.org"])
    assert advanced(ks.client, "alice@example.org").status_code == 404  # pending
    Binding.objects.filter(address="alice@work.example.com").update(state=Binding.State.CACHED)
    assert advanced(ks.client, "alice@work.example.com").status_code == 404  # fallback answers never
    ks.confirm("alice@example.org")
    assert advanced(ks.client, "alice@example.org").status_code == 200
    ks.upload(cast.alice_revoked.data)
    assert advanced(ks.client, "alice@example.org").status_code == 404


def test_two_keys_for_one_address_are_concatenated_newest_first(ks, cast, gpg_factory):
    ks.publish(cast.alice.data, "alice@example.org")
    gpg = gpg_factory()
    newer = gpg.generate("Alice Laptop <alice@example.org>")
    ks.publish(gpg.run("--export", "--armor", newer).stdout, "alice@example.org")
    certs = openpgp.parse(advanced(ks.client, "alice@example.org").content).certs
    assert [c.fingerprint for c in certs] == [newer, cast.alice.fingerprint]


def test_domains_not_served_are_404_on_every_file(ks, cast, settings):
    ks.publish(cast.bob.data, "bob@example.net")  # example.net is not a WKD domain here
    assert advanced(ks.client, "bob@example.net").status_code == 404
    assert direct(ks.client, "bob@example.net").status_code == 404
    assert ks.client.get("/.well-known/openpgpkey/example.net/policy").status_code == 404
    assert ks.client.get("/.well-known/openpgpkey/policy", HTTP_HOST="example.net").status_code == 404


def test_policy_for_every_served_domain_and_submission_address_when_configured(client, settings):
    for response in [
        client.get("/.well-known/openpgpkey/policy", HTTP_HOST="example.org"),
        client.get("/.well-known/openpgpkey/example.org/policy", HTTP_HOST="openpgpkey.example.org"),
    ]:
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "*"
    assert client.get("/.well-known/openpgpkey/example.org/submission-address").status_code == 404
    settings.WKD_SUBMISSION_ADDRESS = "key-submission@{domain}"
    response = client.get("/.well-known/openpgpkey/example.org/submission-address")
    assert response.content == b"key-submission@example.org\n"
    direct_answer = client.get("/.well-known/openpgpkey/submission-address", HTTP_HOST="work.example.com")
    assert direct_answer.content == b"key-submission@work.example.com\n"


def test_the_advanced_method_can_be_limited_to_the_openpgpkey_host(ks, cast, settings):
    ks.publish(cast.carol.data, "carol@example.org")
    assert advanced(ks.client, "carol@example.org", host="keys.example.com").status_code == 200
    settings.WKD_ADVANCED_ANY_HOST = False
    assert advanced(ks.client, "carol@example.org", host="keys.example.com").status_code == 404
    assert advanced(ks.client, "carol@example.org").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/openpgpkey/",
        "/.well-known/openpgpkey/hu/",
        "/.well-known/openpgpkey/example.org/hu/",
        "/.well-known/openpgpkey/hu/short",
        "/.well-known/openpgpkey/hu/" + "A" * 32,
        "/.well-known/openpgpkey/example.org/hu/../../policy",
    ],
)
def test_no_listings_and_malformed_hashes_are_404(client, path):
    assert client.get(path, HTTP_HOST="example.org").status_code == 404


# -- real clients over HTTPS on port 443 ------------------------------------------------


@pytest.fixture
def tls_site(live_server, tmp_path):
    from urllib.parse import urlparse

    from .wkd_tls import TlsFront, make_certificates

    names = ["example.org", "openpgpkey.example.org"]
    ca, leaf, key = make_certificates(tmp_path, names)
    try:
        front = TlsFront(leaf, key, urlparse(live_server.url).port or 80)
    except PermissionError:
        pytest.fail("binding 127.0.0.1:443 needs root")
    except OSError as exc:
        pytest.fail(f"127.0.0.1:443 is taken: {exc}")
    yield ca, front
    front.close()


@pytest.mark.parametrize("method", ["direct", "advanced"])
def test_gpg_fetches_over_wkd(ks, cast, tls_site, tmp_path, method):
    from .wkd_tls import run_in_namespace

    ca, front = tls_site
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    hosts_before = Path("/etc/hosts").read_text()
    # Only when openpgpkey.<domain> resolves does gpg use the advanced method.
    names = ["example.org"] + (["openpgpkey.example.org"] if method == "advanced" else [])
    output = run_in_namespace(
        names,
        ca,
        [
            [
                "gpg",
                "--batch",
                "--auto-key-locate",
                "clear,nodefault,wkd",
                "--locate-external-keys",
                "alice@example.org",
            ],
            ["gpg", "--batch", "--with-colons", "--list-keys"],
        ],
        tmp_path,
    )
    assert f"fpr:::::::::{cast.alice.fingerprint}:" in output, output
    assert "Alice Example <alice@example.org>" in output
    assert "alice@work.example.com" not in output  # only the matching user ID travels
    assert front.requests >= 1
    assert Path("/etc/hosts").read_text() == hosts_before  # nothing on the machine changed
