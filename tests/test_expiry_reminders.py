"""Expiry reminders: each published address of a key that stops working
soon is mailed how to extend it, once per threshold of each expiry date,
and the printed commands extend the key and send it here with real gpg."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from django.core.management import call_command

from keys import clock
from keys.models import Binding, Event, ExpiryReminder, Key, OutboxMail
from keys.models.reminders import usable_until as _usable_until
from keys.services import outbox, policy, publication, reminders
from keys.services.locking import locked_key

from .conftest import _manifest
from .keyserver import Keyserver
from .signed_mail import assert_signed_by_server

# Transactional: mail is enqueued on commit and delivered, as in production.
pytestmark = pytest.mark.django_db(transaction=True)
EXPIRES: dict[str, float] = {name: meta["expires"] for name, meta in _manifest().items() if "expires" in meta}
ALICE = ("alice@example.org", "alice@work.example.com")


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def until_of(key: Key) -> datetime:
    until = _usable_until(key)
    assert until is not None
    return until


def reminders_to(mailoutbox, address: str) -> list:
    return [m for m in mailoutbox if address in m.to and "expires on" in m.subject]


def commands(body: str) -> list[str]:
    """The commands of the mail, not those of the signed-by paragraph after "--"."""
    text = body.replace("\r\n", "\n").split("\n--\n", 1)[0]
    return [line.strip() for line in text.splitlines() if line.strip().startswith("gpg ")]


def run_jobs(times: int = 3) -> None:
    for _ in range(times):
        reminders.send_due()


def test_it_reminds_every_published_address_at_30_and_7_days_once_each(ks, cast, mailoutbox):
    ks.publish(cast.alice.data, *ALICE)
    key = Key.objects.get(fingerprint=cast.alice.fingerprint)
    until = until_of(key)
    assert until == datetime.fromtimestamp(EXPIRES["alice.asc"], UTC)
    mailoutbox.clear()

    clock.set_now(until - timedelta(days=31))
    run_jobs()
    assert mailoutbox == []
    clock.set_now(until - timedelta(days=29, hours=23))
    run_jobs()
    for address in ALICE:
        [mail] = reminders_to(mailoutbox, address)
        assert "in 30 days" in mail.body and f"{until:%Y-%m-%d}" in mail.body
        fpr = cast.alice.fingerprint
        assert commands(mail.body) == [
            f"gpg --quick-set-expire {fpr} 2y",
            f"gpg --quick-set-expire {fpr} 2y '*'",
            f"gpg --keyserver hkp://testserver:80 --send-keys {fpr}",
        ]
        assert mail.extra_headers["Auto-Submitted"] == "auto-generated"
    clock.set_now(until - timedelta(days=10))
    run_jobs()
    assert len(mailoutbox) == 2
    clock.set_now(until - timedelta(days=6))
    run_jobs()
    assert [len(reminders_to(mailoutbox, a)) for a in ALICE] == [2, 2]
    assert "in 6 days" in reminders_to(mailoutbox, ALICE[0])[-1].body
    clock.set_now(until - timedelta(hours=1))
    run_jobs()
    assert len(mailoutbox) == 4
    records = ExpiryReminder.objects.filter(key=key).order_by("threshold_days")
    assert [(r.expires, r.threshold_days, r.mails) for r in records] == [(until, 7, 2), (until, 30, 2)]


def test_an_uploaded_extension_stops_them_and_the_new_date_reminds_in_its_turn(ks, cast, mailoutbox):
    ks.publish(cast.alice.data, *ALICE)
    key = Key.objects.get(fingerprint=cast.alice.fingerprint)
    until = until_of(key)
    mailoutbox.clear()
    clock.set_now(until - timedelta(days=20))
    run_jobs()
    assert len(mailoutbox) == 2

    # alice_v2 is the same key, extended (a real new self-signature).
    assert ks.upload(cast.alice_v2.data).status_code == 200
    key.refresh_from_db()
    later = until_of(key)
    assert later == datetime.fromtimestamp(EXPIRES["alice_v2.asc"], UTC)
    assert set(key.bindings.values_list("state", flat=True)) == {"published"}
    clock.set_now(until - timedelta(days=6))
    run_jobs()
    clock.set_now(until + timedelta(days=1))
    run_jobs()
    assert len(mailoutbox) == 2  # no 7-day reminder for the old date

    clock.set_now(later - timedelta(days=25))
    run_jobs()
    assert len(mailoutbox) == 4
    assert all(f"{later:%Y-%m-%d}" in m.body for m in mailoutbox[2:])


def test_a_queued_reminder_is_cancelled_when_the_extension_arrives_first(ks, cast, smtp):
    token = ks.upload(cast.bob.data).json()["token"]
    ks.request_verify(token, ["bob@example.net"])
    assert ks.client.post(urlparse(smtp.link("bob@example.net")).path).status_code == 200
    key = Key.objects.get(fingerprint=cast.bob.fingerprint)
    until = until_of(key)
    smtp.fail_next = 1
    clock.set_now(until - timedelta(days=3))
    run_jobs(1)
    row = OutboxMail.objects.get(kind="expiry")
    sent = len(smtp.messages)
    assert row.state == "queued"
    # The owner extends before the retry: the key's date moves (as an upload would set it).
    with locked_key(key.pk) as locked:
        Key.objects.filter(pk=locked.pk).update(expires=until + timedelta(days=730))
    clock.set_now(until - timedelta(days=3) + timedelta(minutes=5))
    outbox.sweep()
    row.refresh_from_db()
    assert row.state == "cancelled" and len(smtp.messages) == sent


def test_a_key_first_seen_inside_the_7_day_window_gets_one_mail_not_two(ks, cast, mailoutbox):
    ks.publish(cast.bob.data, "bob@example.net")
    until = until_of(Key.objects.get(fingerprint=cast.bob.fingerprint))
    mailoutbox.clear()
    clock.set_now(until - timedelta(days=5))
    run_jobs()
    clock.set_now(until - timedelta(days=1))
    run_jobs()
    assert len(reminders_to(mailoutbox, "bob@example.net")) == 1
    assert ExpiryReminder.objects.filter(mails__gt=0).count() == 1
    assert ExpiryReminder.objects.count() == 2  # the 30-day threshold is covered


def test_none_for_a_key_expired_revoked_removed_by_policy_or_without_published_address(ks, cast, mailoutbox):
    ks.publish(cast.alice.data, *ALICE)
    ks.publish(cast.bob.data, "bob@example.net")
    alice = Key.objects.get(fingerprint=cast.alice.fingerprint)
    bob = Key.objects.get(fingerprint=cast.bob.fingerprint)
    # alice revoked by a real revocation; bob removed by policy.
    assert ks.upload(cast.alice_revocation.data).status_code == 200
    alice.refresh_from_db()
    assert alice.revoked
    policy.remove_key_by_policy(bob, reason="test", actor="test")
    mailoutbox.clear()
    for moment in (until_of(alice), until_of(bob)):
        clock.set_now(moment - timedelta(days=6))
        run_jobs()
    assert mailoutbox == []

    # An expired key (2020) with a published address: nothing after its date.
    ks.publish(cast.expired.data, "old@example.org")
    mailoutbox.clear()
    clock.set_now(None)
    run_jobs()
    assert mailoutbox == []
    assert not ExpiryReminder.objects.exists()


def test_none_once_the_owner_unpublished_the_address(ks, cast, mailoutbox):
    ks.publish(cast.bob.data, "bob@example.net")
    key = Key.objects.get(fingerprint=cast.bob.fingerprint)
    with locked_key(key.pk) as locked:
        publication.unpublish(locked, locked.bindings.all(), actor="owner")
    mailoutbox.clear()
    clock.set_now(until_of(key) - timedelta(days=6))
    run_jobs()
    call_command("send_expiry_reminders")
    assert mailoutbox == []
    assert Binding.objects.get(key=key).state == "unpublished"


def test_the_command_and_the_beat_schedule_run_the_job(ks, cast, mailoutbox, capsys):
    from attester.celery import beat_schedule

    schedule = beat_schedule()
    assert schedule["expiry-reminders"]["task"] == "keys.tasks.send_expiry_reminders"
    assert schedule["expiry-reminders"]["schedule"] == 3600.0
    ks.publish(cast.bob.data, "bob@example.net")
    mailoutbox.clear()
    clock.set_now(until_of(Key.objects.get(fingerprint=cast.bob.fingerprint)) - timedelta(days=6))
    call_command("send_expiry_reminders")
    call_command("send_expiry_reminders")
    assert "reminded 1 key(s): 1 mail(s) queued" in capsys.readouterr().out
    assert len(mailoutbox) == 1
    assert Event.objects.filter(action="expiry_reminder").count() == 1


# -- the commands of the mail, with real gpg against a live server ----------------


@pytest.fixture
def server(live_server, settings, smtp):
    port = urlparse(live_server.url).port
    settings.SITE_URL = f"http://127.0.0.1:{port}"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return {"url": settings.SITE_URL, "hkp": f"hkp://127.0.0.1:{port}", "smtp": smtp}


def publish_with_gpg(owner, address: str, smtp) -> str:
    # As `gpg --full-gen-key` makes it: the primary and its encryption subkey expire in a year.
    loopback = ("--passphrase", "", "--pinentry-mode", "loopback")
    owner.run(*loopback, "--quick-gen-key", f"Owner <{address}>", "ed25519", "sign", "1y")
    fpr = owner.fingerprint(address)
    owner.run(*loopback, "--quick-add-key", fpr, "cv25519", "encr", "1y")
    owner.run("--send-keys", fpr)
    link = smtp.link(address)
    session = requests.Session()
    page = session.get(link, timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf, page.text
    assert "Address published" in session.post(link, data={"csrfmiddlewaretoken": csrf.group(1)}).text
    return fpr


@pytest.mark.gpg
def test_the_mailed_commands_extend_the_key_and_send_it_here(server, gpg_factory, tmp_path: Path):
    smtp = server["smtp"]
    address = "expiring@example.org"
    owner = gpg_factory(server["hkp"])
    fpr = publish_with_gpg(owner, address, smtp)
    key = Key.objects.get(fingerprint=fpr)
    until = until_of(key)
    assert key.expires is not None and key.encryption_expires == key.expires  # gpg's subkey expires too

    clock.set_now(until - timedelta(days=20))
    reminders.send_due()
    [raw] = [r for r, m in zip(smtp.raw, smtp.messages, strict=True) if "expires on" in m["Subject"]]
    body = assert_signed_by_server(raw)  # PGP/MIME, checked by real gpg
    printed = commands(body)
    assert printed == [
        f"gpg --quick-set-expire {fpr} 2y",
        f"gpg --quick-set-expire {fpr} 2y '*'",
        f"gpg --keyserver {server['hkp']} --send-keys {fpr}",
    ]
    for command in printed:
        done = owner.run(*shlex.split(command)[1:], check=False)
        assert done.returncode == 0, (command, done.stderr.decode())

    key.refresh_from_db()
    extended = until_of(key)
    assert extended > until + timedelta(days=300)
    # The subkey too, thanks to '*': without it the key would stop working at the old date.
    assert key.encryption_expires is not None and key.encryption_expires > until + timedelta(days=300)
    assert key.bindings.get().state == "published"
    reminders.send_due()
    clock.set_now(until - timedelta(days=6))
    reminders.send_due()
    assert len([m for m in smtp.to(address) if "expires on" in m["Subject"]]) == 1
    clock.set_now(extended - timedelta(days=29))
    reminders.send_due()
    assert len([m for m in smtp.to(address) if "expires on" in m["Subject"]]) == 2
