"""What the server keeps of people: client addresses in events, how long
things are kept, and a privacy page that says so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F

from keys.models import Event, OutboxMail
from keys.services.housekeeping import prune

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def upload_from(ks: Keyserver, cast, address: str):
    return ks.client.post(
        "/vks/v1/upload", {"keytext": cast.alice.text}, content_type="application/json", REMOTE_ADDR=address
    )


@pytest.mark.parametrize(
    ("mode", "remote", "expected"),
    [
        ("truncate", "192.0.2.77", "vks 192.0.2.0/24"),
        ("truncate", "2001:db8:aa:bb::7", "vks 2001:db8:aa::/48"),
        ("drop", "192.0.2.77", "vks"),
        ("keep", "192.0.2.77", "vks 192.0.2.77"),
    ],
)
def test_events_keep_the_client_address_only_as_configured(ks, cast, settings, mode, remote, expected):
    settings.EVENT_CLIENT_ADDRESSES = mode
    assert upload_from(ks, cast, remote).status_code == 200
    assert Event.objects.get(action="key_created").actor == expected


def test_hashed_client_addresses_tell_clients_apart_without_naming_them(ks, cast, settings):
    settings.EVENT_CLIENT_ADDRESSES = "hash"
    from keys.privacy import client_for_log

    one, again, other = (client_for_log(f"web {ip}") for ip in ("192.0.2.77", "192.0.2.77", "192.0.2.78"))
    assert one == again != other
    assert one.startswith("web client:") and "192.0.2" not in one
    assert upload_from(ks, cast, "192.0.2.77").status_code == 200
    assert Event.objects.get(action="key_created").actor == "vks " + one.split(" ", 1)[1]


def test_old_outbox_rows_are_pruned_but_queued_mails_stay(ks, cast, settings):
    ks.publish(cast.alice.text, cast.alice.emails[0])
    OutboxMail.objects.update(created=F("created") - timedelta(days=settings.OUTBOX_RETENTION_DAYS + 1))
    old = OutboxMail.objects.get()
    queued = OutboxMail.objects.create(
        kind="manage", address="someone@example.org", created=old.created, next_attempt_at=old.created,
        deadline=old.deadline,
    )  # fmt: skip
    assert OutboxMail.objects.exclude(pk=queued.pk).filter(state="sent").exists()
    counts = prune()
    assert counts["mails"] >= 1
    assert list(OutboxMail.objects.values_list("pk", flat=True)) == [queued.pk]


def test_the_privacy_page_states_the_settings_in_force(client, settings):
    settings.EVENT_RETENTION_DAYS = 90
    settings.OUTBOX_RETENTION_DAYS = 12
    settings.EVENT_CLIENT_ADDRESSES = "truncate"
    page = client.get("/about/privacy").content.decode()
    assert "for 90 days" in page and "kept for 12 days" in page
    assert "shortened to its network" in page
    assert "only in short-lived rate-limit counters" not in page  # the old, untrue sentence
    settings.EVENT_CLIENT_ADDRESSES = "drop"
    assert "is not recorded" in client.get("/about/privacy").content.decode()
