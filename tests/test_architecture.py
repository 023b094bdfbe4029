"""The structure's promises (docs/architecture.md) that a change could break
without any protocol test noticing: settings from .env, binding state changes
through the one publication owner, a seam that reads no settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from federation.refresh import refresh_key
from keys import clock, openpgp
from keys.errors import InvalidKey
from keys.models import Binding, Event, Key, Source
from keys.services import imports

from .upstreams import Scripted

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_env_file_sets_var_dir_and_the_beat_intervals(tmp_path):
    """VAR_DIR, HOUSEKEEPING_SECONDS and REFRESH_TICK_SECONDS were read from
    the process environment before .env was loaded, so .env could not set them."""
    env_file = tmp_path / "keyserver.env"
    var = tmp_path / "var-from-env-file"
    env_file.write_text(
        f"VAR_DIR={var}\nHOUSEKEEPING_SECONDS=77\nREFRESH_TICK_SECONDS=33\nOUTBOX_SWEEP_SECONDS=11\n"
        "CELERY_HEARTBEAT_SECONDS=7\nNOTICE_TICK_SECONDS=44\nEXPIRY_REMINDER_SECONDS=5\nRECONFIRM_SECONDS=6\n"
    )
    names = {
        "VAR_DIR",
        "HOUSEKEEPING_SECONDS",
        "REFRESH_TICK_SECONDS",
        "OUTBOX_SWEEP_SECONDS",
        "CELERY_HEARTBEAT_SECONDS",
        "NOTICE_TICK_SECONDS",
        "EXPIRY_REMINDER_SECONDS",
        "RECONFIRM_SECONDS",
        "DATABASE_URL",
    }
    names.add("REDIS_URL")
    environment = {k: v for k, v in os.environ.items() if k not in names}
    environment.update({"ENV_FILE": str(env_file), "DJANGO_SETTINGS_MODULE": "attester.settings"})
    script = (
        "import json, django; django.setup()\n"
        "from django.conf import settings\n"
        "from attester.celery import app\n"
        "print(json.dumps({'var': str(settings.VAR_DIR), 'beat': {n: e['schedule'] for n, e in "
        "app.conf.beat_schedule.items()}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, check=True, timeout=60
    )
    seen = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert seen["var"] == str(var)
    assert seen["beat"] == {
        "refresh-due-keys": 33.0,
        "housekeeping": 77.0,
        "sweep-outbox": 11.0,
        "send-notices": 44.0,
        "expiry-reminders": 5.0,
        "reconfirm-addresses": 6.0,
        **{f"heartbeat-{queue}": 7.0 for queue in ("mail", "refresh", "housekeeping")},
    }
    assert (var / "secret_key").exists()  # the generated key went to the .env's VAR_DIR


def test_the_seam_takes_its_limits_as_an_argument_and_the_import_service_passes_the_settings(cast, settings):
    settings.MAX_USER_IDS = 1
    assert len(openpgp.parse(cast.alice.data).certs[0].user_ids) == 3  # the seam: its defaults
    with pytest.raises(InvalidKey, match="at most 1 are accepted"):
        imports.import_keys(cast.alice.data)
    assert not Key.objects.exists()


def test_mirrored_addresses_change_state_with_their_timestamp_and_an_event(cast, tmp_path):
    dump = tmp_path / "dump.pgp"
    dump.write_bytes(openpgp.dearmor(cast.bob.data))
    call_command("import_dump", str(dump), "--state", str(tmp_path / "s1.json"), "--quiet", stdout=StringIO())
    binding = Binding.objects.get(address="bob@example.net")
    assert binding.state == Binding.State.UNPUBLISHED
    long_ago = clock.now() - timedelta(days=3)
    Binding.objects.filter(pk=binding.pk).update(updated=long_ago)

    call_command(
        "import_dump",
        str(dump),
        "--bind-addresses",
        "--state",
        str(tmp_path / "s2.json"),
        "--quiet",
        stdout=StringIO(),
    )
    binding.refresh_from_db()
    assert binding.state == Binding.State.CACHED
    assert binding.updated > long_ago
    assert Event.objects.filter(action="address_cached", address="bob@example.net").exists()


def test_a_reassigned_address_changes_state_with_its_timestamp(client, cast, settings, gpg_factory):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    scripted = Scripted()
    try:
        scripted.routes["/vks/v1/by-email/bob@example.net"] = (200, cast.bob.data)
        scripted.routes[f"/vks/v1/by-keyid/{cast.bob.key_id}"] = (200, cast.bob.data)
        Source.objects.create(name="scripted", kind="vks", url=scripted.url)
        assert client.get("/pks/lookup?op=get&search=bob@example.net").status_code == 200
        local = Key.objects.get(fingerprint=cast.bob.fingerprint)
        long_ago = clock.now() - timedelta(days=3)
        Binding.objects.filter(key=local).update(updated=long_ago)

        gpg = gpg_factory()
        newer = gpg.generate("Bob Newer <bob@example.net>")
        scripted.routes["/vks/v1/by-email/bob@example.net"] = (200, gpg.run("--export", newer).stdout)
        settings.REFRESH_REASSIGN = True
        assert "reassigned 1 address" in refresh_key(local.pk).result
    finally:
        scripted.close()
    moved = Binding.objects.get(key=local, address="bob@example.net")
    assert moved.state == Binding.State.UNPUBLISHED
    assert moved.updated > long_ago


@pytest.mark.django_db
def test_the_migrations_describe_every_model_as_it_is():
    """A model changed without its migration would differ between databases."""
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
