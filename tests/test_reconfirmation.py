"""Periodic re-confirmation: an address confirmed by mail long ago is
asked again; confirmed, it stays published; not confirmed within the
grace, it is unpublished, and can be confirmed again the usual way."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.db import connection

from keys import clock
from keys.models import Binding, Event, Key, OutboxMail, Reconfirmation
from keys.services import reconfirmation, verification

from .conftest import at_once
from .keyserver import Keyserver
from .signed_mail import assert_signed_by_server

pytestmark = pytest.mark.django_db(transaction=True)
BOB = "bob@example.net"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.fixture
def yearly(settings):
    settings.RECONFIRM_DAYS = 365
    settings.RECONFIRM_GRACE_DAYS = 30


def asked(mailoutbox, address: str = BOB) -> list:
    return [m for m in mailoutbox if address in m.to and "still yours" in m.subject]


def published_bob(ks, cast, mailoutbox) -> Binding:
    ks.publish(cast.bob.data, BOB)
    mailoutbox.clear()
    return Binding.objects.get(address=BOB)


def later(binding: Binding, days: float) -> None:
    assert binding.verified_at is not None
    clock.set_now(binding.verified_at + timedelta(days=days))


def test_it_asks_once_after_reconfirm_days_and_the_link_keeps_the_address(ks, cast, mailoutbox, yearly):
    binding = published_bob(ks, cast, mailoutbox)
    later(binding, 364)
    reconfirmation.run()
    assert asked(mailoutbox) == []
    later(binding, 366)
    reconfirmation.run()
    reconfirmation.run()
    [mail] = asked(mailoutbox)
    assert "valid for 30 days" in mail.body
    # The bytes SMTP would carry are PGP/MIME signed by the server (checked by real gpg).
    assert "valid for 30 days" in assert_signed_by_server(mail.message().as_bytes(linesep="\r\n"))
    link = ks.link(BOB)

    page = ks.client.get(link)  # a mail scanner's GET changes nothing
    assert page.status_code == 200 and b"<form" in page.content
    assert Reconfirmation.objects.get().outcome == ""
    later(binding, 380)
    answer = ks.client.post(link)
    assert answer.status_code == 200 and b"published" in answer.content
    renewed = Binding.objects.get(pk=binding.pk)
    assert renewed.state == "published" and renewed.validation == "email_confirmed"
    assert renewed.verified_at == clock.now()
    assert Reconfirmation.objects.get().outcome == "confirmed"
    assert Event.objects.filter(action="address_reconfirmed", address=BOB).count() == 1
    assert ks.hkp_get(BOB).fingerprints == [cast.bob.fingerprint]

    for days in (381, 420, 380 + 364):
        later(binding, days)
        reconfirmation.run()
    assert len(asked(mailoutbox)) == 1
    assert ks.client.post(link).status_code == 400  # single use
    later(binding, 380 + 366)
    reconfirmation.run()
    assert len(asked(mailoutbox)) == 2  # a year after the renewal


def test_not_confirmed_within_the_grace_it_is_unpublished_and_can_be_published_again(
    ks, cast, mailoutbox, yearly
):
    binding = published_bob(ks, cast, mailoutbox)
    later(binding, 366)
    reconfirmation.run()
    assert len(asked(mailoutbox)) == 1
    link = ks.link(BOB)
    later(binding, 366 + 29)
    reconfirmation.run()
    assert Binding.objects.get(pk=binding.pk).state == "published"
    assert len(asked(mailoutbox)) == 1  # no second mail within the grace
    later(binding, 366 + 30.1)
    reconfirmation.run()
    assert Binding.objects.get(pk=binding.pk).state == "unpublished"
    assert Reconfirmation.objects.get().outcome == "expired"
    assert Event.objects.filter(action="reconfirmation_expired", address=BOB).count() == 1
    assert ks.hkp_get(BOB).status == 404
    assert ks.client.post(link).status_code == 400  # its link expired with the grace
    later(binding, 366 + 60)
    reconfirmation.run()
    assert len(asked(mailoutbox)) == 1  # nothing to ask: it is not published

    # The owner confirms again the usual way: published, confirmed as of now.
    token = ks.upload(cast.bob.data).json()["token"]
    assert ks.request_verify(token, [BOB]).json()["status"][BOB] == "pending"
    assert ks.confirm(BOB).status_code == 200
    again = Binding.objects.get(pk=binding.pk)
    assert again.state == "published" and again.verified_at == clock.now()
    assert ks.hkp_get(BOB).fingerprints == [cast.bob.fingerprint]


def test_a_mail_that_never_left_unpublishes_nothing(ks, cast, yearly, smtp, settings):
    token = ks.upload(cast.bob.data).json()["token"]
    ks.request_verify(token, [BOB])
    assert ks.client.post(urlparse(smtp.link(BOB)).path).status_code == 200
    binding = Binding.objects.get(address=BOB)
    settings.MAIL_RETRY_HOURS = 0  # the first failure is the last
    smtp.fail_next = 1
    later(binding, 366)
    reconfirmation.run()
    assert OutboxMail.objects.get(kind="reconfirm").state == "failed"
    later(binding, 366 + 31)
    reconfirmation.run()
    assert Binding.objects.get(pk=binding.pk).state == "published"
    first = Reconfirmation.objects.order_by("id").first()
    assert first is not None and first.outcome == "not_sent"
    asked_again = [m for m in smtp.to(BOB) if "still yours" in m["Subject"]]
    assert len(asked_again) == 1  # asked again, now that the first never arrived


@pytest.mark.parametrize("validation", ["oidc_verified", "org_directory"])
def test_never_for_addresses_vouched_for_elsewhere(ks, cast, mailoutbox, yearly, validation):
    ks.upload(cast.bob.data)
    key = Key.objects.get(fingerprint=cast.bob.fingerprint)
    binding = verification.publish_proven(key, BOB, validation, actor="test")
    later(binding, 2000)
    reconfirmation.run()
    assert mailoutbox == [] and not Reconfirmation.objects.exists()
    assert Binding.objects.get(pk=binding.pk).state == "published"


def test_a_wks_confirmed_address_is_asked_too_and_a_new_wks_confirmation_answers_it(
    ks, cast, mailoutbox, yearly
):
    """A Web Key Service confirmation proves the mailbox as a link does: a
    recycled mailbox makes it untrue just the same."""
    ks.upload(cast.bob.data)
    key = Key.objects.get(fingerprint=cast.bob.fingerprint)
    binding = verification.publish_proven(key, BOB, "wks_confirmed", actor="wks")
    mailoutbox.clear()
    later(binding, 366)
    reconfirmation.run()
    assert len(asked(mailoutbox)) == 1
    assert Reconfirmation.objects.get().outcome == ""
    # The owner runs gpg-wks-client again instead of following the link.
    verification.publish_proven(key, BOB, "wks_confirmed", actor="wks")
    renewed = Binding.objects.get(pk=binding.pk)
    assert Reconfirmation.objects.get().outcome == "confirmed"
    assert (renewed.state, renewed.validation, renewed.verified_at) == (
        "published",
        "wks_confirmed",
        clock.now(),
    )
    later(binding, 366 + 31)
    reconfirmation.run()
    assert Binding.objects.get(pk=binding.pk).state == "published" and len(asked(mailoutbox)) == 1


def test_off_by_default(ks, cast, mailoutbox, settings, capsys):
    assert settings.RECONFIRM_DAYS == 0
    binding = published_bob(ks, cast, mailoutbox)
    later(binding, 5000)
    assert reconfirmation.run() == {}
    call_command("reconfirm_addresses")
    assert "off" in capsys.readouterr().out
    assert mailoutbox == [] and not Reconfirmation.objects.exists()


def test_the_command_and_the_beat_schedule_run_it(ks, cast, mailoutbox, yearly, capsys):
    from attester.celery import beat_schedule

    assert beat_schedule()["reconfirm-addresses"]["task"] == "keys.tasks.reconfirm_addresses"
    binding = published_bob(ks, cast, mailoutbox)
    later(binding, 400)
    call_command("reconfirm_addresses")
    assert "requested 1, unpublished 0" in capsys.readouterr().out
    assert len(asked(mailoutbox)) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
def test_two_runs_at_once_send_one_mail(ks, cast, mailoutbox, yearly):
    binding = published_bob(ks, cast, mailoutbox)
    later(binding, 400)
    results = at_once(reconfirmation.request_due, 2)
    assert sorted(results) == [0, 1]
    assert Reconfirmation.objects.count() == 1 and len(asked(mailoutbox)) == 1
    assert re.search(r"/verify/", asked(mailoutbox)[0].body)
