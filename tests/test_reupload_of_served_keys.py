"""Re-uploading a key that lookups already serve never hides it.

A key mirrored from a dump (`import_dump --bind-addresses`) or fetched from
an upstream by a lookup is served as a cached fallback answer. When anyone
uploads it again, on any path, its addresses stay served as cached until the
owner confirms the mail the upload caused; then they are published. An
upload of a key stored unchanged writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.test import Client

from keys import openpgp
from keys.models import Binding, Event, Key, Source

from .instance import Instance
from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
ADDRESS = "bob@example.net"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, cast) -> Iterator[Instance]:
    instance = Instance(tmp_path_factory.mktemp("upstream"))
    instance.publish(cast.bob.text, ADDRESS)
    yield instance
    instance.stop()


@pytest.fixture(autouse=True)
def _federation(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def mirrored_from_a_dump(cast, tmp_path, upstream) -> None:
    dump = tmp_path / "dump.pgp"
    dump.write_bytes(openpgp.dearmor(cast.bob.data))
    state = str(tmp_path / "s.json")
    call_command("import_dump", str(dump), "--bind-addresses", "--state", state, "--quiet", stdout=StringIO())


def fetched_from_upstream(cast, tmp_path, upstream) -> None:
    Source.objects.create(name="peer", kind="hkp", url=upstream.url, timeout=3)
    # The lookup that finds nothing here asks the peer and caches its answer.
    assert Client().get(f"/pks/lookup?op=get&options=mr&search={ADDRESS}").status_code == 200


def upload_hkp(client, cast) -> None:
    assert client.post("/pks/add", {"keytext": cast.bob.text}).status_code == 200


def upload_vks(client, cast) -> None:
    answer = client.post("/vks/v1/upload", {"keytext": cast.bob.text}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    token = answer.json()["token"]
    asked = client.post(
        "/vks/v1/request-verify", {"token": token, "addresses": [ADDRESS]}, content_type="application/json"
    )
    assert asked.status_code == 200, asked.content


def upload_page(client, cast) -> None:
    page = client.post("/upload", {"keytext": cast.bob.text})
    assert page.status_code == 200, page.content
    token = page.context["items"][0]["token"]
    assert client.post("/upload/request-verify", {"token": token, "address": [ADDRESS]}).status_code == 200


def upload_attester(client, cast) -> None:
    answer = client.post(f"/pub/{ADDRESS}", cast.bob.text, content_type="text/plain")
    assert answer.status_code == 200, answer.content


def served(client, cast) -> dict[str, int]:
    """The status of every lookup path for the address and the key."""
    search = quote(ADDRESS)
    paths = {
        "hkp index": f"/pks/lookup?op=index&options=mr&search={search}",
        "hkp get": f"/pks/lookup?op=get&options=mr&search={search}",
        "hkp get fpr": f"/pks/lookup?op=get&options=mr&search=0x{cast.bob.fingerprint}",
        "vks by-email": f"/vks/v1/by-email/{search}",
        "attester": f"/pub/{search}",
    }
    answers = {name: client.get(path) for name, path in paths.items()}
    for name, answer in answers.items():
        if answer.status_code != 200:
            continue
        if name == "hkp index":
            assert f"pub:{cast.bob.fingerprint}:" in answer.content.decode()
        else:
            assert cast.bob.fingerprint in [c.fingerprint for c in openpgp.parse(answer.content).certs], name
    return {name: answer.status_code for name, answer in answers.items()}


def snapshot() -> tuple:
    key = Key.objects.get()
    binding = Binding.objects.get(address=ADDRESS)
    return (key.updated, bytes(key.data), binding.updated, binding.state, Event.objects.count())


ALL_200 = {"hkp index": 200, "hkp get": 200, "hkp get fpr": 200, "vks by-email": 200, "attester": 200}


@pytest.mark.parametrize("origin", [mirrored_from_a_dump, fetched_from_upstream])
@pytest.mark.parametrize("upload", [upload_hkp, upload_vks, upload_page, upload_attester])
def test_a_reupload_keeps_a_cached_key_served_until_its_owner_confirms(
    ks, client, cast, tmp_path, upstream, mailoutbox, origin, upload
):
    origin(cast, tmp_path, upstream)
    assert Binding.objects.get(address=ADDRESS).state == Binding.State.CACHED
    assert served(client, cast) == ALL_200

    upload(client, cast)
    binding = Binding.objects.get(address=ADDRESS)
    assert binding.state == Binding.State.CACHED
    assert binding.pending_since is not None
    assert [m.to for m in mailoutbox] == [[ADDRESS]]
    assert served(client, cast) == ALL_200

    # The same key again: nothing is written, no new mail (rule 8).
    before = snapshot()
    upload(client, cast)
    assert snapshot() == before
    assert len(mailoutbox) == 1
    assert served(client, cast) == ALL_200

    # The owner confirms: the address is published (and still served).
    assert ks.confirm(ADDRESS).status_code == 200
    binding.refresh_from_db()
    assert binding.state == Binding.State.PUBLISHED
    assert binding.validation == Binding.Validation.EMAIL_CONFIRMED
    assert served(client, cast) == ALL_200


def test_the_upload_answer_calls_a_cached_address_with_a_mail_out_pending(client, cast, tmp_path, upstream):
    mirrored_from_a_dump(cast, tmp_path, upstream)
    first = client.post("/pks/add", {"keytext": cast.bob.text}).content.decode()
    assert f"{ADDRESS}: pending" in first
    answer = client.post("/vks/v1/upload", {"keytext": cast.bob.text}, content_type="application/json")
    assert answer.json()["status"] == {ADDRESS: "pending"}


def test_an_unchanged_reupload_writes_nothing_and_runs_few_queries(
    client, cast, ks, django_assert_max_num_queries
):
    ks.publish(cast.alice.data, *cast.alice.emails)
    before = (Key.objects.get().updated, Event.objects.count(), list(Binding.objects.values_list("updated")))
    with django_assert_max_num_queries(8):
        answer = client.post("/pks/add", {"keytext": cast.alice.text})
    assert answer.status_code == 200
    assert cast.alice.fingerprint in answer.content.decode()
    after = (Key.objects.get().updated, Event.objects.count(), list(Binding.objects.values_list("updated")))
    assert after == before


def test_an_upload_that_adds_something_is_still_merged(client, cast, ks):
    """The shortcut only takes uploads the stored copy already holds."""
    ks.publish(cast.alice.data, *cast.alice.emails)
    before = bytes(Key.objects.get().data)
    assert client.post("/pks/add", {"keytext": cast.alice_v2.text}).status_code == 200
    key = Key.objects.get()
    assert bytes(key.data) != before
    assert Event.objects.filter(action="key_updated").count() == 1


def test_a_forged_signature_in_a_reupload_changes_nothing(client, cast, ks):
    """A packet the stored copy lacks takes the full path: verified and cut."""
    uploaded = client.post("/pks/add", {"keytext": openpgp.armor(cast.forged_uid_sig.data)})
    assert uploaded.status_code == 200, uploaded.content
    before = (bytes(Key.objects.get().data), Key.objects.get().updated)
    again = client.post("/pks/add", {"keytext": openpgp.armor(cast.forged_uid_sig.data)})
    assert again.status_code == 200
    assert (bytes(Key.objects.get().data), Key.objects.get().updated) == before


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/pks/add", "keytext=garbage", "application/x-www-form-urlencoded"),
        ("/vks/v1/upload", '{"keytext": "garbage"}', "application/json"),
        ("/vks/v1/upload", "not json", "application/json"),
        ("/upload", "keytext=garbage", "application/x-www-form-urlencoded"),
        ("/pub/someone@example.org", "garbage", "text/plain"),
    ],
)
def test_a_rate_limited_upload_is_refused_before_any_parsing_or_query(
    client, settings, path, body, content_type, django_assert_num_queries
):
    settings.RATE_UPLOAD_PER_CLIENT = "0/3600"
    with django_assert_num_queries(0):
        answer = client.generic("POST", path, body, content_type=content_type)
    # Garbage would be a 400: the limit answered before the body was read.
    assert answer.status_code == 429, answer.content
