"""Revocations outlive removal: a key removed by policy or by its owner still
takes and serves its own revocation, without user IDs, and nothing else,
whether the revocation comes by upload or by a scheduled refresh."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from federation.refresh import refresh_key
from keys import openpgp
from keys.models import Binding, Key, Source
from keys.services import policy

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
NEW_UID = "Alice New <alice.new@example.org>"


@pytest.fixture
def tree(tmp_path, settings) -> Path:
    settings.PUBLISH_DIR = str(tmp_path / "public")
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return tmp_path / "public"


@pytest.fixture
def ks(client, mailoutbox, tree) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.fixture(scope="module")
def upstream_copies(cast, tmp_path_factory) -> dict[str, bytes]:
    """Alice as an upstream has her later: a new user ID and the second
    subkey of alice_v2; once without, once with her key revocation (real gpg)."""
    from .conftest import Gpg

    gpg = Gpg()
    try:
        gpg.run("--import", input=cast.alice_secret.data)
        gpg.run("--import", input=cast.alice_v2.data)
        gpg.run(
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-add-uid",
            cast.alice.fingerprint,
            NEW_UID,
        )
        grown = gpg.run("--export", cast.alice.fingerprint).stdout
        gpg.run("--import", input=cast.alice_revocation.data)
        revoked = gpg.run("--export", cast.alice.fingerprint).stdout
    finally:
        gpg.close()
    info = openpgp.parse(revoked).certs[0]
    assert info.revoked and NEW_UID in [u.value for u in info.user_ids] and len(info.subkeys) == 2
    return {"grown": grown, "revoked": revoked}


def from_upstream(ks: Keyserver, scripted, cast) -> Key:
    """Alice, found on a verifying upstream (VKS), cached here."""
    scripted.routes["/vks/v1/by-email/alice@example.org"] = (200, cast.alice.data)
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, cast.alice.data)
    Source.objects.create(name="upstream", kind="vks", url=scripted.url)
    assert ks.hkp_get("alice@example.org").fingerprints == [cast.alice.fingerprint]
    return Key.objects.get(fingerprint=cast.alice.fingerprint)


def owner_removes(ks: Keyserver, address: str) -> None:
    ks.client.post("/manage", {"email": address})
    mails = [m for m in ks.outbox if address in m.to and "/manage/" in m.body]
    link = re.search(r"/manage/[A-Za-z0-9_-]+", mails[-1].body).group(0)  # type: ignore[union-attr]
    assert ks.client.post(link, {"action": "remove-key", "confirm": "yes"}).status_code == 200


def assert_serves_only_the_revocation(ks: Keyserver, cast, tree: Path) -> None:
    fpr, keyid = cast.alice.fingerprint, cast.alice.key_id
    key = Key.objects.get(fingerprint=fpr)
    assert key.revoked and key.blocked
    assert sorted(key.subkeys.values_list("fingerprint", flat=True)) == sorted(cast.alice.subkeys)
    assert not Binding.objects.filter(address="alice.new@example.org").exists()
    for path, answer in ks.by_id(fpr, keyid).items():
        assert answer.status == 200 and answer.revoked and answer.uids == [], path
        assert answer.fingerprints == [fpr], path
    for path, answer in ks.by_email("alice@example.org").items():
        assert answer.status == 404, path
    assert ks.client.get(f"/vks/v1/by-fingerprint/{fpr}").headers["Key-Validation"] == "none"
    served = openpgp.parse(ks.get(f"/vks/v1/by-fingerprint/{fpr}").text.encode()).certs[0]
    assert len(served.subkeys) == len(cast.alice.subkeys) and not served.user_ids
    # The published files hold the revoked key too, and only it.
    published = tree / f"fpr/{fpr[:2]}/{fpr}"
    stored = openpgp.parse(published.read_bytes()).certs[0]
    assert stored.revoked and not stored.user_ids and len(stored.subkeys) == len(cast.alice.subkeys)
    assert (tree / f"level/fpr/{fpr[:2]}/{fpr}").read_text() == "none"
    assert not (tree / "email/example.org/alice").exists()


def test_a_refresh_brings_the_revocation_to_a_key_removed_by_policy(
    ks, scripted, cast, tree, upstream_copies
):
    local = from_upstream(ks, scripted, cast)
    policy.remove_key_by_policy(local, reason="test", actor="staff")
    assert ks.hkp_get(f"0x{cast.alice.fingerprint}").status == 404
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, upstream_copies["revoked"])
    assert refresh_key(local.pk).result.startswith("updated")
    assert_serves_only_the_revocation(ks, cast, tree)


def test_a_refresh_brings_the_revocation_to_a_key_its_owner_removed(
    ks, scripted, cast, tree, settings, upstream_copies
):
    settings.REFRESH_PEERS = ["peer"]
    Source.objects.create(name="peer", kind="vks", url=scripted.url)
    ks.publish(cast.alice.data, "alice@example.org")
    owner_removes(ks, "alice@example.org")
    local = Key.objects.get(fingerprint=cast.alice.fingerprint)
    assert local.blocked and local.next_refresh_at is not None
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, upstream_copies["revoked"])
    assert refresh_key(local.pk).result.startswith("updated")
    assert_serves_only_the_revocation(ks, cast, tree)


@pytest.mark.parametrize("removal", ["policy", "owner"])
def test_a_refresh_takes_nothing_else_of_a_removed_key(
    ks, scripted, cast, tree, settings, upstream_copies, removal
):
    settings.REFRESH_PEERS = ["peer"]
    Source.objects.create(name="peer", kind="vks", url=scripted.url)
    ks.publish(cast.alice.data, "alice@example.org")
    local = Key.objects.get(fingerprint=cast.alice.fingerprint)
    if removal == "owner":
        owner_removes(ks, "alice@example.org")
    else:
        policy.remove_key_by_policy(local, reason="test", actor="staff")
    before = bytes(Key.objects.get(pk=local.pk).data)
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, upstream_copies["grown"])
    done = refresh_key(local.pk)
    assert done.result.startswith("refused"), done.result
    local.refresh_from_db()
    assert bytes(local.data) == before and not local.revoked
    assert local.refresh_failures == 0 and local.next_refresh_at is not None  # asked again later
    for path, answer in ks.by_id(cast.alice.fingerprint, cast.alice.key_id).items():
        assert answer.status == 404, path
    assert not list(tree.glob("fpr/*/*"))
    # A later refresh still brings the revocation.
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, upstream_copies["revoked"])
    assert refresh_key(local.pk).result.startswith("updated")
    assert_serves_only_the_revocation(ks, cast, tree)


def test_an_upload_of_the_grown_revoked_copy_takes_only_the_revocation(ks, cast, tree, upstream_copies):
    ks.publish(cast.alice.data, "alice@example.org")
    owner_removes(ks, "alice@example.org")
    assert ks.upload(upstream_copies["grown"]).status_code == 403
    assert ks.upload(upstream_copies["revoked"]).status_code == 200
    assert_serves_only_the_revocation(ks, cast, tree)
