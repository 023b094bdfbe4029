"""Hagrid's storage scenarios, each step checked on every lookup path."""

from __future__ import annotations

import pytest

from keys.models import Binding, Key

from .keyserver import Keyserver

# Transactional: mail is enqueued on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def assert_nothing_by_email(ks: Keyserver, address: str) -> None:
    for path, answer in ks.by_email(address).items():
        assert answer.status == 404, (path, answer)
    index = ks.hkp_index(address)
    assert index.status_code == 404


def test_an_uploaded_key_is_not_found_by_address_until_confirmed(ks, cast):
    answer = ks.upload(cast.alice.data).json()
    assert answer["key_fpr"] == cast.alice.fingerprint
    assert answer["status"] == {"alice@example.org": "unpublished", "alice@work.example.com": "unpublished"}
    assert answer["token"]
    assert_nothing_by_email(ks, "alice@example.org")
    # By id: VKS serves the key without user IDs (as keys.openpgp.org does);
    # HKP refuses, because gpg cannot use a key without user IDs (rule 6).
    paths = ks.by_id(cast.alice.fingerprint, cast.alice.key_id)
    assert paths["vks by-fingerprint"].status == 200 and paths["vks by-fingerprint"].uids == []
    assert paths["vks by-keyid"].status == 200 and paths["vks by-keyid"].uids == []
    for name in ("hkp get fpr", "hkp get keyid", "hkp get keyid no 0x"):
        assert paths[name].status == 404
        assert "no confirmed address" in paths[name].text


def test_a_confirmed_address_is_served_on_every_path_and_only_that_one(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    for path, answer in ks.by_email("alice@example.org").items():
        assert answer.status == 200, path
        assert answer.uids == ["Alice Example <alice@example.org>"], path
    for path, answer in ks.by_id(cast.alice.fingerprint, cast.alice.key_id).items():
        assert answer.uids == ["Alice Example <alice@example.org>"], path
    assert_nothing_by_email(ks, "alice@work.example.com")
    index = ks.hkp_index("alice@example.org").content.decode()
    assert f"pub:{cast.alice.fingerprint}:" in index
    assert "uid:Alice Example <alice@example.org>:" in index
    assert "work.example.com" not in index


def test_the_name_only_user_id_is_never_published(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org", "alice@work.example.com")
    answer = ks.hkp_get(f"0x{cast.alice.fingerprint}")
    assert sorted(answer.uids) == ["Alice Example <alice@example.org>", "Alice Work <alice@work.example.com>"]


def test_a_re_upload_keeps_what_is_published_and_merges_the_new_copy(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    answer = ks.upload(cast.alice_v2.data).json()
    assert answer["status"]["alice@example.org"] == "published"
    key = Key.objects.get(fingerprint=cast.alice.fingerprint)
    assert key.subkeys.count() == len(set(cast.alice.subkeys) | set(cast.alice_v2.subkeys))
    served = ks.hkp_get("alice@example.org")
    assert served.uids == ["Alice Example <alice@example.org>"]
    # The older copy uploaded again changes nothing.
    before = bytes(Key.objects.get(pk=key.pk).data)
    ks.upload(cast.alice.data)
    assert bytes(Key.objects.get(pk=key.pk).data) == before


def test_the_same_address_on_two_keys_serves_both_newest_first(ks, cast, gpg_factory):
    ks.publish(cast.alice.data, "alice@example.org")
    gpg = gpg_factory()
    second = gpg.generate("Alice New <alice@example.org>")
    ks.publish(gpg.run("--export", "--armor", second).stdout, "alice@example.org")
    for path, answer in ks.by_email("alice@example.org").items():
        assert answer.fingerprints == [second, cast.alice.fingerprint], path
    index = ks.hkp_index("alice@example.org").content.decode()
    assert index.startswith("info:1:2\n")
    assert index.index(second) < index.index(cast.alice.fingerprint)


def test_a_revoked_user_id_is_never_published(ks, cast):
    answer = ks.upload(cast.carol.data).json()
    assert answer["status"] == {"carol@example.org": "unpublished"}
    response = ks.request_verify(answer["token"], ["carol.old@example.org"])
    assert response.status_code == 400
    assert not [m for m in ks.outbox if "carol.old@example.org" in m.to]
    ks.request_verify(answer["token"], ["carol@example.org"])
    ks.confirm("carol@example.org")
    assert ks.hkp_get("carol@example.org").uids == ["Carol <carol@example.org>"]
    assert_nothing_by_email(ks, "carol.old@example.org")


def test_revoking_a_published_user_id_unpublishes_its_address(ks, cast, gpg_factory):
    gpg = gpg_factory()
    fpr = gpg.generate("Rita <rita@example.org>")
    gpg.run("--quick-add-uid", fpr, "Rita Two <rita.two@example.org>")
    ks.publish(gpg.run("--export", "--armor", fpr).stdout, "rita@example.org", "rita.two@example.org")
    gpg.run("--quick-revoke-uid", fpr, "Rita Two <rita.two@example.org>")
    answer = ks.upload(gpg.run("--export", "--armor", fpr).stdout).json()
    assert answer["status"] == {"rita@example.org": "published", "rita.two@example.org": "revoked"}
    assert_nothing_by_email(ks, "rita.two@example.org")
    assert ks.hkp_get(f"0x{fpr}").uids == ["Rita <rita@example.org>"]


def test_a_revoked_key_loses_its_addresses_but_stays_available_by_id(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    answer = ks.upload(cast.alice_revoked.data).json()
    assert answer["status"] == {}
    assert_nothing_by_email(ks, "alice@example.org")
    for path, served in ks.by_id(cast.alice.fingerprint, cast.alice.key_id).items():
        assert served.status == 200, path
        assert served.revoked and served.uids == [], path
    assert Binding.objects.get(address="alice@example.org").state == Binding.State.REVOKED


def test_a_bare_revocation_certificate_revokes_the_stored_key(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    response = ks.client.post("/pks/add", {"keytext": cast.alice_revocation.text})
    assert response.status_code == 200, response.content
    assert_nothing_by_email(ks, "alice@example.org")
    assert ks.hkp_get(f"0x{cast.alice.fingerprint}").revoked


def test_a_user_id_without_self_signature_is_never_published(ks, cast):
    answer = ks.upload(cast.erin_unsigned_uid.data).json()
    assert answer["status"] == {"erin@example.org": "unpublished"}
    assert ks.request_verify(answer["token"], ["erin.unsigned@example.org"]).status_code == 400
    ks.request_verify(answer["token"], ["erin@example.org"])
    ks.confirm("erin@example.org")
    assert ks.hkp_get("erin@example.org").uids == ["Erin <erin@example.org>"]
    assert_nothing_by_email(ks, "erin.unsigned@example.org")


def test_lookup_by_subkey_fingerprint_and_subkey_id_finds_the_primary(ks, cast):
    ks.publish(cast.alice.data, "alice@example.org")
    subkey = cast.alice.subkeys[0]
    for path, answer in ks.by_id(subkey, subkey[-16:]).items():
        assert answer.fingerprints == [cast.alice.fingerprint], path


def test_a_forged_user_id_cannot_be_published(ks, cast):
    answer = ks.upload(cast.forged_uid_sig.data).json()
    assert answer["status"] == {"frank@example.org": "unpublished"}
    assert ks.request_verify(answer["token"], ["victim@example.org"]).status_code == 400
    assert not ks.outbox


def test_a_forged_revocation_does_not_unpublish(ks, cast):
    ks.publish(cast.forged_revocation.data, "grace@example.org")
    assert ks.hkp_get("grace@example.org").uids == ["Grace <grace@example.org>"]
    assert not ks.hkp_get("grace@example.org").revoked


def test_v6_keys_are_served_by_64_hex_fingerprint(ks, cast):
    ks.publish(cast.v6.data, "v6@example.org")
    for path, answer in ks.by_id(cast.v6.fingerprint, cast.v6.fingerprint[:16]).items():
        assert answer.fingerprints == [cast.v6.fingerprint], path
    assert ks.by_email("v6@example.org")["vks by-email"].fingerprints == [cast.v6.fingerprint]


def test_expired_keys_come_after_valid_ones(ks, cast, gpg_factory):
    gpg = gpg_factory()
    gpg.run("--import", input=cast.expired.data)
    ks.publish(cast.expired.data, "old@example.org")
    fresh = gpg.generate("Old Renewed <old@example.org>")
    ks.publish(gpg.run("--export", "--armor", fresh).stdout, "old@example.org")
    assert ks.hkp_get("old@example.org").fingerprints == [fresh, cast.expired.fingerprint]
    index = ks.hkp_index("old@example.org").content.decode()
    assert f"pub:{cast.expired.fingerprint}:" in index
    expired_line = next(line for line in index.splitlines() if cast.expired.fingerprint in line)
    assert expired_line.endswith(":e")


def test_key_ids_shared_by_several_keys_answer_all_and_primary_ids_win_over_subkey_ids(ks, cast):
    # 64-bit key ids collide in the wild; here the stored ids are rewritten to collide.
    for key, address in (
        (cast.alice, "alice@example.org"),
        (cast.bob, "bob@example.net"),
        (cast.carol, "carol@example.org"),
    ):
        ks.publish(key.data, address)
    alice, bob, carol = (
        Key.objects.get(fingerprint=k.fingerprint) for k in (cast.alice, cast.bob, cast.carol)
    )
    Key.objects.filter(pk=bob.pk).update(key_id=alice.key_id)
    alice.subkeys.update(key_id=carol.key_id)

    both = ks.hkp_get(f"0x{alice.key_id}").fingerprints
    assert sorted(both) == sorted([cast.alice.fingerprint, cast.bob.fingerprint])
    assert ks.get(f"/vks/v1/by-keyid/{alice.key_id}").fingerprints == both
    # Carol's primary id is also Alice's subkey id: the primary answers alone...
    assert ks.hkp_get(f"0x{carol.key_id}").fingerprints == [cast.carol.fingerprint]
    # ...until Carol's key is removed by policy; then the subkey's primary answers.
    Key.objects.filter(pk=carol.pk).update(blocked=True)
    assert ks.hkp_get(f"0x{carol.key_id}").fingerprints == [cast.alice.fingerprint]
