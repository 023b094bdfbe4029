"""Signed service mail: every mail kind is PGP/MIME signed (RFC 3156) with the
server's key, sent through the real outbox to a real SMTP server and checked
by real gpg."""

from __future__ import annotations

import re
from email import message_from_bytes
from typing import Any

import pytest
from django.db import transaction

from keys.models import Key, OutboxMail, ServerKey
from keys.services import outbox, server_key

from .certs import public_key
from .signed_mail import assert_signed_by_server, gpg_verify, mail_text, signed_parts

pytestmark = pytest.mark.django_db(transaction=True)
Kind = OutboxMail.Kind
FROM = "keyserver@example.org"


@pytest.fixture(autouse=True)
def from_address(settings):
    settings.DEFAULT_FROM_EMAIL = f"Keyserver <{FROM}>"


def upload(client, data: bytes) -> str:
    response = client.post("/vks/v1/upload", {"keytext": data.decode()}, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()["token"]


def request_verify(client, token: str, address: str) -> None:
    response = client.post(
        "/vks/v1/request-verify", {"token": token, "addresses": [address]}, content_type="application/json"
    )
    assert response.status_code == 200, response.content


def publish(client, smtp, data: bytes, address: str) -> None:
    request_verify(client, upload(client, data), address)
    assert client.post(smtp.link(address)).status_code == 200


def queue(kind: str, address: str, **params: Any) -> None:
    with transaction.atomic():  # delivered when it commits, as after any change
        outbox.enqueue(kind, address, **params)


def test_a_confirmation_mail_is_signed_and_gpg_verifies_it(client, smtp, cast):
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    [raw] = smtp.raw_to("bob@example.net")
    text = assert_signed_by_server(raw)
    assert re.search(r"/verify/[A-Za-z0-9_-]+", text)
    assert text == mail_text(message_from_bytes(raw))


def test_a_replacement_notice_is_signed_and_gpg_verifies_it(client, smtp, cast):
    queue(
        Kind.REPLACED,
        "alice@example.org",
        fingerprint=cast.alice.fingerprint,
        replaced=[cast.bob.fingerprint],
    )
    [raw] = smtp.raw_to("alice@example.org")
    assert "no longer published" in assert_signed_by_server(raw)


def test_a_welcome_mail_is_signed_and_gpg_verifies_it(client, smtp, cast):
    queue(Kind.WELCOME, "uma@example.org", armored=public_key("uma@example.org"))
    [raw] = smtp.raw_to("uma@example.org")
    assert "BEGIN PGP MESSAGE" in assert_signed_by_server(raw)


def test_a_management_mail_is_signed_and_gpg_verifies_it(client, smtp, cast):
    publish(client, smtp, cast.bob.data, "bob@example.net")
    assert client.post("/manage", {"email": "bob@example.net"}).status_code == 200
    raw = smtp.raw_to("bob@example.net")[-1]
    assert "/manage/" in assert_signed_by_server(raw)


def test_a_tampered_body_fails_verification(client, smtp, cast):
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    [raw] = smtp.raw_to("bob@example.net")
    _message, part, signature = signed_parts(raw)
    public = bytes(server_key.current().public)
    assert gpg_verify(public, part, signature)[0] == 0
    tampered = part.replace(b"/verify/", b"/verify/x", 1)
    code, status = gpg_verify(public, tampered, signature)
    assert code != 0 and "BADSIG" in status
    with pytest.raises(AssertionError):
        assert_signed_by_server(raw.replace(b"/verify/", b"/verify/x", 1))


def test_the_mail_says_which_key_signed_it_and_where_to_get_it(client, smtp, cast):
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    text = assert_signed_by_server(smtp.raw_to("bob@example.net")[0])
    key = server_key.current()
    grouped = " ".join(key.fingerprint[i : i + 4] for i in range(0, 40, 4))
    assert grouped in text  # group_fingerprint puts two spaces in the middle
    assert "http://testserver/about" in text
    assert "gpg --fetch-keys http://testserver/about/server-key.asc" in text


def test_every_mail_is_signed_by_one_key_made_once(client, smtp, cast):
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    queue(
        Kind.REPLACED,
        "alice@example.org",
        fingerprint=cast.alice.fingerprint,
        replaced=[cast.bob.fingerprint],
    )
    for raw in smtp.raw:
        assert_signed_by_server(raw)
    assert ServerKey.objects.count() == 1


def test_a_key_that_cannot_be_opened_holds_the_mail_in_the_outbox(client, smtp, settings, cast):
    server_key.current()
    settings.SECRET_KEY = "another secret key than the one the server key was sealed with"
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    assert smtp.raw == []  # never sent unsigned
    row = OutboxMail.objects.get(address="bob@example.net")
    assert row.state == OutboxMail.State.QUEUED and "ServerKeyUnreadable" in row.last_error
    server_key.rotate()  # the operator's remedy: a new key
    OutboxMail.objects.filter(pk=row.pk).update(next_attempt_at=row.created)
    assert outbox.deliver(row.pk) == OutboxMail.State.SENT
    assert_signed_by_server(smtp.raw_to("bob@example.net")[0])


def test_with_signing_off_the_mail_is_plain_text(client, smtp, settings, cast):
    settings.MAIL_SIGN = False
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    message = message_from_bytes(smtp.raw_to("bob@example.net")[0])
    assert message.get_content_type() == "text/plain"
    assert not ServerKey.objects.exists()


def test_the_file_backend_writes_readable_signed_mail(client, settings, tmp_path, cast):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    request_verify(client, upload(client, cast.bob.data), "bob@example.net")
    [path] = tmp_path.iterdir()
    written = path.read_bytes()
    assert b"\r\n" not in written  # one kind of line end: LF, like the rest of the file
    message = message_from_bytes(written.split(b"\n" + b"-" * 79 + b"\n")[0])
    assert message.get_content_type() == "multipart/signed"
    assert "/verify/" in mail_text(message)
    # The same bytes with CRLF are what was signed.
    assert_signed_by_server(written.split(b"\n" + b"-" * 79 + b"\n")[0].replace(b"\n", b"\r\n"))


def test_a_german_mail_is_signed_over_its_umlauts(client, smtp, cast):
    token = upload(client, cast.bob.data)
    response = client.post(
        "/vks/v1/request-verify",
        {"token": token, "addresses": ["bob@example.net"], "locale": ["de"]},
        content_type="application/json",
    )
    assert response.status_code == 200
    text = assert_signed_by_server(smtp.raw_to("bob@example.net")[0])
    assert "gültig" in text
    assert Key.objects.filter(fingerprint=server_key.current().fingerprint).exists()
