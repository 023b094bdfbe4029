"""The Django admin: staff only, search, filters, summary, policy actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from keys.models import Binding, Event, Key, PolicyBlock

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def action(admin_client, model: str, name: str, pks: list[int]):
    return admin_client.post(
        f"/admin/keys/{model}/",
        {"action": name, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def test_the_admin_is_for_staff_only(client, django_user_model):
    assert client.get("/admin/keys/key/").status_code == 302
    User.objects.create_user("visitor", password="pw-for-tests-only")
    client.login(username="visitor", password="pw-for-tests-only")
    assert client.get("/admin/keys/key/").status_code == 302


@pytest.mark.parametrize("field", ["address", "fingerprint", "key_id", "subkey_id"])
def test_keys_are_found_by_address_fingerprint_and_key_ids(admin_client, ks, cast, field):
    ks.upload(cast.alice.data)
    ks.upload(cast.bob.data)
    term = {
        "address": "alice@work.example.com",
        "fingerprint": cast.alice.fingerprint,
        "key_id": cast.alice.key_id,
        "subkey_id": cast.alice.subkeys[0][-16:],
    }[field]
    page = admin_client.get("/admin/keys/key/", {"q": term})
    assert page.status_code == 200
    html = page.content.decode()
    assert cast.alice.key_id in html and cast.bob.key_id not in html


def test_bindings_filter_by_state_and_validation(admin_client, ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.upload(cast.alice.data)
    published = admin_client.get("/admin/keys/binding/", {"state": "published"}).content.decode()
    assert "bob@example.net" in published and "alice@example.org" not in published
    confirmed = admin_client.get("/admin/keys/binding/", {"validation": "email_confirmed"}).content.decode()
    assert "bob@example.net" in confirmed


def test_the_key_page_summarises_the_certificate_and_why_a_user_id_is_not_valid(admin_client, ks, cast):
    ks.upload(cast.sha1_only.data)
    key = Key.objects.get()
    html = admin_client.get(f"/admin/keys/key/{key.pk}/change/").content.decode()
    grouped = " ".join(key.fingerprint[i : i + 4] for i in range(0, 40, 4))
    assert grouped in html
    assert "RSA 2048" in html
    assert "Sha One &lt;sha1@example.org&gt;" in html
    assert "SHA-1" in html


def test_unpublishing_an_address_is_immediate_and_logged(admin_client, ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    binding = Binding.objects.get(address="bob@example.net")
    action(admin_client, "binding", "unpublish", [binding.pk])
    assert Binding.objects.get(pk=binding.pk).state == Binding.State.UNPUBLISHED
    assert ks.hkp_get("bob@example.net").status == 404
    assert ks.get("/vks/v1/by-email/bob@example.net").status == 404
    event = Event.objects.get(action="address_unpublished")
    assert event.actor == "admin:admin" and event.address == "bob@example.net"


def test_a_key_removed_by_policy_is_gone_and_a_re_upload_cannot_bring_it_back(admin_client, ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    key = Key.objects.get()
    action(admin_client, "key", "remove_by_policy", [key.pk])
    assert PolicyBlock.objects.filter(fingerprint=cast.bob.fingerprint).exists()
    assert Event.objects.filter(action="key_removed_by_policy", fingerprint=cast.bob.fingerprint).exists()
    for path, answer in {
        **ks.by_email("bob@example.net"),
        **ks.by_id(cast.bob.fingerprint, cast.bob.key_id),
    }.items():
        assert answer.status == 404, path
    again = ks.upload(cast.bob.data)
    assert again.status_code == 403
    assert "removed" in again.json()["error"]
    hkp = ks.client.post("/pks/add", {"keytext": cast.bob.text})
    assert hkp.status_code == 403
    assert ks.hkp_get("bob@example.net").status == 404


def test_an_address_removed_by_policy_stays_removed_on_every_key(admin_client, ks, cast, gpg_factory):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    binding = Binding.objects.get(address="alice@example.org")
    action(admin_client, "binding", "remove_address_by_policy", [binding.pk])
    assert ks.hkp_get("alice@example.org").status == 404
    assert ks.hkp_get("alice@work.example.com").uids == ["Alice Work <alice@work.example.com>"]
    # Another key with the same address: uploaded, but never publishable.
    gpg = gpg_factory()
    other = gpg.generate("Alice Again <alice@example.org>")
    answer = ks.upload(gpg.run("--export", "--armor", other).stdout).json()
    assert "alice@example.org" not in answer["status"]
    assert ks.request_verify(answer["token"], ["alice@example.org"]).status_code == 400
    assert Binding.objects.get(key__fingerprint=other).state == Binding.State.REMOVED_BY_POLICY
    assert Event.objects.filter(action="address_removed_by_policy", address="alice@example.org").exists()


def test_a_pattern_block_added_in_the_admin_applies_to_existing_addresses(admin_client, ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    response = admin_client.post(
        "/admin/keys/policyblock/add/",
        {"fingerprint": "", "address_pattern": "*@EXAMPLE.NET", "reason": "court order"},
    )
    assert response.status_code == 302
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.REMOVED_BY_POLICY
    assert ks.hkp_get("bob@example.net").status == 404


def test_a_pending_confirmation_cannot_publish_a_blocked_address(admin_client, ks, cast):
    token = ks.upload(cast.bob.data).json()["token"]
    ks.request_verify(token, ["bob@example.net"])
    link = ks.link("bob@example.net")
    PolicyBlock.objects.create(address_pattern="bob@example.net", reason="spam")
    assert ks.client.post(link).status_code == 400
    assert ks.hkp_get("bob@example.net").status == 404


def test_admin_pages_render(admin_client, ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    for path in [
        "/admin/",
        "/admin/keys/key/",
        "/admin/keys/binding/",
        "/admin/keys/event/",
        "/admin/keys/verificationtoken/",
        "/admin/keys/policyblock/",
        "/admin/federation/source/",
        f"/admin/keys/binding/{Binding.objects.first().pk}/change/",  # type: ignore[union-attr]
    ]:
        assert admin_client.get(path).status_code == 200, path
