"""The mails that reach an owner later (change notices, expiry reminders,
re-confirmation, "key replaced") are in the language of the page the owner
confirmed the address on, not the server's default."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keys import clock, openpgp
from keys.models import Binding, Key
from keys.models.reminders import usable_until
from keys.services import notice_mail, reconfirmation, reminders

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
GERMAN, ENGLISH = "alice@example.org", "alice@work.example.com"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def publish_in(ks: Keyserver, data: bytes, languages: dict[str, str]) -> None:
    """Upload, request, and confirm each address on a page in its language."""
    ks.pass_mail_windows()
    token = ks.upload(data).json()["token"]
    ks.request_verify(token, list(languages))
    for address, language in languages.items():
        answer = ks.client.post(ks.link(address), HTTP_ACCEPT_LANGUAGE=language)
        assert answer.status_code == 200 and answer["Content-Language"] == language


def subjects(mailoutbox, address: str) -> list[str]:
    return [m.subject for m in mailoutbox if address in m.to]


def test_later_mails_are_in_the_language_the_address_was_confirmed_in(ks, cast, mailoutbox, settings):
    assert settings.LANGUAGE_CODE == "en"
    publish_in(ks, cast.alice.data, {GERMAN: "de", ENGLISH: "en"})
    assert Binding.objects.get(address=GERMAN).locale == "de"
    mailoutbox.clear()

    # A change notice.
    ks.upload(cast.alice_v2.data)
    clock.set_now(clock.now() + timedelta(minutes=16))
    notice_mail.send_due()
    assert subjects(mailoutbox, GERMAN) == [f"Ihr OpenPGP-Schlüssel für {GERMAN} hat sich geändert"]
    assert subjects(mailoutbox, ENGLISH) == [f"Your OpenPGP key for {ENGLISH} has changed"]
    mailoutbox.clear()

    # An expiry reminder.
    until = usable_until(Key.objects.get(fingerprint=cast.alice.fingerprint))
    assert until is not None
    clock.set_now(until - timedelta(days=29))
    reminders.send_due()
    [german] = subjects(mailoutbox, GERMAN)
    [english] = subjects(mailoutbox, ENGLISH)
    assert german.startswith("Ihr OpenPGP-Schlüssel für") and "läuft am" in german, german
    assert "expires on" in english
    mailoutbox.clear()

    # A re-confirmation.
    settings.RECONFIRM_DAYS = 365
    confirmed = Binding.objects.get(address=GERMAN).verified_at
    assert confirmed is not None
    clock.set_now(confirmed + timedelta(days=366))
    reconfirmation.run()
    assert subjects(mailoutbox, GERMAN) == [
        f"Gehört {GERMAN} noch Ihnen? Bestätigen Sie Ihren OpenPGP-Schlüssel"
    ]


def test_a_key_replaced_mail_is_in_the_language_the_replaced_key_was_confirmed_in(ks, cast, mailoutbox):
    """The warning of a takeover reaches the owner of the replaced key in their language,
    whatever the language of whoever confirmed the new key."""
    publish_in(ks, cast.alice.data, {GERMAN: "de"})
    ks.pass_mail_windows()
    other = openpgp.generate(f"Alice <{GERMAN}>")
    answer = ks.client.post(f"/pub/{GERMAN}", data=openpgp.armor(other.public), content_type="text/plain")
    assert answer.status_code == 200, answer.content
    assert ks.client.post(ks.link(GERMAN), HTTP_ACCEPT_LANGUAGE="en").status_code == 200
    subjects_ = subjects(mailoutbox, GERMAN)
    assert f"Ihr OpenPGP-Schlüssel für {GERMAN} wurde ersetzt" in subjects_, subjects_
    assert Binding.objects.get(address=GERMAN, key__fingerprint=cast.alice.fingerprint).state == "unpublished"
