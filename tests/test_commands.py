"""Management commands: import_dump (mirror) and check_sources."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from keys import openpgp
from keys.models import Binding, Key, Source

from . import upstreams

pytestmark = pytest.mark.django_db(transaction=True)


def binary(member) -> bytes:
    return openpgp.dearmor(member.data) if member.data.lstrip().startswith(b"-----") else member.data


@pytest.fixture
def dump(tmp_path, cast) -> Path:
    """A dump file: four public keys, a secret key in the middle, a too-big flood."""
    path = tmp_path / "sks-dump-0000.pgp"
    path.write_bytes(
        binary(cast.bob)
        + binary(cast.carol)
        + (Path(__file__).parent / "fixtures" / "alice_secret.pgp").read_bytes()
        + binary(cast.dave_certified)
        + cast.sigs_flood.data
        + binary(cast.v6)
    )
    return path


def run(*args: object) -> str:
    out = StringIO()
    call_command(*[str(a) for a in args], stdout=out, stderr=StringIO())
    return out.getvalue()


def test_import_dump_loads_keys_and_reports_rejections(dump, tmp_path, cast, client):
    state = tmp_path / "state.json"
    summary = run("import_dump", dump, "--state", state, "--quiet")
    assert "imported 4, merged 0, unchanged 0, rejected 2" in summary
    assert "secret" in summary and "self-signatures" in summary
    assert Key.objects.filter(origin="import").count() == 4
    # Found by fingerprint and key id, not by address (not bound by default).
    assert client.get(f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}").status_code == 200
    assert client.get(f"/vks/v1/by-keyid/{cast.v6.fingerprint[:16]}").status_code == 200
    assert client.get("/vks/v1/by-email/bob@example.net").status_code == 404
    again = run("import_dump", dump, "--state", state, "--quiet")
    assert "imported 0, merged 0, unchanged 4, rejected 2" in again


def test_import_dump_resumes_where_it_stopped(dump, tmp_path):
    state = tmp_path / "state.json"
    run("import_dump", dump, "--state", state, "--quiet")
    resumed = run("import_dump", dump, "--state", state, "--resume", "--quiet")
    assert "imported 0, merged 0, unchanged 0, rejected 0" in resumed


def test_import_dump_can_serve_mirrored_addresses_as_unverified(dump, tmp_path, client, cast):
    run("import_dump", dump, "--state", tmp_path / "s.json", "--bind-addresses", "--quiet")
    binding = Binding.objects.get(address="bob@example.net")
    assert binding.state == Binding.State.CACHED
    assert binding.validation == Binding.Validation.UPSTREAM_UNVERIFIED
    assert client.get("/pks/lookup", {"op": "get", "search": "bob@example.net"}).status_code == 200


def test_import_dump_reads_armored_keyrings(tmp_path, cast):
    path = tmp_path / "keyring.asc"
    path.write_bytes(cast.keyring3.data)
    assert "imported 3" in run("import_dump", path, "--state", tmp_path / "s.json", "--quiet")


def test_import_dump_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError):
        run("import_dump", tmp_path / "nope.pgp", "--state", tmp_path / "s.json")


def test_check_sources_reports_latency_and_fails_on_a_broken_source(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    good = upstreams.RawServer(upstreams.answer(404, b"none"))
    broken = upstreams.RawServer(upstreams.garbage)
    try:
        Source.objects.create(name="good", kind="hkp", url=good.url, order=1)
        Source.objects.create(name="broken", kind="vks", url=broken.url, order=2)
        out = StringIO()
        with pytest.raises(CommandError, match="1 of 2"):
            call_command("check_sources", "--email", "someone@example.org", stdout=out)
        text = out.getvalue()
        assert "ok   good" in text and " ms " in text
        assert "FAIL broken" in text
        assert Source.objects.get(name="broken").failures == 1
    finally:
        good.close()
        broken.close()


def test_check_sources_with_nothing_configured():
    assert "No sources" in run("check_sources")


def test_import_dump_in_parallel_workers_stores_what_one_process_stores(dump, tmp_path, cast):
    """Two worker processes, batches of two keys: the same keys, bindings and summary."""
    serial = run("import_dump", dump, "--state", tmp_path / "a.json", "--workers", "1", "--quiet")
    stored = sorted(Key.objects.values_list("fingerprint", "published_armor", "revoked"))
    bindings = sorted(Binding.objects.values_list("key__fingerprint", "address", "state"))
    Key.objects.all().delete()
    parallel = run(
        "import_dump", dump, "--state", tmp_path / "b.json", "--workers", "2", "--batch", "2", "--quiet"
    )
    assert parallel.split(" in ")[0] == serial.split(" in ")[0]
    assert parallel.splitlines()[1:] == serial.splitlines()[1:]
    assert sorted(Key.objects.values_list("fingerprint", "published_armor", "revoked")) == stored
    assert sorted(Binding.objects.values_list("key__fingerprint", "address", "state")) == bindings
