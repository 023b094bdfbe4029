"""User IDs with NUL and other control characters: refused with a reason on
every upload path and dropped from upstream answers, never a 500, nothing
stored changed."""

from __future__ import annotations

import pytest

from keys.models import Binding, Event, Key, Source

from . import upstreams
from .certs import make_cert, with_user_ids
from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)

NUL_UID = "Nul\x00 Byte <nul@example.org>"


def armored(cert) -> str:
    return str(cert)  # the public part only


def upload_on(path: str, client, text: str):
    if path == "hkp":
        return client.post("/pks/add", {"keytext": text})
    if path == "vks":
        return client.post("/vks/v1/upload", {"keytext": text}, content_type="application/json")
    if path == "page":
        return client.post("/upload", {"keytext": text})
    return client.post("/pub/nul@example.org", text, content_type="text/plain")


PATHS = ["hkp", "vks", "page", "attester"]


def no_text_holds_a_control_character() -> None:
    for key in Key.objects.all():
        for uid in key.published_user_ids + key.fallback_user_ids:
            assert "\x00" not in uid
        assert b"\x00 Byte" not in bytes(key.data)
    for event in Event.objects.all():
        assert "\x00" not in str(event.detail)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.mark.parametrize("path", PATHS)
def test_a_key_whose_only_user_id_has_a_nul_is_answered_with_the_reason(client, path):
    cert = make_cert(NUL_UID)
    response = upload_on(path, client, armored(cert))
    assert response.status_code < 500, response.content
    text = response.content.decode()
    if path in ("hkp", "page"):
        assert "control characters" in text
    if path == "attester":  # the key carries no usable user ID for the address
        assert response.status_code == 400
    no_text_holds_a_control_character()
    assert not Binding.objects.exists()


@pytest.mark.parametrize("path", PATHS)
def test_a_published_key_uploaded_again_with_a_nul_user_id_keeps_what_is_published(ks, client, path):
    cert = make_cert("Nora <nul@example.org>")
    ks.publish(armored(cert), "nul@example.org")
    before = Key.objects.get()
    published = (bytes(before.published), list(before.published_user_ids))
    grown = with_user_ids(cert, NUL_UID)
    response = upload_on(path, client, armored(grown))
    assert response.status_code < 500, response.content
    if path in ("hkp", "page"):
        assert "control characters" in response.content.decode()
    key = Key.objects.get()
    assert (bytes(key.published), list(key.published_user_ids)) == published
    assert Binding.objects.get().state == Binding.State.PUBLISHED
    no_text_holds_a_control_character()
    # Every lookup path still answers.
    assert ks.hkp_get("nul@example.org").uids == ["Nora <nul@example.org>"]
    assert client.get("/vks/v1/by-email/nul@example.org").status_code == 200
    assert client.get("/pks/lookup?op=index&options=mr&search=nul@example.org").status_code == 200


def test_a_key_with_a_clean_and_a_nul_user_id_for_one_address_publishes_the_clean_one(ks):
    cert = make_cert("Nora <nul@example.org>", NUL_UID, "Bell\x07 <bell@example.org>")
    answer = ks.upload(armored(cert)).json()
    assert answer["status"] == {"nul@example.org": "unpublished"}  # bell's only user ID is refused
    ks.request_verify(answer["token"], ["nul@example.org"])
    assert ks.confirm("nul@example.org").status_code == 200
    assert ks.hkp_get("nul@example.org").uids == ["Nora <nul@example.org>"]
    no_text_holds_a_control_character()


def test_an_upstream_answer_with_a_nul_user_id_is_served_without_it_and_asked_once(ks, serve_raw, settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    cert = make_cert("Nora <nul@example.org>", NUL_UID)
    upstream = serve_raw(upstreams.answer(200, armored(cert).encode(), "application/pgp-keys"))
    Source.objects.create(name="peer", kind="hkp", url=upstream.url, order=10, timeout=2.0)
    answers = [ks.hkp_get("nul@example.org") for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].uids == ["Nora <nul@example.org>"]
    assert upstream.connections == 1  # cached after the first answer
    no_text_holds_a_control_character()


def test_an_upstream_answer_whose_only_user_id_has_a_nul_is_a_miss_not_a_500(ks, serve_raw, settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    upstream = serve_raw(upstreams.answer(200, armored(make_cert(NUL_UID)).encode(), "application/pgp-keys"))
    Source.objects.create(name="peer", kind="hkp", url=upstream.url, order=10, timeout=2.0)
    statuses = [ks.hkp_get("nul@example.org").status for _ in range(3)]
    assert statuses == [404, 404, 404]
    assert upstream.connections == 1  # the miss is remembered
    no_text_holds_a_control_character()
