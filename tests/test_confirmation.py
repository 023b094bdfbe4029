"""Confirmation by email: tokens, the GET/POST page, rate limits, SMTP retries."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db.models import F

from keys import clock
from keys.models import Binding, Event, Key, OutboxMail, VerificationToken
from keys.services import outbox

from .keyserver import Keyserver

# Transactional: mail is enqueued on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


def pending(ks: Keyserver, data: bytes, *addresses: str) -> str:
    token = ks.upload(data).json()["token"]
    assert ks.request_verify(token, list(addresses)).status_code == 200
    return token


def test_opening_the_link_shows_a_button_and_publishes_nothing(ks, cast):
    pending(ks, cast.bob.data, "bob@example.net")
    page = ks.client.get(ks.link("bob@example.net"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "bob@example.net" in html and 'method="post"' in html
    assert " ".join(cast.bob.fingerprint[i : i + 4] for i in range(0, 40, 4)) in html
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.PENDING
    assert ks.hkp_get("bob@example.net").status == 404


def test_posting_the_form_publishes_and_the_token_is_single_use(ks, cast):
    pending(ks, cast.bob.data, "bob@example.net")
    link = ks.link("bob@example.net")
    assert ks.client.post(link).status_code == 200
    binding = Binding.objects.get(address="bob@example.net")
    assert binding.state == Binding.State.PUBLISHED
    assert binding.validation == Binding.Validation.EMAIL_CONFIRMED
    assert binding.verified_at is not None
    again = ks.client.post(link)
    assert again.status_code == 400 and b"already used" in again.content
    # A second click says the address is published, not "upload again".
    assert b"bob@example.net is published with this key" in again.content
    assert b"upload the key again" not in again.content
    assert ks.client.get(link).status_code == 400
    Binding.objects.filter(pk=binding.pk).update(state=Binding.State.UNPUBLISHED)
    assert b"upload the key again" in ks.client.post(link).content


def test_the_confirm_form_needs_its_csrf_token(ks, cast):
    from django.test import Client

    pending(ks, cast.bob.data, "bob@example.net")
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(ks.link("bob@example.net")).status_code == 403
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.PENDING


def test_a_verify_token_expires_after_three_days(ks, cast):
    pending(ks, cast.bob.data, "bob@example.net")
    clock.set_now(clock.now() + timedelta(hours=73))
    response = ks.client.post(ks.link("bob@example.net"))
    assert response.status_code == 400
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.PENDING


@pytest.mark.parametrize("token", ["x", "A" * 43, "A" * 500, "%00%00"])
def test_unknown_tokens_get_an_html_400(client, token):
    response = client.get(f"/verify/{token}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_tokens_are_stored_only_as_sha256(ks, cast):
    pending(ks, cast.bob.data, "bob@example.net")
    plain = ks.link("bob@example.net").rsplit("/", 1)[1]
    token = VerificationToken.objects.get(purpose="verify")
    assert token.digest == hashlib.sha256(plain.encode()).hexdigest()
    assert not VerificationToken.objects.filter(digest=plain).exists()
    assert len(plain) >= 43


def test_a_repeated_request_answers_pending_and_sends_nothing(ks, cast):
    token = pending(ks, cast.bob.data, "bob@example.net")
    response = ks.request_verify(token, ["bob@example.net"])
    assert response.json()["status"] == {"bob@example.net": "pending"}
    assert len(ks.outbox) == 1


def test_the_same_address_on_another_upload_is_not_mailed_twice_within_the_limit(ks, cast):
    pending(ks, cast.alice.data, "alice@example.org")
    response = ks.client.post("/pks/add", {"keytext": cast.alice.text})
    assert response.status_code == 200
    assert len([m for m in ks.outbox if "alice@example.org" in m.to]) == 1


def test_after_the_per_address_window_a_new_mail_is_sent(ks, cast, settings):
    settings.RATE_MAIL_PER_ADDRESS = "1/1"
    token = pending(ks, cast.bob.data, "bob@example.net")
    ks.request_verify(token, ["bob@example.net"])
    assert len(ks.outbox) == 1  # within the window: the address's limit counts the mail sent
    # The one-second window has passed: the outbox's row is older than it.
    OutboxMail.objects.update(created=F("created") - timedelta(seconds=2))
    ks.request_verify(token, ["bob@example.net"])
    assert len(ks.outbox) == 2


def test_too_many_mails_from_one_client_is_a_429_with_a_message(ks, cast, settings):
    settings.RATE_MAIL_PER_CLIENT = "2/3600"
    token = ks.upload(cast.keyring3.data).json()
    assert isinstance(token, list)
    alice = ks.upload(cast.alice.data).json()["token"]
    carol = ks.upload(cast.carol.data).json()["token"]
    assert ks.request_verify(alice, ["alice@example.org", "alice@work.example.com"]).status_code == 200
    response = ks.request_verify(carol, ["carol@example.org"])
    assert response.status_code == 429
    assert "Too many" in response.json()["error"]
    assert 1 <= int(response["Retry-After"]) <= 3601
    assert len(ks.outbox) == 2


def test_pks_add_over_the_client_limit_stores_the_key_and_says_per_address_when_to_retry(
    client, cast, settings, mailoutbox
):
    settings.RATE_MAIL_PER_CLIENT = "1/3600"
    response = client.post("/pks/add", {"keytext": cast.alice.text})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert len(mailoutbox) == 1
    body = response.content.decode()
    sent = mailoutbox[0].to[0]
    stopped = ({"alice@example.org", "alice@work.example.com"} - {sent}).pop()
    assert f"{sent}: pending. A confirmation mail was sent now." in body
    line = next(line for line in body.splitlines() if line.strip().startswith(stopped))
    assert "too many were asked for from your address; try again after" in line
    assert Key.objects.filter(fingerprint=cast.alice.fingerprint).exists()


def test_a_failed_smtp_delivery_is_retried_later_with_a_fresh_token(ks, cast, smtp):
    smtp.fail_next = 1
    pending(ks, cast.bob.data, "bob@example.net")
    assert smtp.to("bob@example.net") == []
    row = OutboxMail.objects.get(address="bob@example.net")
    assert (row.state, row.attempts) == ("queued", 1)
    assert "451" in row.last_error
    assert 30 <= (row.next_attempt_at - clock.now()).total_seconds() <= 36
    assert not VerificationToken.objects.filter(purpose="verify").exists()  # went with the failed try
    assert Binding.objects.get(address="bob@example.net").state == Binding.State.PENDING

    assert outbox.sweep() == {}  # not due yet
    OutboxMail.objects.update(next_attempt_at=clock.now())
    assert outbox.sweep() == {"sent": 1}
    assert len(smtp.to("bob@example.net")) == 1
    assert VerificationToken.objects.filter(purpose="verify").count() == 1
    assert smtp.to("bob@example.net")[0]["Auto-Submitted"] == "auto-generated"
    assert outbox.sweep() == {}  # sent once


def test_retries_back_off_then_give_up_at_the_deadline_and_the_address_is_not_pending(
    ks, cast, smtp, settings
):
    settings.MAIL_RETRY_HOURS = 1
    smtp.fail_next = 100
    pending(ks, cast.bob.data, "bob@example.net")
    delays = []
    while (row := OutboxMail.objects.get(address="bob@example.net")).state == "queued":
        delays.append((row.next_attempt_at - clock.now()).total_seconds())
        OutboxMail.objects.update(next_attempt_at=clock.now())
        outbox.sweep()
    # 30 s doubling (plus up to 20 % jitter) until the next try would pass the one-hour deadline.
    assert len(delays) == 7
    for attempt, delay in enumerate(delays):
        assert 30 * 2**attempt - 1 <= delay <= 30 * 2**attempt * 1.2, delays
    assert row.state == "failed" and row.attempts == 8
    assert smtp.to("bob@example.net") == []
    binding = Binding.objects.get(address="bob@example.net")
    assert binding.state == Binding.State.UNPUBLISHED and not binding.awaiting_confirmation
    assert Event.objects.filter(action="verification_mail_failed", address="bob@example.net").exists()
    # The address may ask again at once: a mail never sent spent nothing of its limit.
    smtp.fail_next = 0
    token = ks.upload(cast.bob.data).json()["token"]
    ks.request_verify(token, ["bob@example.net"])
    assert len(smtp.to("bob@example.net")) == 1


def test_a_confirmed_address_joins_the_published_keys_of_that_address(ks, cast, gpg_factory):
    ks.publish(cast.alice.data, "alice@example.org")
    gpg = gpg_factory()
    other = gpg.generate("Alice Laptop <alice@example.org>")
    ks.pass_mail_windows()
    token = pending(ks, gpg.run("--export", "--armor", other).stdout, "alice@example.org")
    assert token
    assert ks.hkp_get("alice@example.org").fingerprints == [cast.alice.fingerprint]
    ks.confirm("alice@example.org")
    assert set(ks.hkp_get("alice@example.org").fingerprints) == {cast.alice.fingerprint, other}


def test_the_pages_show_the_steps_what_each_address_got_and_resend_within_the_limit(ks, cast):
    """Upload page → request → a mail per address, said per address; resend
    within the hour sends nothing and says when; after the hour it sends."""
    import re as _re

    token = ks.upload(cast.bob.data).json()["token"]
    sent = ks.client.post("/upload/request-verify", {"token": token, "address": "bob@example.net"})
    page = sent.content.decode()
    assert sent.status_code == 200
    assert 'aria-current="step"' in page and "Open the link in the mail" in page
    assert "a confirmation mail was sent now." in page
    assert "Resend the mail" in page and "What happens next" in page
    assert len([m for m in ks.outbox if "bob@example.net" in m.to]) == 1
    again = ks.client.post(
        "/upload/request-verify", {"token": token, "address": "bob@example.net"}
    ).content.decode()
    assert "a confirmation mail was sent earlier; another can be sent after" in again
    assert _re.search(r"after \d{4}-\d\d-\d\d \d\d:\d\d UTC", again)
    assert len([m for m in ks.outbox if "bob@example.net" in m.to]) == 1  # nothing more within the hour
    ks.pass_mail_windows()
    later = ks.client.post(
        "/upload/request-verify", {"token": token, "address": "bob@example.net"}
    ).content.decode()
    assert "a confirmation mail was sent now." in later
    assert len([m for m in ks.outbox if "bob@example.net" in m.to]) == 2
    # The upload page's result offers the resend for a pending address in a form of its own.
    result = ks.client.post("/upload", {"keytext": cast.bob.text}).content.decode()
    assert 'aria-current="step"' in result
    assert "Resend the mail to bob@example.net" in result
