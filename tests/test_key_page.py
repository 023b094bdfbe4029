"""The page per key (/key/<FPR>), one answer for a key without a confirmed
address on every path, revocations that outlive housekeeping and policy
removal, and the owner's management of a revoked key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from keys import clock
from keys.models import Key
from keys.services import housekeeping, policy

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)

STORED_NOT_PUBLISHED = "This key is stored, but it has no confirmed address on this server"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def page(ks: Keyserver, fingerprint: str) -> str:
    response = ks.client.get(f"/key/{fingerprint}")
    assert response.status_code == 200
    return response.content.decode()


def manage_link(ks: Keyserver, address: str) -> str:
    mails = [m for m in ks.outbox if address in m.to and "/manage/" in m.body]
    assert mails, f"no management mail to {address}"
    return re.search(r"/manage/[A-Za-z0-9_-]+", mails[-1].body).group(0)  # type: ignore[union-attr]


# -- the page -------------------------------------------------------------------------


def test_the_page_of_a_published_key(ks, cast, settings):
    settings.SITE_URL = "http://keys.example.test:11371"
    settings.WKD_DOMAINS = ["example.org"]
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    fpr = cast.alice.fingerprint
    text = page(ks, fpr)
    grouped = " ".join(fpr[i : i + 4] for i in range(0, 40, 4))
    assert grouped in text
    assert "EdDSA" in text or "Ed25519" in text
    assert "alice@example.org" in text and "alice@work.example.com" in text
    assert "email confirmed" in text
    assert "Alice Example &lt;alice@example.org&gt;" in text
    assert f'href="/vks/v1/by-fingerprint/{fpr}"' in text
    assert f"gpg --keyserver hkp://keys.example.test:11371 --recv-keys {fpr}" in text
    assert f"sq keyserver -p insecure --server hkp://keys.example.test:11371 get {fpr}" in text
    # WKD only for the addresses in WKD_DOMAINS.
    assert "gpg --auto-key-locate clear,nodefault,wkd --locate-keys alice@example.org" in text
    assert "--locate-keys alice@work.example.com" not in text
    assert STORED_NOT_PUBLISHED not in text and "none of its addresses" not in text


def test_a_subkey_fingerprint_shows_its_primary_and_unknown_keys_are_404(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    assert cast.alice.fingerprint in page(ks, cast.alice.subkeys[0])
    assert ks.client.get(f"/key/{'A' * 40}").status_code == 404
    assert ks.client.get("/key/not-a-fingerprint").status_code == 400


def test_the_page_of_a_revoked_key_shows_no_user_ids(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    ks.upload(cast.alice_revoked.data)
    text = page(ks, cast.alice.fingerprint)
    assert "revoked" in text
    assert "alice@example.org" not in text
    assert f"--recv-keys {cast.alice.fingerprint}" in text  # HKP serves the revocation (rule 5)
    assert "--locate-keys" not in text


def test_the_page_of_an_unconfirmed_key_explains_and_shows_no_user_ids(ks, cast):
    ks.upload(cast.alice.data)
    text = page(ks, cast.alice.fingerprint)
    assert "This key is stored, but none of its addresses has been confirmed, so it is not published" in text
    assert "alice@example.org" not in text and "Alice Example" not in text
    assert "--recv-keys" not in text  # HKP would not serve it
    assert f'href="/vks/v1/by-fingerprint/{cast.alice.fingerprint}"' in text


def test_the_copy_button_is_a_static_script_and_no_inline_script(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    text = page(ks, cast.bob.fingerprint)
    assert 'data-copy="fingerprint"' in text and 'id="fingerprint"' in text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S)
    assert any("copy.js" in attrs for attrs, _body in scripts)
    assert all(not body.strip() for _attrs, body in scripts)
    source = Path(django_settings.BASE_DIR) / "static" / "copy.js"
    assert "clipboard" in source.read_text()


def test_search_results_link_to_the_key_page(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    for query in ["bob@example.net", cast.bob.fingerprint, cast.bob.key_id]:
        text = ks.client.get("/search", {"q": query}).content.decode()
        assert f'href="/key/{cast.bob.fingerprint}"' in text, query


# -- one answer for a key without a confirmed address ----------------------------------


def test_a_key_without_a_confirmed_address_gives_one_answer_on_every_path(ks, cast):
    ks.upload(cast.alice.data)
    fpr, keyid = cast.alice.fingerprint, cast.alice.key_id
    # HKP (rule 6) and the Attester API refuse it, with the same message.
    for path in [f"/pks/lookup?op=get&options=mr&search=0x{fpr}", f"/pub/{fpr}", f"/pub/{keyid}"]:
        response = ks.client.get(path)
        assert response.status_code == 404, path
        assert STORED_NOT_PUBLISHED in response.content.decode(), path
    # VKS by id serves it without user IDs, as keys.openpgp.org does (rule 6).
    vks = ks.get(f"/vks/v1/by-fingerprint/{fpr}")
    assert vks.status == 200 and vks.uids == []
    # The search page says the same, and links the page; by address: nothing.
    found = ks.client.get("/search", {"q": fpr}).content.decode()
    assert STORED_NOT_PUBLISHED in found and f'href="/key/{fpr}"' in found
    assert "Alice Example" not in found
    assert "No key found" in ks.client.get("/search", {"q": "alice@example.org"}).content.decode()


def test_a_published_key_has_no_unpublished_notice(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    found = ks.client.get("/search", {"q": cast.bob.fingerprint}).content.decode()
    assert STORED_NOT_PUBLISHED not in found
    assert ks.client.get(f"/pub/{cast.bob.fingerprint}").status_code == 200


# -- revocations -----------------------------------------------------------------------


def test_a_never_confirmed_revoked_key_survives_housekeeping_and_is_served(ks, cast):
    ks.upload(cast.alice_revoked.data)
    ks.upload(cast.bob.data)
    later = clock.now() + timedelta(days=django_settings.UNCONFIRMED_RETENTION_DAYS + 1)
    clock.set_now(later)
    counts = housekeeping.prune()
    assert counts["unconfirmed_keys"] == 1
    assert not Key.objects.filter(fingerprint=cast.bob.fingerprint).exists()
    assert Key.objects.filter(fingerprint=cast.alice.fingerprint).exists()
    answer = ks.hkp_get(f"0x{cast.alice.fingerprint}")
    assert answer.status == 200 and answer.revoked and answer.uids == []


def test_a_key_removed_by_policy_accepts_its_revocation_certificate_only(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    key = Key.objects.get(fingerprint=cast.alice.fingerprint)
    policy.remove_key_by_policy(key, reason="test", actor="staff")
    assert ks.hkp_get(f"0x{cast.alice.fingerprint}").status == 404
    assert ks.upload(cast.alice.data).status_code == 403
    assert ks.upload(cast.alice_v2.data).status_code == 403  # a new subkey: still refused
    assert ks.upload(cast.alice_revocation.data).status_code == 200
    answer = ks.hkp_get(f"0x{cast.alice.fingerprint}")
    assert answer.status == 200 and answer.revoked and answer.uids == []
    assert ks.get("/vks/v1/by-email/alice@example.org").status == 404
    assert len(Key.objects.get(pk=key.pk).subkeys.all()) == 1  # nothing else was taken


def test_a_key_removed_by_policy_takes_only_the_revocation_of_a_revoked_copy(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    key = Key.objects.get(fingerprint=cast.alice.fingerprint)
    policy.remove_key_by_policy(key, reason="test", actor="staff")
    # alice_revoked is alice_v2 (a second subkey, a later expiry) with its revocation.
    assert ks.upload(cast.alice_revoked.data).status_code == 200
    stored = Key.objects.get(pk=key.pk)
    assert stored.revoked and stored.blocked
    assert stored.subkeys.count() == 1  # the new subkey of the copy was not taken
    answer = ks.hkp_get(f"0x{cast.alice.fingerprint}")
    assert answer.status == 200 and answer.revoked and answer.uids == []
    assert ks.upload(cast.bob.data).status_code == 200  # other keys are not affected
    assert ks.upload(cast.alice.data).status_code == 403


# -- management ------------------------------------------------------------------------


def test_the_owner_of_a_revoked_key_gets_a_management_link(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    ks.upload(cast.alice_revoked.data)
    ks.outbox.clear()
    ks.client.post("/manage", {"email": "alice@example.org"})
    link = manage_link(ks, "alice@example.org")
    assert cast.alice.fingerprint[:4] in ks.client.get(link).content.decode()


def test_no_management_link_for_an_address_never_confirmed_on_a_revoked_key(ks, cast):
    ks.upload(cast.alice_revoked.data)
    ks.outbox.clear()
    ks.client.post("/manage", {"email": "alice@example.org"})
    assert not [m for m in ks.outbox if "/manage/" in m.body]


def test_removing_a_key_asks_for_confirmation_first(ks, cast):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.client.post("/manage", {"email": "bob@example.net"})
    link = manage_link(ks, "bob@example.net")
    first = ks.client.post(link, {"action": "remove-key"})
    assert first.status_code == 200
    assert 'name="confirm" value="yes"' in first.content.decode()
    assert not Key.objects.get(fingerprint=cast.bob.fingerprint).blocked
    assert ks.hkp_get("bob@example.net").status == 200
    second = ks.client.post(link, {"action": "remove-key", "confirm": "yes"})
    assert second.status_code == 200
    assert Key.objects.get(fingerprint=cast.bob.fingerprint).blocked
    assert ks.hkp_get("bob@example.net").status == 404


def test_the_commands_follow_an_https_site_url(settings):
    from keys.identifiers import keyserver_uri
    from keys.views.keypage import commands

    assert keyserver_uri("https://keys.example.test") == "hkps://keys.example.test"
    assert keyserver_uri("http://[::1]:8000") == "hkp://[::1]:8000"
    settings.SITE_URL = "http://keys.example.test"
    assert commands("AB" * 20, [])[0] == f"gpg --keyserver hkp://keys.example.test:80 --recv-keys {'AB' * 20}"
