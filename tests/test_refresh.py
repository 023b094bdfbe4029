"""Scheduled refresh: cadence, upstream changes, reassignment, leases, a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from federation.refresh import lease_due, refresh_key
from keys import clock, openpgp
from keys.models import Binding, Event, Key, Origin, Source, VerificationToken
from keys.services.housekeeping import prune
from keys.services.schedule import next_refresh

from . import upstreams
from .conftest import at_once
from .instance import Instance
from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _federation(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def key(**fields) -> Key:
    defaults = {
        "fingerprint": os.urandom(20).hex().upper(),
        "version": 4,
        "key_id": "0" * 16,
        "algorithm": "EdDSA",
        "created": NOW - timedelta(days=400),
        "data": b"",
        "origin": Origin.VKS,
    }
    return Key(**{**defaults, **fields})


# -- cadence (injectable clock) ------------------------------------------------------


def test_a_key_from_upstream_is_refreshed_every_30_days():
    assert next_refresh(key(), NOW) == NOW + timedelta(days=30)


@pytest.mark.parametrize(
    "expires",
    [NOW + timedelta(days=13), NOW + timedelta(days=1), NOW - timedelta(days=1), NOW - timedelta(days=29)],
)
def test_near_or_just_after_expiry_it_is_refreshed_daily(expires):
    assert next_refresh(key(expires=expires), NOW) == NOW + timedelta(days=1)


def test_long_expired_keys_go_back_to_the_normal_cadence():
    assert next_refresh(key(expires=NOW - timedelta(days=31)), NOW) == NOW + timedelta(days=30)


def test_the_next_check_comes_no_later_than_the_near_expiry_window():
    expires = NOW + timedelta(days=20)
    assert next_refresh(key(expires=expires), NOW) == expires - timedelta(days=14)


def test_failures_back_off_but_never_past_the_interval():
    k = key()
    assert [next_refresh(k, NOW, failures=n) for n in (1, 2, 3, 4)] == [
        NOW + timedelta(hours=h) for h in (1, 2, 4, 8)
    ]
    assert next_refresh(k, NOW, failures=20) == NOW + timedelta(days=30)


def test_a_revoked_key_gets_one_last_check_then_none():
    k = key(revoked=True)
    assert next_refresh(k, NOW) == NOW + timedelta(days=1)
    assert next_refresh(k, NOW, was_revoked=True) is None


def test_uploads_are_refreshed_only_from_configured_peers(settings):
    assert next_refresh(key(origin=Origin.UPLOAD), NOW) is None
    settings.REFRESH_PEERS = ["peer"]
    assert next_refresh(key(origin=Origin.UPLOAD), NOW) == NOW + timedelta(days=30)


# -- leases ------------------------------------------------------------------------


def due_keys(n: int) -> list[int]:
    keys = [key(next_refresh_at=NOW - timedelta(minutes=i)) for i in range(n)]
    return [k.pk for k in Key.objects.bulk_create(keys)]


def test_a_duplicated_tick_leases_nothing_twice():
    ids = due_keys(10)
    first = lease_due(NOW, batch=100)
    assert sorted(first) == sorted(ids)
    assert lease_due(NOW, batch=100) == []


def test_a_crashed_workers_keys_are_due_again_after_the_lease(settings):
    due_keys(3)
    assert len(lease_due(NOW)) == 3
    assert lease_due(NOW + timedelta(minutes=settings.REFRESH_LEASE_MINUTES - 1)) == []
    assert len(lease_due(NOW + timedelta(minutes=settings.REFRESH_LEASE_MINUTES + 1))) == 3


@pytest.mark.skipif("os.environ.get('DATABASE_URL', 'postgres').startswith('sqlite')")
def test_two_workers_leasing_at_once_never_get_the_same_key():
    due_keys(200)
    runs = at_once(lambda: [lease_due(NOW, batch=25) for _ in range(3)], 4)
    leased = [i for batches in runs for batch in batches for i in batch]
    assert len(leased) == len(set(leased)) == 200


# -- refresh against a real upstream (a second instance of this server) ----------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, cast):
    instance = Instance(tmp_path_factory.mktemp("refresh-upstream"))
    instance.publish(cast.alice.text, "alice@example.org")
    yield instance
    instance.stop()


def test_refresh_merges_a_later_expiry_a_new_subkey_then_the_revocation(ks, upstream, cast):
    Source.objects.create(name="upstream", kind="vks", url=upstream.url)
    assert ks.hkp_get("alice@example.org").fingerprints == [cast.alice.fingerprint]
    local = Key.objects.get()
    assert local.next_refresh_at is not None and local.origin == "vks"
    old_expiry = local.expires

    # Upstream learns of the new subkey and expiry; the refresh brings them.
    import requests

    requests.post(f"{upstream.url}/vks/v1/upload", json={"keytext": cast.alice_v2.text}, timeout=10)
    assert refresh_key(local.pk).result == "updated"
    local.refresh_from_db()
    assert local.expires and old_expiry and local.expires > old_expiry
    assert local.subkeys.count() == len(set(cast.alice.subkeys) | set(cast.alice_v2.subkeys))
    assert local.refreshed_at is not None and local.refresh_failures == 0
    assert local.next_refresh_at > clock.now() + timedelta(days=29)
    assert refresh_key(local.pk).result == "unchanged"

    # Upstream gets the revocation: the key is revoked here, its address no
    # longer served; one last check, then no more refreshes.
    requests.post(f"{upstream.url}/vks/v1/upload", json={"keytext": cast.alice_revoked.text}, timeout=10)
    assert refresh_key(local.pk).result.startswith("updated")
    local.refresh_from_db()
    assert local.revoked
    assert Binding.objects.get(address="alice@example.org").state == Binding.State.REVOKED
    assert local.next_refresh_at is not None
    refresh_key(local.pk)
    local.refresh_from_db()
    assert local.next_refresh_at is None


def test_a_failing_source_backs_off_and_is_recorded(ks, cast, settings):
    broken = upstreams.RawServer(upstreams.garbage)
    try:
        source = Source.objects.create(name="broken", kind="hkp", url=broken.url)
        k = key(source=source, next_refresh_at=NOW)
        k.save()
        clock.set_now(NOW)
        assert refresh_key(k.pk).result.startswith("failed")
        k.refresh_from_db()
        assert k.refresh_failures == 1 and k.last_refresh_result.startswith("failed")
        assert k.next_refresh_at == NOW + timedelta(hours=1)
        refresh_key(k.pk)
        k.refresh_from_db()
        assert k.next_refresh_at == NOW + timedelta(hours=2)
    finally:
        broken.close()


# -- deleted or replaced upstream ---------------------------------------------------------


def cache_from(ks, scripted, cast, address: str, member) -> Key:
    scripted.routes[f"/vks/v1/by-email/{address}"] = (200, member.data)
    scripted.routes[f"/vks/v1/by-keyid/{member.key_id}"] = (200, member.data)
    Source.objects.create(name="scripted", kind="vks", url=scripted.url)
    assert ks.hkp_get(address).fingerprints == [member.fingerprint]
    return Key.objects.get(fingerprint=member.fingerprint)


def test_a_key_deleted_upstream_keeps_its_binding_and_logs_an_event(ks, scripted, cast):
    local = cache_from(ks, scripted, cast, "bob@example.net", cast.bob)
    scripted.routes.clear()
    result = refresh_key(local.pk).result
    assert result.startswith("missing upstream")
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.CACHED
    assert Event.objects.filter(action="upstream_changed", address="bob@example.net").exists()


def test_a_key_replaced_upstream_is_kept_unless_reassign_is_on(ks, scripted, cast, settings, gpg_factory):
    local = cache_from(ks, scripted, cast, "bob@example.net", cast.bob)
    gpg = gpg_factory()
    newer = gpg.generate("Bob Newer <bob@example.net>")
    scripted.routes["/vks/v1/by-email/bob@example.net"] = (200, gpg.run("--export", newer).stdout)

    assert "kept 1 address" in refresh_key(local.pk).result
    assert ks.hkp_get("bob@example.net").fingerprints == [cast.bob.fingerprint]

    settings.REFRESH_REASSIGN = True
    assert "reassigned 1 address" in refresh_key(local.pk).result
    assert ks.hkp_get("bob@example.net").fingerprints == [newer]
    assert Binding.objects.get(key=local, address="bob@example.net").state == Binding.State.UNPUBLISHED
    moved = Binding.objects.get(key__fingerprint=newer)
    assert moved.state == Binding.State.CACHED and moved.validation == Binding.Validation.UPSTREAM_VERIFIED
    assert Event.objects.filter(action="address_reassigned", detail=newer).exists()


def test_a_refresh_never_publishes_a_new_address(ks, scripted, cast):
    local = cache_from(ks, scripted, cast, "alice@example.org", cast.alice)
    assert Binding.objects.get(address="alice@work.example.com").state == Binding.State.UNPUBLISHED
    refresh_key(local.pk)
    assert Binding.objects.get(address="alice@work.example.com").state == Binding.State.UNPUBLISHED


def test_uploaded_keys_are_refreshed_from_peers_merge_only(ks, scripted, cast, settings):
    settings.REFRESH_PEERS = ["peer"]
    Source.objects.create(name="peer", kind="vks", url=scripted.url)
    ks.upload(cast.alice.data)
    local = Key.objects.get()
    assert local.next_refresh_at is not None
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, cast.alice_v2.data)
    assert refresh_key(local.pk).result.startswith("updated")
    assert not Binding.objects.exclude(state=Binding.State.UNPUBLISHED).exists()


def test_refresh_keys_command(ks, scripted, cast):
    local = cache_from(ks, scripted, cast, "bob@example.net", cast.bob)
    out = StringIO()
    call_command("refresh_keys", "--fingerprint", cast.bob.fingerprint, "--dry-run", stdout=out)
    assert "would merge" in out.getvalue()
    Key.objects.filter(pk=local.pk).update(next_refresh_at=clock.now() - timedelta(minutes=1))
    out = StringIO()
    call_command("refresh_keys", "--due", stdout=out)
    assert f"{cast.bob.fingerprint} unchanged" in out.getvalue() and "1 key(s)" in out.getvalue()


def test_make_run_runs_the_beat_schedule_in_process(ks, scripted, cast):
    import threading as _threading

    from keys.management.commands.runkeyserver import run_schedule_in_process

    local = cache_from(ks, scripted, cast, "bob@example.net", cast.bob)
    Key.objects.filter(pk=local.pk).update(next_refresh_at=clock.now() - timedelta(minutes=1))
    stop = _threading.Event()
    thread = _threading.Thread(target=run_schedule_in_process, args=(stop, 0.0), daemon=True)
    thread.start()
    try:
        for _ in range(100):
            local.refresh_from_db()
            if local.refreshed_at:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert local.refreshed_at is not None and local.last_refresh_result == "unchanged"


# -- housekeeping ------------------------------------------------------------------------


def test_housekeeping_prunes_tokens_unconfirmed_uploads_and_old_events(ks, cast, settings):
    ks.upload(cast.carol.data)
    ks.publish(cast.bob.data, "bob@example.net")
    assert VerificationToken.objects.exists()
    clock.set_now(clock.now() + timedelta(days=settings.EVENT_RETENTION_DAYS + 1))
    counts = prune()
    assert counts["unconfirmed_keys"] == 1 and counts["tokens"] >= 1 and counts["events"] >= 1
    assert list(Key.objects.values_list("fingerprint", flat=True)) == [cast.bob.fingerprint]
    assert not VerificationToken.objects.exists()
    assert ks.hkp_get("bob@example.net").status == 200


# -- a real Celery worker on Redis --------------------------------------------------------


def test_a_real_worker_refreshes_due_keys_from_the_beat_task(ks, scripted, cast, settings, tmp_path):
    local = cache_from(ks, scripted, cast, "alice@example.org", cast.alice)
    scripted.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, cast.alice_v2.data)
    Key.objects.filter(pk=local.pk).update(next_refresh_at=clock.now() - timedelta(minutes=1))
    broker = "redis://127.0.0.1:6379/11"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "FEDERATION_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DJANGO_SETTINGS_MODULE": "attester.settings_test",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "attester", "worker", "--pool=solo", "--loglevel=WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    from celery import Celery

    sender = Celery("test-sender", broker=broker, set_as_current=False)
    try:
        # What beat sends on its tick; the worker leases and refreshes.
        sender.send_task("federation.tasks.refresh_due_task")
        for _ in range(300):
            local.refresh_from_db()
            if local.refreshed_at:
                break
            time.sleep(0.1)
        assert local.refreshed_at is not None, (tmp_path / "worker.log").read_text()
        assert local.last_refresh_result == "updated"
        assert local.subkeys.count() == len(set(cast.alice.subkeys) | set(cast.alice_v2.subkeys))
    finally:
        sender.close()
        worker.terminate()
        worker.wait(timeout=20)
        log.close()


def test_the_parsed_upstream_copy_must_have_our_full_fingerprint(cast):
    from federation.refresh import _same_key

    assert _same_key([cast.bob.data], cast.bob.fingerprint) == openpgp.parse(cast.bob.data).certs[0].data
    assert _same_key([cast.carol.data], cast.bob.fingerprint) is None
    assert _same_key([b"garbage"], cast.bob.fingerprint) is None
