"""Self-service management, the fingerprint page, HTML index and about pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from keys import clock
from keys.models import Binding, Event, Key, PolicyBlock

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def manage_link(ks: Keyserver, address: str) -> str:
    mails = [m for m in ks.outbox if address in m.to and "/manage/" in m.body]
    assert mails, f"no management mail to {address}"
    return re.search(r"/manage/[A-Za-z0-9_-]+", mails[-1].body).group(0)  # type: ignore[union-attr]


def test_the_manage_page_answers_the_same_for_known_and_unknown_addresses(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.outbox.clear()
    known = ks.client.post("/manage", {"email": "bob@example.net"})
    unknown = ks.client.post("/manage", {"email": "nobody@example.net"})
    assert known.status_code == unknown.status_code == 200

    def strip(html: bytes, address: str) -> str:
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html.decode()).replace(address, "ADDR")

    assert strip(known.content, "bob@example.net") == strip(unknown.content, "nobody@example.net")
    assert [m.to for m in ks.outbox] == [["bob@example.net"]]
    assert (
        "/manage/" in ks.outbox[0].body and ks.outbox[0].extra_headers["Auto-Submitted"] == "auto-generated"
    )


def test_manage_mail_is_rate_limited(ks, cast, settings):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.outbox.clear()
    ks.client.post("/manage", {"email": "bob@example.net"})
    ks.client.post("/manage", {"email": "bob@example.net"})
    assert len(ks.outbox) == 1  # per address: silent
    settings.RATE_MANAGE_PER_CLIENT = "2/3600"
    assert ks.client.post("/manage", {"email": "x@example.net"}).status_code == 429


def test_manage_refuses_bad_input(client):
    assert client.post("/manage", {"email": "not an address"}).status_code == 400
    assert client.get("/manage/not-a-token").status_code == 400


def test_the_owner_unpublishes_one_address_everywhere_at_once(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    ks.client.post("/manage", {"email": "alice@example.org"})
    link = manage_link(ks, "alice@example.org")
    page = ks.client.get(link).content.decode()
    assert "alice@example.org" in page and "alice@work.example.com" in page
    assert (
        ks.client.post(link, {"action": "unpublish", "address": "alice@work.example.com"}).status_code == 200
    )
    for path, answer in ks.by_email("alice@work.example.com").items():
        assert answer.status == 404, path
    assert ks.client.get("/pub/alice@work.example.com").status_code == 404
    assert bytes(Binding.objects.get(address="alice@work.example.com").certificate) == b""
    assert ks.hkp_get("alice@example.org").uids == ["Alice Example <alice@example.org>"]
    assert Event.objects.filter(action="address_unpublished", address="alice@work.example.com").exists()


def test_the_owner_removes_the_whole_key_for_good(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    ks.client.post("/manage", {"email": "alice@example.org"})
    link = manage_link(ks, "alice@example.org")
    assert ks.client.post(link, {"action": "remove-key", "confirm": "yes"}).status_code == 200
    for address in ["alice@example.org", "alice@work.example.com"]:
        for path, answer in ks.by_email(address).items():
            assert answer.status == 404, path
    for path, answer in ks.by_id(cast.alice.fingerprint, cast.alice.key_id).items():
        assert answer.status == 404, path
    assert PolicyBlock.objects.filter(fingerprint=cast.alice.fingerprint).exists()
    assert Event.objects.filter(action="key_removed_by_policy", fingerprint=cast.alice.fingerprint).exists()
    assert ks.upload(cast.alice.data).status_code == 403
    assert ks.client.get(link).status_code == 400  # the link is dead with the key


def test_a_removed_revoked_key_still_serves_only_its_revocation(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    ks.client.post("/manage", {"email": "alice@example.org"})
    link = manage_link(ks, "alice@example.org")
    ks.upload(cast.alice_revoked.data)
    ks.client.post(link, {"action": "remove-key", "confirm": "yes"})
    answer = ks.hkp_get(f"0x{cast.alice.fingerprint}")
    assert answer.status == 200 and answer.revoked and answer.uids == []


def test_a_manage_link_expires_after_an_hour(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.client.post("/manage", {"email": "bob@example.net"})
    link = manage_link(ks, "bob@example.net")
    clock.set_now(clock.now() + timedelta(minutes=61))
    assert ks.client.get(link).status_code == 400


def test_a_manage_link_cannot_touch_another_key(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.publish(cast.carol.data, "carol@example.org")
    ks.client.post("/manage", {"email": "bob@example.net"})
    link = manage_link(ks, "bob@example.net")
    response = ks.client.post(link, {"action": "unpublish", "address": "carol@example.org"})
    assert response.status_code == 400
    assert ks.hkp_get("carol@example.org").status == 200


def test_the_fingerprint_page_reports_match_and_mismatch(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    fpr = cast.bob.fingerprint
    spaced = " ".join(fpr[i : i + 4] for i in range(0, 40, 4)).lower()
    page = ks.client.get("/fingerprint", {"email": "bob@example.net", "fingerprint": spaced}).content.decode()
    assert "Match" in page
    assert " ".join(fpr[i : i + 4] for i in range(0, 40, 4)) in page
    assert "RSA" in page and "3072" in page
    other = ks.client.get(
        "/fingerprint", {"email": "bob@example.net", "fingerprint": "0" * 40}
    ).content.decode()
    assert "Mismatch" in other
    none = ks.client.get("/fingerprint", {"email": "nobody@example.net"}).content.decode()
    assert "No key is published" in none


def test_staff_marks_a_binding_fingerprint_verified(admin_client, ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    binding = Binding.objects.get(address="bob@example.net")
    admin_client.post(
        "/admin/keys/binding/", {"action": "mark_fingerprint_verified", "_selected_action": [binding.pk]}
    )
    binding.refresh_from_db()
    assert binding.validation == Binding.Validation.FINGERPRINT_VERIFIED
    assert Event.objects.filter(action="fingerprint_verified", address="bob@example.net").exists()


def test_staff_can_purge_a_key(admin_client, ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    key = Key.objects.get()
    admin_client.post("/admin/keys/key/", {"action": "purge", "_selected_action": [key.pk]})
    assert not Key.objects.exists() and not Binding.objects.exists()
    assert Event.objects.filter(action="key_purged", detail=cast.bob.fingerprint).exists()
    assert ks.upload(cast.bob.data).status_code == 403


def test_hkp_index_without_mr_is_a_page_and_vindex_lists_subkeys(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    page = ks.client.get("/pks/lookup", {"op": "index", "search": "alice@example.org"})
    assert page["Content-Type"].startswith("text/html")
    assert cast.alice.fingerprint in page.content.decode()
    verbose = ks.client.get("/pks/lookup", {"op": "vindex", "search": "alice@example.org"}).content.decode()
    assert cast.alice.subkeys[0] in verbose
    machine = ks.client.get("/pks/lookup", {"op": "vindex", "options": "mr", "search": "alice@example.org"})
    assert machine.content.decode().startswith("info:1:1")


def test_search_results_download_as_asc(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    for query in ["bob@example.net", cast.bob.fingerprint, cast.bob.key_id]:
        page = ks.client.get("/search", {"q": query}).content.decode()
        assert f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}" in page, query
    download = ks.client.get(f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}")
    assert download["Content-Disposition"] == f'attachment; filename="{cast.bob.fingerprint}.asc"'


def test_the_about_pages_document_the_api_and_privacy(client):
    api = client.get("/about/api").content.decode()
    for needle in ["/pks/lookup", "/vks/v1/upload", "/pub/", "/welcome-message", "gpg --keyserver", "curl"]:
        assert needle in api, needle
    privacy = client.get("/about/privacy").content.decode()
    assert "14 days" in privacy and "/manage" in privacy
