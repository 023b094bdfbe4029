"""The published file tree (keys/services/published_files.py): written on
publish, rewritten on merge, removed on unpublish, revocation and policy
removal, rebuilt by `materialize`, drift found by `--check`, and two trees
following one database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from keys.identifiers import wkd_hash
from keys.models import Binding, Key, PublishedChange
from keys.services import policy, published_files
from keys.services.tree_follower import Follower

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path, settings) -> Path:
    settings.PUBLISH_DIR = str(tmp_path / "public")
    settings.WKD_DOMAINS = ["example.org"]
    settings.ALLOWED_HOSTS = ["*"]
    return tmp_path / "public"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def files(tree: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in tree.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def app_answers(client, alice) -> dict[str, tuple[int, bytes]]:
    """What the application answers on the paths the tree holds."""
    fpr, keyid, hashed = alice.fingerprint, alice.key_id, wkd_hash("alice@example.org")
    paths = {
        f"fpr/{fpr[:2]}/{fpr}": f"/vks/v1/by-fingerprint/{fpr}",
        f"keyid/{keyid[:2]}/{keyid}": f"/pks/lookup?op=get&search=0x{keyid}",
        "email/example.org/alice": "/vks/v1/by-email/alice@example.org",
        "index/example.org/alice": "/pks/lookup?op=index&options=mr&search=alice@example.org",
        "pub/example.org/alice": "/pub/alice@example.org",
        f"wkd/example.org/{hashed}": f"/.well-known/openpgpkey/example.org/hu/{hashed}",
    }
    return {rel: (r.status_code, r.content) for rel, r in ((rel, client.get(p)) for rel, p in paths.items())}


def test_publishing_writes_the_exact_answers_with_the_answer_time_as_mtime(ks, client, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    written = files(tree)
    for rel, (status, body) in app_answers(client, cast.alice).items():
        assert status == 200, rel
        assert written[rel] == body, rel
    subkey = next(s for s in cast.alice.subkeys)
    assert f"fpr/{subkey[:2]}/{subkey}" in written
    assert written["email-fpr/example.org/alice"] == cast.alice.fingerprint.encode()
    assert "email/work.example.com/alice" in written
    updated = int(Key.objects.get().updated.timestamp())
    assert (
        int((tree / f"fpr/{cast.alice.fingerprint[:2]}/{cast.alice.fingerprint}").stat().st_mtime) == updated
    )


def answers_in(tree: Path) -> dict[str, bytes]:
    return {rel: data for rel, data in files(tree).items() if not rel.startswith("known/")}


def test_an_upload_nobody_confirmed_writes_no_answer_but_a_marker(client, cast, tree):
    """The key is stored (VKS serves it, HKP says it has no confirmed
    address): the front server must ask the application, not answer a miss."""
    client.post("/pks/add", {"keytext": cast.bob.text})
    assert answers_in(tree) == {}
    fpr, keyid = cast.bob.fingerprint, cast.bob.key_id
    assert set(files(tree)) >= {f"known/fpr/{fpr[:2]}/{fpr}", f"known/keyid/{keyid[:2]}/{keyid}"}


def test_a_merge_rewrites_the_files_and_adds_the_new_subkey(ks, client, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    before = files(tree)
    assert client.post("/pks/add", {"keytext": cast.alice_v2.text}).status_code == 200
    after = files(tree)
    path = f"fpr/{cast.alice.fingerprint[:2]}/{cast.alice.fingerprint}"
    assert after[path] != before[path]
    assert after[path] == app_answers(client, cast.alice)[path][1]
    new = set(Key.objects.get().subkeys.values_list("fingerprint", flat=True)) - set(cast.alice.subkeys)
    assert new and all(f"fpr/{f[:2]}/{f}" in after for f in new)


def test_unpublishing_removes_the_address_and_keeps_the_other(ks, client, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    policy.unpublish(Binding.objects.get(address="alice@example.org"), actor="test")
    left = files(tree)
    assert not any("example.org/alice" in rel for rel in left if not rel.startswith("email/work"))
    assert "email/work.example.com/alice" in left
    fpr_path = f"fpr/{cast.alice.fingerprint[:2]}/{cast.alice.fingerprint}"
    assert left[fpr_path] == app_answers(client, cast.alice)[fpr_path][1]
    policy.unpublish(Binding.objects.get(address="alice@work.example.com"), actor="test")
    assert answers_in(tree) == {}  # no user ID left: HKP answers 404, so no file
    assert f"known/{fpr_path}" in files(tree)  # but VKS serves the key: the application's


def test_an_unpublished_address_is_never_served_from_a_file_after_commit(ks, cast, tree):
    """The files go inside the transaction: once it commits they are gone,
    before the rewrite after commit has even started."""
    ks.publish(cast.alice.data, *cast.alice.emails)
    email = tree / "email/example.org/alice"
    assert email.exists()
    with transaction.atomic():
        policy.unpublish(Binding.objects.get(address="alice@example.org"), actor="test")
        assert not email.exists()
    assert not email.exists()


def test_a_revocation_removes_the_addresses_and_keeps_the_revoked_key(ks, client, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    assert client.post("/pks/add", {"keytext": cast.alice_revocation.text}).status_code == 200
    left = files(tree)
    assert not any(rel.startswith(("email/", "index/", "pub/", "wkd/")) for rel in left)
    fpr_path = f"fpr/{cast.alice.fingerprint[:2]}/{cast.alice.fingerprint}"
    status, body = app_answers(client, cast.alice)[fpr_path]
    assert status == 200 and left[fpr_path] == body  # rule 5: the revocation stays served


def test_removal_by_policy_removes_every_file(ks, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    policy.remove_key_by_policy(Key.objects.get(), reason="test", actor="test")
    assert files(tree) == {}


def test_a_purge_removes_every_file(ks, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    policy.purge(Key.objects.get(), actor="test")
    assert files(tree) == {}
    assert PublishedChange.objects.filter(kind="fpr", value=cast.alice.fingerprint).exists()


def test_materialize_rebuilds_a_deleted_tree_and_check_finds_drift(ks, cast, tree):
    ks.publish(cast.alice.data, *cast.alice.emails)
    ks.publish(cast.bob.data, "bob@example.net")
    expected = files(tree)
    out = StringIO()
    call_command("materialize", "--check", "--quiet", stdout=out)
    assert "matches" in out.getvalue()

    for path in tree.rglob("*"):
        if path.is_file():
            path.unlink()
    out = StringIO()
    call_command("materialize", "--quiet", stdout=out)
    assert files(tree) == expected
    assert "2 keys" in out.getvalue()

    (tree / "email/example.org/alice").write_bytes(b"tampered")
    (tree / f"fpr/{cast.bob.fingerprint[:2]}/{cast.bob.fingerprint}").unlink()
    (tree / "email/example.org/mallory").write_bytes(b"not published")
    out = StringIO()
    with pytest.raises(CommandError, match="3 file"):
        call_command("materialize", "--check", "--quiet", stdout=out)
    drift = out.getvalue()
    assert "differs email/example.org/alice" in drift
    assert f"missing fpr/{cast.bob.fingerprint[:2]}/{cast.bob.fingerprint}" in drift
    assert "extra   email/example.org/mallory" in drift


def test_address_parts_are_escaped_in_paths(ks, cast, tree, gpg_factory):
    gpg = gpg_factory()
    fpr = gpg.generate("Slash <a/b%c+d@example.org>")
    ks.publish(gpg.run("--armor", "--export", fpr).stdout, "a/b%c+d@example.org")
    assert "email/example.org/a%2Fb%25c+d" in files(tree)


def test_two_trees_follow_one_database(ks, cast, tmp_path, tree, settings):
    """Each node follows the change log by itself (materialize --follow)."""
    trees = [tmp_path / "node1", tmp_path / "node2"]
    database = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "DJANGO_SETTINGS_MODULE": "attester.settings",
        "WKD_DOMAINS": "example.org",
        "PUBLISH_FOLLOW_INTERVAL": "0.1",
    }
    followers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "materialize", "--follow", "--quiet", "--tree", str(node)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for node in trees
    ]
    try:
        for node in trees:
            _wait(lambda node=node: (node / ".follow.json").exists())
        ks.publish(cast.alice.data, *cast.alice.emails)
        started = time.monotonic()
        for node in trees:
            _wait(lambda node=node: files(node) == files(tree))
        lag = time.monotonic() - started
        print(f"both trees caught up {lag:.2f} s after the commit")

        policy.unpublish(Binding.objects.get(address="alice@example.org"), actor="test")
        for node in trees:
            _wait(lambda node=node: not (node / "email/example.org/alice").exists())
            _wait(lambda node=node: files(node) == files(tree))
    finally:
        for follower in followers:
            follower.terminate()
            follower.wait(timeout=10)


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("not within the time limit")


def test_the_follower_waits_for_a_transaction_that_commits_late(ks, cast, tree, tmp_path):
    """Change-log ids are taken at insert: a later id may commit first. The
    follower applies what it sees and keeps its position before the gap
    until the missing id commits."""
    follower = Follower(tmp_path / "node")
    follower.start()
    ks.publish(cast.bob.data, "bob@example.net")
    held = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        with transaction.atomic():
            published_files.changed(Key.objects.get(fingerprint=cast.bob.fingerprint))
            held.set()
            release.wait(10)
        connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    held.wait(10)
    ks.publish(cast.alice.data, *cast.alice.emails)  # a later id, committed first
    follower.step()
    assert (tmp_path / "node/email/example.org/alice").exists()
    stuck = follower.position
    release.set()
    writer.join()
    follower.step()
    assert follower.position > stuck
    assert files(tmp_path / "node") == files(tree)


def test_a_bulk_import_leaves_a_tree_that_matches_the_database(ks, cast, tree, tmp_path):
    """Workers write no markers and lift the final-miss flags; the end of the
    import writes what the tree must hold (answers, markers, flags)."""
    from keys import openpgp

    ks.publish(cast.alice.data, *cast.alice.emails)
    dump = tmp_path / "dump.pgp"
    dump.write_bytes(
        openpgp.dearmor(cast.bob.data)
        + openpgp.dearmor(cast.alice_v2.data)
        + openpgp.dearmor(cast.carol.data)
    )
    state = str(tmp_path / "s.json")
    call_command("import_dump", str(dump), "--bind-addresses", "--state", state, "--quiet", stdout=StringIO())
    out = StringIO()
    call_command("materialize", "--check", "--quiet", stdout=out)
    assert "matches" in out.getvalue()
    assert (tree / ".final-misses-id").exists()
    assert (tree / "known/email/example.net/bob").exists()  # cached: the application answers
    merged = tree / f"fpr/{cast.alice.fingerprint[:2]}/{cast.alice.fingerprint}"
    assert merged.exists()  # the published key merged by the dump, written again
