"""Change notices: each published address of a key that changes is told, at
most once a day, with a one-click opt-out (keys.services.notices).

The day window runs on the injectable clock; mail goes through the real
outbox (and, in the burst test, a real SMTP server)."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from io import StringIO
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from federation.refresh import refresh_key
from keys import clock
from keys.identifiers import group_fingerprint
from keys.models import Binding, Event, Key, NoticeChange, NoticeOptOut, OutboxMail, Source

from . import upstreams
from .conftest import SmtpSink, at_once
from .keyserver import Keyserver
from .signed_mail import assert_signed_by_server, mail_text

pytestmark = pytest.mark.django_db(transaction=True)
ALICE = ("alice@example.org", "alice@work.example.com")
SUBJECT = "has changed"


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


@pytest.fixture
def now():
    """The clock, from the real time on (gpg signs in real time)."""
    moment = [timezone.now().replace(microsecond=0)]
    clock.set_now(moment[0])

    def advance(**delta: float):
        moment[0] += timedelta(**delta)
        clock.set_now(moment[0])
        return moment[0]

    return advance


def send() -> str:
    out = StringIO()
    call_command("send_notices", stdout=out)
    return out.getvalue()


def notices(mailoutbox, address: str) -> list:
    return [m for m in mailoutbox if address in m.to and SUBJECT in m.subject]


def assert_only_published_addresses_told() -> None:
    """No notice ever goes to an address that was never published on its key."""
    for row in OutboxMail.objects.filter(kind=OutboxMail.Kind.NOTICE):
        for change in row.params["changes"]:
            assert Event.objects.filter(
                action="address_published", address=row.address, fingerprint=change["fingerprint"]
            ).exists(), (row.address, change)


def gpg_key(gpg, *uids: str) -> str:
    fpr = gpg.generate(uids[0])
    for uid in uids[1:]:
        gpg.run("--quick-add-uid", fpr, uid)
    return fpr


def loopback(gpg, *args: str) -> None:
    gpg.run("--passphrase", "", "--pinentry-mode", "loopback", *args)


def export(gpg, fpr: str) -> str:
    return gpg.run("--armor", "--export", fpr).stdout.decode()


# -- each change, by upload --------------------------------------------------------------


def test_a_new_subkey_and_expiry_by_upload_are_told_to_each_published_address(ks, cast, now):
    ks.publish(cast.alice.data, *ALICE)
    ks.upload(cast.alice_v2.data)
    assert NoticeChange.objects.count() == 4  # two changes, two addresses
    assert "queued 0" in send()  # the first change of a quiet address waits a little
    now(minutes=16)
    assert "queued 2" in send()
    added = set(cast.alice_v2.subkeys) - set(cast.alice.subkeys)
    for address in ALICE:
        [mail] = notices(ks.outbox, address)
        body = mail.body
        assert group_fingerprint(cast.alice.fingerprint) in body
        assert "A new subkey was added: " + group_fingerprint(next(iter(added))) in body
        assert re.search(r"The expiry date changed from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d\.", body)
        assert "by an upload" in body
        assert "revoke it (gpg --edit-key" in body and "gpg --quick-set-expire" in body
        assert "your secret key is compromised" in body
        assert "/manage" in body and "/notices/off/" in body
    assert not NoticeChange.objects.exists()
    assert_only_published_addresses_told()


def test_a_key_revocation_says_the_secret_key_is_compromised(ks, cast, now):
    ks.publish(cast.alice.data, *ALICE)
    ks.client.post("/pks/add", {"keytext": cast.alice_revocation.text})
    assert Key.objects.get().revoked
    now(minutes=16)
    send()
    for address in ALICE:  # no longer published, told all the same
        [mail] = notices(ks.outbox, address)
        assert "The key was revoked. Its addresses are no longer published." in mail.body
        assert "A revocation cannot be undone" in mail.body
        assert "your secret key is compromised" in mail.body


def test_a_revoked_user_id_and_an_expiry_by_real_gpg(ks, gpg_factory, now):
    gpg = gpg_factory()
    fpr = gpg_key(gpg, "Dana <dana@example.org>", "Dana Work <dana@work.example.org>")
    ks.publish(export(gpg, fpr), "dana@example.org", "dana@work.example.org")
    loopback(gpg, "--quick-revoke-uid", fpr, "Dana Work <dana@work.example.org>")
    loopback(gpg, "--quick-set-expire", fpr, "2y")
    ks.upload(export(gpg, fpr))
    assert Binding.objects.get(address="dana@work.example.org").state == Binding.State.REVOKED
    now(minutes=16)
    send()
    for address in ("dana@example.org", "dana@work.example.org"):
        [mail] = notices(ks.outbox, address)
        assert 'The user ID "Dana Work <dana@work.example.org>" was revoked.' in mail.body
        assert "The expiry date changed from never to " in mail.body
        assert "add a new one (gpg --quick-add-uid)" in mail.body
    assert_only_published_addresses_told()


def test_a_new_expiry_of_the_subkeys_alone_is_told(ks, gpg_factory, now):
    """The reminder's command for subkeys (gpg --quick-set-expire FPR 2y '*')
    leaves the primary key's expiry as it was."""
    gpg = gpg_factory()
    fpr = gpg_key(gpg, "Erin <erin@example.org>")
    ks.publish(export(gpg, fpr), "erin@example.org")
    loopback(gpg, "--quick-set-expire", fpr, "3y", "*")
    ks.upload(export(gpg, fpr))
    now(minutes=16)
    send()
    [mail] = notices(ks.outbox, "erin@example.org")
    subkey = Key.objects.get(fingerprint=fpr).subkeys.get().fingerprint
    line = f"The expiry date of the subkeys {group_fingerprint(subkey)} changed from never to "
    assert line in mail.body, mail.body
    assert "The expiry date changed from" not in mail.body  # the primary key's did not
    assert "gpg --quick-set-expire" in mail.body


def test_an_unchanged_re_upload_sends_nothing(ks, cast, now):
    ks.publish(cast.alice.data, *ALICE)
    assert ks.upload(cast.alice.data).status_code == 200
    ks.client.post("/pks/add", {"keytext": cast.alice.text})
    now(minutes=16)
    assert "queued 0" in send()
    assert not OutboxMail.objects.filter(kind=OutboxMail.Kind.NOTICE).exists()


def test_an_address_only_pending_or_never_confirmed_is_not_told(ks, cast, now):
    ks.publish(cast.alice.data, "alice@example.org")
    answer = ks.upload(cast.alice.data).json()
    ks.request_verify(answer["token"], ["alice@work.example.com"])
    assert Binding.objects.get(address="alice@work.example.com").state == Binding.State.PENDING
    ks.upload(cast.alice_v2.data)
    ks.upload(cast.bob.data)  # a key never published: told nothing either
    now(minutes=16)
    send()
    assert len(notices(ks.outbox, "alice@example.org")) == 1
    assert notices(ks.outbox, "alice@work.example.com") == []
    assert not NoticeChange.objects.exists()
    assert_only_published_addresses_told()


# -- a burst, and the day window -------------------------------------------------------------


def test_a_burst_of_20_changes_is_one_notice_per_address_and_the_next_day_another(
    ks, gpg_factory, now, settings
):
    gpg = gpg_factory()
    addresses = ("erik@example.org", "erik@work.example.org")
    fpr = gpg_key(gpg, "Erik <erik@example.org>", "Erik Work <erik@work.example.org>")
    ks.publish(export(gpg, fpr), *addresses)
    sink = SmtpSink()  # the notices go out over real SMTP
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", sink.port, False
        for i in range(10):
            loopback(gpg, "--quick-add-key", fpr, "ed25519", "sign", "1y")
            ks.upload(export(gpg, fpr))
            loopback(gpg, "--quick-set-expire", fpr, f"{400 + i}d")
            ks.upload(export(gpg, fpr))
            now(minutes=1)  # a burst over ten minutes
        assert NoticeChange.objects.count() == 40
        now(minutes=6)
        send()
        for address in addresses:
            [mail] = sink.to(address)
            [raw] = sink.raw_to(address)
            body = assert_signed_by_server(raw)  # PGP/MIME, checked by real gpg
            assert body.count("A new subkey was added: ") == 10
            assert body.count("The expiry date changed from ") == 10
            assert mail["Auto-Submitted"] == "auto-generated"

        # A change two hours later waits for the day to pass.
        now(hours=2)
        loopback(gpg, "--quick-add-key", fpr, "cv25519", "encr", "1y")
        ks.upload(export(gpg, fpr))
        now(minutes=20)
        assert "2 address(es) wait" in send()
        assert len(sink.to(addresses[0])) == 1
        now(hours=22)
        send()
        for address in addresses:
            assert len(sink.to(address)) == 2
            later = mail_text(sink.to(address)[-1])
            assert later.count("A new subkey was added: ") == 1
    finally:
        sink.stop()
    assert_only_published_addresses_told()


def test_addresses_that_wait_do_not_starve_the_others(ks, gpg_factory, now):
    """The batch takes only the addresses that may be told now: one that
    waits for its day, first in the batch's order, never holds back another."""
    from keys.services import notice_mail

    gpg = gpg_factory()
    anna, bert = gpg_key(gpg, "Anna <anna@example.org>"), gpg_key(gpg, "Bert <bert@example.org>")
    ks.publish(export(gpg, anna), "anna@example.org")
    ks.publish(export(gpg, bert), "bert@example.org")
    loopback(gpg, "--quick-set-expire", anna, "2y")
    ks.upload(export(gpg, anna))
    now(minutes=16)
    assert "queued 1" in send()  # anna was told: she waits a day now
    now(hours=1)
    for fpr in (anna, bert):
        loopback(gpg, "--quick-set-expire", fpr, "3y")
        ks.upload(export(gpg, fpr))
    now(minutes=16)
    assert notice_mail.send_due(limit=1) == {"queued": 1, "waiting": 1, "dropped": 0}
    assert len(notices(ks.outbox, "bert@example.org")) == 1
    assert len(notices(ks.outbox, "anna@example.org")) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks: PostgreSQL only")
def test_two_runs_at_once_send_one_notice(ks, cast, now):
    ks.publish(cast.alice.data, *ALICE)
    ks.upload(cast.alice_v2.data)
    now(minutes=16)
    from keys.services import notice_mail

    results = at_once(notice_mail.send_due, 4)
    assert sum(r["queued"] for r in results) == 2, results
    for address in ALICE:
        assert OutboxMail.objects.filter(kind=OutboxMail.Kind.NOTICE, address=address).count() == 1


# -- by refresh, by the admin ------------------------------------------------------------------


def test_a_change_brought_by_a_refresh_is_told(ks, cast, now, settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.REFRESH_PEERS = ["peer"]
    upstream = upstreams.Scripted()
    try:
        Source.objects.create(name="peer", kind="vks", url=upstream.url)
        ks.publish(cast.alice.data, "alice@example.org")
        upstream.routes[f"/vks/v1/by-keyid/{cast.alice.key_id}"] = (200, cast.alice_v2.data)
        assert refresh_key(Key.objects.get().pk).result.startswith("updated")
    finally:
        upstream.close()
    now(minutes=16)
    send()
    [mail] = notices(ks.outbox, "alice@example.org")
    assert "by a refresh from an upstream server" in mail.body
    assert "A new subkey was added" in mail.body
    assert notices(ks.outbox, "alice@work.example.com") == []


def admin_action(admin_client, model: str, name: str, pks: list[int]):
    return admin_client.post(
        f"/admin/keys/{model}/", {"action": name, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )


def test_a_removal_by_policy_in_the_admin_is_told(ks, cast, admin_client, now):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.publish(cast.alice.data, *ALICE)
    admin_action(
        admin_client, "key", "remove_by_policy", [Key.objects.get(fingerprint=cast.bob.fingerprint).pk]
    )
    binding = Binding.objects.get(address="alice@work.example.com")
    admin_action(admin_client, "binding", "remove_address_by_policy", [binding.pk])
    assert admin_client.get("/admin/keys/noticechange/").status_code == 200
    now(minutes=16)
    send()
    [bob] = notices(ks.outbox, "bob@example.net")
    assert "The operator removed the key from this server (removal by policy)." in bob.body
    assert "contact the operator" in bob.body and "by the operator" in bob.body
    for address in ALICE:
        [mail] = notices(ks.outbox, address)
        assert "The operator removed alice@work.example.com from this key" in mail.body
    assert_only_published_addresses_told()


def test_a_purge_in_the_admin_is_told_and_an_owners_own_removal_is_not(ks, cast, admin_client, now):
    ks.publish(cast.bob.data, "bob@example.net")
    ks.publish(cast.alice.data, *ALICE)
    admin_action(admin_client, "key", "purge", [Key.objects.get(fingerprint=cast.bob.fingerprint).pk])
    assert not Key.objects.filter(fingerprint=cast.bob.fingerprint).exists()
    # Alice removes her own key through /manage: she is the one who would be told.
    ks.client.post("/manage", {"email": ALICE[0]})
    link = re.search(r"/manage/[A-Za-z0-9_-]+", ks.outbox[-1].body).group(0)  # type: ignore[union-attr]
    assert ks.client.post(link, {"action": "remove-key", "confirm": "yes"}).status_code == 200
    assert Key.objects.get(fingerprint=cast.alice.fingerprint).blocked
    now(minutes=16)
    send()
    [bob] = notices(ks.outbox, "bob@example.net")
    assert "The operator removed the key from this server" in bob.body and cast.bob.fingerprint[-16:] in (
        bob.body.replace(" ", "")
    )
    assert all(notices(ks.outbox, a) == [] for a in ALICE)
    assert not NoticeChange.objects.filter(address__in=ALICE).exists()


# -- opting out ------------------------------------------------------------------------------------


def optout_path(mail) -> str:
    match = re.search(r"https?://\S+/notices/off/[A-Za-z0-9_-]+", mail.body)
    assert match, mail.body
    return urlparse(match.group(0)).path


def test_the_opt_out_link_shows_a_form_then_stops_the_notices(ks, cast, now, admin_client):
    ks.publish(cast.alice.data, *ALICE)
    ks.upload(cast.alice_v2.data)
    now(minutes=16)
    send()
    path = optout_path(notices(ks.outbox, ALICE[0])[0])

    page = ks.client.get(path)
    assert page.status_code == 200 and b"Stop change notices" in page.content
    assert not NoticeOptOut.objects.exists()  # a mail scanner's GET changes nothing

    done = ks.client.post(path, {"action": "off"})
    assert done.status_code == 200 and b"will receive no more change notices" in done.content
    assert NoticeOptOut.objects.get().digest == NoticeOptOut.hash(ALICE[0])
    found = admin_client.get("/admin/keys/noticeoptout/", {"q": ALICE[0]})
    assert NoticeOptOut.hash(ALICE[0]).encode() in found.content

    now(days=2)
    ks.client.post("/pks/add", {"keytext": cast.alice_revocation.text})
    now(minutes=16)
    send()
    assert len(notices(ks.outbox, ALICE[0])) == 1  # nothing more
    assert len(notices(ks.outbox, ALICE[1])) == 2

    # The same link turns them on again while it works.
    again = ks.client.post(path, {"action": "on"})
    assert again.status_code == 200 and not NoticeOptOut.objects.exists()


def test_a_mail_programs_one_click_unsubscribe_stops_the_notices(ks, cast, now):
    """RFC 8058: List-Unsubscribe names the opt-out link, and the mail
    program POSTs "List-Unsubscribe=One-Click" to it without any cookie."""
    from django.test import Client

    ks.publish(cast.alice.data, *ALICE)
    ks.upload(cast.alice_v2.data)
    now(minutes=16)
    send()
    mail = notices(ks.outbox, ALICE[0])[0]
    assert mail.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail.extra_headers["List-Unsubscribe"].strip("<>")
    assert urlparse(url).path == optout_path(mail)
    sent = email.message_from_bytes(mail.message().as_bytes())  # the headers as they go out
    assert sent["List-Unsubscribe"].strip() == f"<{url}>"
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    fresh = Client(enforce_csrf_checks=True)  # no cookie, no CSRF token: a mail program
    answer = fresh.post(
        urlparse(url).path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 200
    assert NoticeOptOut.objects.get().digest == NoticeOptOut.hash(ALICE[0])


@pytest.mark.parametrize("token", ["nonsense", "x" * 300, "A" * 43])
def test_a_bad_opt_out_link_is_a_page_with_a_message(client, token):
    for response in (client.get(f"/notices/off/{token}"), client.post(f"/notices/off/{token}")):
        assert response.status_code in (400, 404)
        assert b"invalid or expired" in response.content
        assert b"<html" in response.content.lower()


def test_an_expired_opt_out_link_is_refused(ks, cast, now):
    ks.publish(cast.alice.data, *ALICE)
    ks.upload(cast.alice_v2.data)
    now(minutes=16)
    send()
    path = optout_path(notices(ks.outbox, ALICE[0])[0])
    now(days=31)
    assert ks.client.post(path, {"action": "off"}).status_code == 400
    assert not NoticeOptOut.objects.exists()


def test_notices_can_be_turned_off_for_the_server(ks, cast, now, settings):
    settings.NOTICES_ENABLED = False
    ks.publish(cast.alice.data, *ALICE)
    ks.upload(cast.alice_v2.data)
    now(minutes=16)
    send()
    assert not NoticeChange.objects.exists() and notices(ks.outbox, ALICE[0]) == []
