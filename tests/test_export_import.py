"""`manage.py export_keys` and `manage.py import_keys`: keyrings, SKS dumps, the JSON dump."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from keys import clock, openpgp
from keys.models import Binding, Event, Key, Origin, OutboxMail, PolicyBlock, PublishedChange, Source, Subkey
from keys.services import imports, policy, publication
from keys.services.locking import locked_key

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
FIXTURES = Path(__file__).parent / "fixtures"


def binary(member) -> bytes:
    return openpgp.dearmor(member.data) if member.data.lstrip().startswith(b"-----") else member.data


def run(*args: object) -> str:
    out = StringIO()
    call_command(*[str(a) for a in args], "--quiet", stdout=out, stderr=StringIO())
    return out.getvalue()


def run_failing(*args: object) -> tuple[str, str]:
    """(the summary printed, the CommandError's message)."""
    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(*[str(a) for a in args], "--quiet", stdout=out, stderr=StringIO())
    return out.getvalue(), str(failed.value)


@pytest.fixture
def tree(tmp_path, settings) -> Path:
    settings.PUBLISH_DIR = str(tmp_path / "public")
    return tmp_path / "public"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.fixture
def server(ks, cast, tree) -> Keyserver:
    """Keys in every state: published and fingerprint-verified, pending, cached
    from a source, removed by fingerprint, an address removed by pattern."""
    ks.publish(cast.alice.data, "alice@example.org")
    alice = Binding.objects.get(address="alice@example.org")
    policy.mark_fingerprint_verified(alice, actor="staff")
    token = ks.upload(cast.bob.data).json()["token"]
    ks.request_verify(token, ["bob@example.net"])
    directory = Source.objects.create(
        name="directory",
        kind=Source.Kind.LDAP,
        url="ldaps://ldap.example.org",
        authoritative_domains=["example.org"],
        order=5,
        options={"base_dn": "dc=example,dc=org", "bind_password": "hunter2"},
    )
    carol = imports.import_keys(cast.carol.data, origin=Origin.LDAP, source_id=directory.pk).keys[0].key
    with locked_key(carol.pk) as key:
        binding = key.bindings.get(address="carol@example.org")
        publication.vouch(
            key,
            binding,
            state=Binding.State.CACHED,
            validation=Binding.Validation.UPSTREAM_VERIFIED,
            actor="t",
        )
        publication.rebuild(key)
    Key.objects.filter(pk=carol.pk).update(
        refreshed_at=clock.now() - timedelta(hours=3), refresh_failures=2, last_refresh_result="timed out"
    )
    ks.upload(cast.dave_certified.data)
    policy.remove_key_by_policy(
        Key.objects.get(fingerprint=cast.dave_certified.fingerprint), reason="abuse", actor="staff"
    )
    ks.upload(cast.v6.data)
    policy.remove_address_by_policy("v6@*", reason="no v6 here", actor="staff")
    ks.upload(cast.expired.data)
    return ks


def snapshot() -> dict[str, list]:
    """Everything the JSON dump promises to reproduce."""
    keys = Key.objects.order_by("fingerprint")
    return {
        "keys": [
            (
                k.fingerprint, bytes(k.data), k.origin, k.source.name if k.source else None, k.blocked,
                k.revoked, bytes(k.published), k.published_armor, k.published_user_ids, bytes(k.fallback),
                k.first_seen, k.updated, k.refreshed_at, k.next_refresh_at, k.refresh_failures,
                k.last_refresh_result,
            )
            for k in keys
        ],
        "subkeys": sorted(Subkey.objects.values_list("primary__fingerprint", "fingerprint", "key_id")),
        "bindings": sorted(
            (b.key.fingerprint, b.address, b.domain, b.wkd_hash, b.state, b.validation, b.pending_since,
             b.verified_at, b.last_audited_at, b.created, b.updated, bytes(b.certificate))
            for b in Binding.objects.select_related("key")
        ),
        "blocks": sorted(
            PolicyBlock.objects.values_list(
                "fingerprint", "address_pattern", "reason", "created", "created_by"
            )
        ),
        "sources": sorted(
            Source.objects.values_list("name", "kind", "url", "authoritative_domains", "order", "enabled")
        ),
    }  # fmt: skip


def flush(tree: Path) -> None:
    """An empty server: no key, binding, block, source, event, mail, published file."""
    Event.objects.all().delete()
    OutboxMail.objects.all().delete()
    Key.objects.all().delete()
    PolicyBlock.objects.all().delete()
    Source.objects.all().delete()
    PublishedChange.objects.all().delete()
    shutil.rmtree(tree, ignore_errors=True)
    assert not Key.objects.exists() and not Binding.objects.exists()


def test_the_json_round_trip_onto_an_empty_database_reproduces_everything(
    server, cast, tree, tmp_path, client
):
    before = snapshot()
    assert {b[4] for b in before["bindings"]} >= {"published", "pending", "cached", "removed_by_policy"}
    assert len(before["blocks"]) == 2 and len(before["sources"]) == 1
    path = tmp_path / "backup.json"
    assert "exported 6 keys, 7 bindings, 2 policy blocks and 1 sources" in run(
        "export_keys", path, "--format", "json"
    )
    flush(tree)

    summary = run("import_keys", path)

    assert "keys read 6: stored 6, merged 0, already there 0, refused 0" in summary
    assert "bindings restored 7; policy blocks restored 2 (already there 0); sources restored 1" in summary
    assert snapshot() == before
    # The options of the source came along, its password did not.
    assert Source.objects.get().options == {"base_dn": "dc=example,dc=org"}
    # Lookups and the published files serve the restored keys again.
    assert client.get("/vks/v1/by-email/alice@example.org").status_code == 200
    assert (tree / "email/example.org/alice").read_bytes() == client.get(
        "/vks/v1/by-email/alice@example.org"
    ).content
    assert client.get(f"/vks/v1/by-fingerprint/{cast.dave_certified.fingerprint}").status_code == 404
    assert client.get("/vks/v1/by-email/bob@example.net").status_code == 404
    assert client.get("/pks/lookup", {"op": "get", "search": "carol@example.org"}).status_code == 200
    # The policy blocks hold on the new server: the removed key cannot come back.
    assert ks_upload_status(client, cast.dave_certified.data) == 403


def ks_upload_status(client, data: bytes) -> int:
    return client.post(
        "/vks/v1/upload", {"keytext": data.decode()}, content_type="application/json"
    ).status_code


def test_the_json_dump_is_one_json_object_per_line_and_ends_with_its_counts(server, tmp_path):
    path = tmp_path / "backup.json"
    run("export_keys", path, "--format", "json")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["format"] == "keyserver-dump" and records[0]["version"] == 1
    assert [r["type"] for r in records[1:]] == ["source"] + ["key"] * 6 + ["block"] * 2 + ["end"]
    assert records[-1] == {"type": "end", "keys": 6, "bindings": 7, "blocks": 2, "sources": 1}
    assert "hunter2" not in path.read_text()


def test_an_interrupted_json_import_run_again_goes_on_where_it_stopped(server, tree, tmp_path):
    before = snapshot()
    path = tmp_path / "backup.json"
    run("export_keys", path, "--format", "json")
    lines = path.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.json"
    cut.write_bytes(b"".join(lines[:5]))  # header, source, three keys: as if stopped there
    flush(tree)

    summary, error = run_failing("import_keys", cut)
    assert "keys read 3: stored 3" in summary
    assert "ends early" in error
    assert Key.objects.count() == 3

    summary = run("import_keys", path)
    assert "keys read 6: stored 3, merged 0, already there 3, refused 0" in summary
    assert "sources restored 0 (already there 1)" in summary
    assert "resumed: 3 keys were already stored" in summary
    assert snapshot() == before

    again = run("import_keys", path)
    assert "keys read 6: stored 0, merged 0, already there 6, refused 0" in again
    assert "policy blocks restored 0 (already there 2)" in again
    assert "nothing new" in again
    assert snapshot() == before


def test_the_published_keyring_armored_and_binary_holds_published_forms_only(server, cast, tree, tmp_path):
    armored, raw = tmp_path / "keys.asc", tmp_path / "keys.pgp"
    assert "exported 1 published keys (armored keyring)" in run("export_keys", armored)
    assert "exported 1 published keys (binary keyring)" in run("export_keys", raw, "--format", "binary")
    assert armored.read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    alice = Key.objects.get(fingerprint=cast.alice.fingerprint)
    assert raw.read_bytes() == bytes(alice.published)
    assert openpgp.dearmor(armored.read_bytes()) == raw.read_bytes()
    certs = openpgp.parse(raw.read_bytes()).certs
    # Only the confirmed address; not the pending, cached, removed or unconfirmed keys.
    assert [c.fingerprint for c in certs] == [cast.alice.fingerprint]
    assert [u.email for u in certs[0].user_ids] == ["alice@example.org"]

    for path in (armored, raw):
        flush(tree)
        summary = run("import_keys", path)
        assert "keys read 1: stored 1, merged 0, already there 0, refused 0" in summary
        assert list(Key.objects.values_list("fingerprint", flat=True)) == [cast.alice.fingerprint]
        # A keyring carries no confirmation: the address waits for its owner again.
        assert Binding.objects.get().state == Binding.State.UNPUBLISHED
        again = run("import_keys", path)
        assert "keys read 1: stored 0, merged 0, already there 1, refused 0" in again
        assert "nothing new" in again


def test_an_sks_dump_is_loaded_with_its_refusals_and_a_second_run_stores_nothing(cast, tmp_path, client):
    dump = tmp_path / "sks-dump-0000.pgp"
    dump.write_bytes(
        binary(cast.bob)
        + binary(cast.carol)
        + (FIXTURES / "alice_secret.pgp").read_bytes()
        + binary(cast.dave_certified)
        + cast.sigs_flood.data
        + binary(cast.v6)
    )
    summary = run("import_keys", dump, "--state", tmp_path / "state.json")
    assert "keys read 6: stored 4, merged 0, already there 0, refused 2" in summary
    assert "secret" in summary and "self-signatures" in summary
    assert Key.objects.filter(origin=Origin.IMPORT).count() == 4
    assert client.get(f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}").status_code == 200
    stored = sorted(Key.objects.values_list("fingerprint", "data", "updated"))

    again = run("import_keys", dump, "--state", tmp_path / "state.json")
    assert "keys read 6: stored 0, merged 0, already there 4, refused 2" in again
    assert "nothing new" in again
    assert sorted(Key.objects.values_list("fingerprint", "data", "updated")) == stored

    resumed = run("import_keys", dump, "--state", tmp_path / "state.json", "--resume")
    assert "keys read 0: stored 0" in resumed and "the last run finished these files" in resumed


def test_garbage_is_refused_with_a_reason_and_changes_nothing(server, tmp_path):
    before = snapshot()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not a keyring at all\n" * 50)
    summary, error = run_failing("import_keys", garbage)
    assert "refused 1: garbage.bin:" in summary
    assert "nothing could be imported" in error
    not_json = tmp_path / "broken.json"
    not_json.write_text('{"this is": "not a dump"}\n{"type": "key"}\n')
    _summary, error = run_failing("import_keys", not_json)
    assert "not a keyserver JSON dump" in error
    missing = tmp_path / "missing.pgp"
    _summary, error = run_failing("import_keys", missing)
    assert "no such file" in error
    assert snapshot() == before


def test_a_secret_key_inside_a_keyring_is_refused_and_the_rest_is_kept(server, tmp_path):
    before = snapshot()
    keyring = FIXTURES / "keyring_with_secret.pgp"  # Bob, Alice's SECRET key, Carol
    summary = run("import_keys", keyring, "--state", tmp_path / "s.json")
    assert "keys read 3: stored 0, merged 0, already there 2, refused 1" in summary
    assert "refused 1: This is a secret (private) key" in summary
    assert snapshot() == before


def test_damaged_lines_of_a_json_dump_are_refused_and_the_others_restored(server, cast, tree, tmp_path):
    path = tmp_path / "backup.json"
    run("export_keys", path, "--format", "json")
    lines = path.read_text().splitlines()
    keys = [json.loads(line) for line in lines if '"type":"key"' in line]
    secret = {**keys[0], "data": base64.b64encode((FIXTURES / "alice_secret.pgp").read_bytes()).decode()}
    wrong = {**keys[1], "bindings": [{"address": "x@example.org", "state": "adored"}]}
    damaged = [lines[0], lines[1], json.dumps(secret), json.dumps(wrong), "{not json", *lines[4:]]
    broken = tmp_path / "damaged.json"
    broken.write_text("\n".join(damaged) + "\n")
    flush(tree)

    summary = run("import_keys", broken)

    assert "keys read 6: stored 4, merged 0, already there 0, refused 2" in summary
    assert "refused 1: This is a secret (private) key" in summary
    assert "refused 1: The dump names an unknown state of x@example.org." in summary
    assert "refused 1: Line 5 of the dump is not JSON." in summary
    assert not Key.objects.filter(fingerprint__in=[keys[0]["fingerprint"], keys[1]["fingerprint"]]).exists()
    assert Key.objects.count() == 4
