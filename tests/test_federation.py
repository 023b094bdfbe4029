"""Lookup with fallback against real upstreams on 127.0.0.1.

A second instance of this server (SQLite, its own process) plays
keys.openpgp.org (VKS) and an HKP peer; misbehaving upstreams come from
tests/upstreams.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from keys.identifiers import wkd_hash
from keys.models import Binding, Key, Source

from . import upstreams
from .instance import Instance
from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, cast) -> Iterator[Instance]:
    """An instance with bob and carol published (and erin only uploaded)."""
    instance = Instance(tmp_path_factory.mktemp("upstream"))
    instance.publish(cast.bob.text, "bob@example.net")
    instance.publish(cast.carol.text, "carol@example.org")
    yield instance
    instance.stop()


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.fixture(autouse=True)
def _federation(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WKD_DOMAINS = ["example.net", "example.org"]
    settings.ALLOWED_HOSTS = ["*"]


def add_source(
    name: str, kind: str, url: str, *, domains: list[str] | None = None, order: int = 10, timeout=2.0
):
    return Source.objects.create(
        name=name, kind=kind, url=url, authoritative_domains=domains or [], order=order, timeout=timeout
    )


def wkd_status(client, address: str) -> int:
    domain = address.split("@")[1]
    return client.get(
        f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}", HTTP_HOST=f"openpgpkey.{domain}"
    ).status_code


@pytest.mark.parametrize(
    ("kind", "validation"),
    [("vks", Binding.Validation.UPSTREAM_VERIFIED), ("hkp", Binding.Validation.UPSTREAM_UNVERIFIED)],
)
def test_an_address_unknown_here_is_fetched_from_upstream_and_cached(ks, upstream, cast, kind, validation):
    add_source("upstream", kind, upstream.url)
    started = time.monotonic()
    answer = ks.hkp_get("bob@example.net")
    elapsed = time.monotonic() - started
    assert answer.status == 200, answer.text
    assert answer.fingerprints == [cast.bob.fingerprint]
    assert answer.uids == ["Bob <bob@example.net>"]
    binding = Binding.objects.get(address="bob@example.net")
    assert binding.state == Binding.State.CACHED
    assert binding.validation == validation
    assert Key.objects.get().origin == kind
    # Every lookup path serves it now, from the local copy; WKD never does.
    assert ks.get("/vks/v1/by-email/bob@example.net").fingerprints == [cast.bob.fingerprint]
    assert ks.client.get("/pub/bob@example.net").status_code == 200
    assert (
        "Bob &lt;bob@example.net&gt;" in ks.client.get("/search", {"q": "bob@example.net"}).content.decode()
    )
    assert wkd_status(ks.client, "bob@example.net") == 404
    print(f"fallback lookup via {kind}: {elapsed * 1000:.0f} ms")


def test_a_key_is_fetched_by_fingerprint_and_key_id(ks, upstream, cast):
    add_source("upstream", "vks", upstream.url)
    assert ks.hkp_get(f"0x{cast.carol.fingerprint}").uids == ["Carol <carol@example.org>"]
    Key.objects.all().delete()
    assert ks.get(f"/vks/v1/by-keyid/{cast.carol.key_id}").fingerprints == [cast.carol.fingerprint]


def test_nothing_from_upstream_is_email_confirmed_and_a_later_confirmation_wins(ks, upstream, cast):
    add_source("upstream", "vks", upstream.url)
    ks.hkp_get("bob@example.net")
    assert not Binding.objects.filter(validation=Binding.Validation.EMAIL_CONFIRMED).exists()
    ks.publish(cast.bob.data, "bob@example.net")
    binding = Binding.objects.get(address="bob@example.net")
    assert binding.state == Binding.State.PUBLISHED
    assert binding.validation == Binding.Validation.EMAIL_CONFIRMED
    assert wkd_status(ks.client, "bob@example.net") == 200


def test_a_local_published_key_is_served_without_asking_upstream(ks, serve_raw, cast):
    silent = serve_raw(upstreams.silent)
    add_source("silent", "hkp", silent.url)
    ks.publish(cast.bob.data, "bob@example.net")
    assert ks.hkp_get("bob@example.net").status == 200
    assert silent.connections == 0


def test_the_organisations_directory_is_the_only_authority_for_its_domain(
    ks, upstream, serve_raw, cast, gpg_factory
):
    public = serve_raw(upstreams.answer(200, cast.alice.data))
    add_source("directory", "hkp", upstream.url, domains=["example.net"], order=20)
    add_source("public", "hkp", public.url, order=10)
    answer = ks.hkp_get("bob@example.net")
    assert answer.fingerprints == [cast.bob.fingerprint]
    assert public.connections == 0  # never asked about the organisation's domain
    binding = Binding.objects.get(address="bob@example.net")
    assert (binding.state, binding.validation) == (Binding.State.PUBLISHED, Binding.Validation.ORG_DIRECTORY)
    assert wkd_status(ks.client, "bob@example.net") == 200  # org keys feed WKD
    # A public upload for the organisation's address is not published over it.
    gpg = gpg_factory()
    intruder = gpg.generate("Not Bob <bob@example.net>")
    upload = ks.upload(gpg.run("--export", "--armor", intruder).stdout).json()
    verify = ks.request_verify(upload["token"], ["bob@example.net"])
    assert verify.json()["status"]["bob@example.net"] == "unpublished"
    assert not ks.outbox
    assert ks.hkp_get("bob@example.net").fingerprints == [cast.bob.fingerprint]


def test_the_directory_can_be_asked_first_for_every_address(ks, upstream, settings, cast):
    settings.FEDERATION_ORG_FIRST = True
    add_source("directory", "hkp", upstream.url, domains=["corp.example"], order=20)
    assert ks.hkp_get("carol@example.org").fingerprints == [cast.carol.fingerprint]
    assert Binding.objects.get(address="carol@example.org").state == Binding.State.CACHED


@pytest.mark.parametrize("bad", ["silent", "garbage", "too_many", "drip"])
def test_a_failing_source_is_skipped_within_its_time_and_the_next_answers(ks, upstream, serve_raw, cast, bad):
    broken = serve_raw(getattr(upstreams, bad))
    add_source("broken", "hkp", broken.url, order=10, timeout=1.0)
    add_source("good", "vks", upstream.url, order=20)
    started = time.monotonic()
    answer = ks.hkp_get("bob@example.net")
    assert time.monotonic() - started < 4
    assert answer.fingerprints == [cast.bob.fingerprint]
    source = Source.objects.get(name="broken")
    assert source.failures == 1 and source.last_error
    assert Source.objects.get(name="good").last_ok is not None


def test_when_every_source_fails_the_client_gets_a_404_in_time(ks, serve_raw, settings):
    settings.FEDERATION_TOTAL_TIMEOUT = 2.5
    for n in range(3):
        add_source(f"silent{n}", "hkp", serve_raw(upstreams.silent).url, order=n, timeout=1.5)
    started = time.monotonic()
    for path in ["/pks/lookup?op=get&search=nobody@example.net", "/vks/v1/by-email/nobody@example.net"]:
        assert ks.client.get(path).status_code == 404
    assert ks.client.get("/pub/nobody@example.net").status_code == 404
    assert time.monotonic() - started < 3 * 2.5 + 1


def test_a_failing_source_is_left_alone_after_a_few_failures(ks, serve_raw, settings):
    settings.FEDERATION_BREAKER_FAILURES = 2
    silent = serve_raw(upstreams.garbage)
    add_source("garbage", "hkp", silent.url, timeout=1.0)
    for n in range(4):
        ks.hkp_get(f"nobody{n}@example.net")
    assert silent.connections == 2


def test_a_miss_is_cached_briefly(ks, serve_raw):
    empty = serve_raw(upstreams.answer(404, b"not found"))
    add_source("empty", "hkp", empty.url)
    assert ks.hkp_get("nobody@example.net").status == 404
    assert ks.hkp_get("nobody@example.net").status == 404
    assert empty.connections == 1


def test_fallback_lookups_are_rate_limited_per_client(ks, serve_raw, settings):
    settings.FEDERATION_RATE_PER_CLIENT = "2/60"
    empty = serve_raw(upstreams.answer(404, b"not found"))
    add_source("empty", "hkp", empty.url)
    statuses = [ks.client.get(f"/pks/lookup?op=get&search=n{n}@example.net").status_code for n in range(3)]
    assert statuses == [404, 404, 429]


def test_an_answer_that_does_not_match_the_query_is_not_served(ks, serve_raw, cast):
    liar = serve_raw(upstreams.answer(200, cast.alice.data))
    add_source("liar", "hkp", liar.url)
    assert ks.hkp_get("bob@example.net").status == 404
    assert not Binding.objects.filter(address="bob@example.net").exists()
    assert not Binding.objects.exclude(state=Binding.State.UNPUBLISHED).exists()


def test_private_upstreams_are_refused_unless_allowed(ks, upstream, settings):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    add_source("upstream", "vks", upstream.url)
    assert ks.hkp_get("bob@example.net").status == 404
    assert "non-public" in Source.objects.get().last_error


# -- the WKD source: the address's own domain, over HTTPS --------------------------------


@pytest.fixture
def wkd_upstream(tmp_path, cast):
    """Another instance serving WKD for example.org, behind TLS on 127.0.0.1:443."""
    from .wkd_tls import TlsFront, make_certificates

    instance = Instance(tmp_path / "wkd-upstream", WKD_DOMAINS="example.org", ALLOWED_HOSTS="*")
    try:  # a failed setup (port 443 taken) must not leave the instance running
        instance.publish(cast.carol.text, "carol@example.org")
        ca, leaf, key = make_certificates(tmp_path, ["example.org", "openpgpkey.example.org"])
        front = TlsFront(leaf, key, instance.port)
        try:
            yield ca, front
        finally:
            front.close()
    finally:
        instance.stop()


def test_the_wkd_source_fetches_from_the_addresss_own_domain(ks, wkd_upstream, cast, settings):
    ca, front = wkd_upstream
    settings.FEDERATION_HOST_MAP = {"openpgpkey.example.org": "127.0.0.1", "example.org": "127.0.0.1"}
    settings.FEDERATION_CA_BUNDLE = str(ca)
    add_source("wkd", "wkd", "")
    started = time.monotonic()
    answer = ks.hkp_get("carol@example.org")
    print(f"fallback lookup via WKD: {(time.monotonic() - started) * 1000:.0f} ms")
    assert answer.fingerprints == [cast.carol.fingerprint]
    binding = Binding.objects.get(address="carol@example.org")
    assert (binding.state, binding.validation) == (Binding.State.CACHED, Binding.Validation.UPSTREAM_VERIFIED)
    assert front.requests == 1
    assert wkd_status(ks.client, "carol@example.org") == 404  # fallback answers never feed our WKD


def test_the_wkd_source_refuses_a_domain_resolving_to_a_private_address(ks, settings):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    settings.FEDERATION_HOST_MAP = {"openpgpkey.example.org": "10.0.0.7"}
    add_source("wkd", "wkd", "")
    assert ks.hkp_get("carol@example.org").status == 404
    assert "non-public" in Source.objects.get().last_error


def test_the_wkd_source_is_not_asked_by_key_id(ks, settings, cast):
    add_source("wkd", "wkd", "")
    assert ks.hkp_get(f"0x{cast.carol.fingerprint}").status == 404
    assert Source.objects.get().last_ok is None and Source.objects.get().failures == 0
