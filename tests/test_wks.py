"""Web Key Service: gpg-wks-client's mail protocol end to end, and every bad mail.

Real parts: gpg-wks-client 2.2 and gpg in a private mount namespace reaching
the live server's WKD over TLS (tests/wkd_tls.py), the real outbox
delivering to a real SMTP sink, `manage.py wks_receive` and the aiosmtpd
listener over real SMTP.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from keys import clock, openpgp
from keys.errors import SecretKeyRefused
from keys.models import Binding, Event, Key, OutboxMail, PolicyBlock, VerificationToken
from keys.services import server_key
from keys.services.wks import fields

from .certs import public_key
from .conftest import free_port
from .signed_mail import assert_signed_by_server

pytestmark = pytest.mark.django_db(transaction=True)
WKS_CLIENT = "/usr/lib/gnupg/gpg-wks-client"
SUBMIT = "key-submission@example.org"
WENDY = "wendy@example.org"


@pytest.fixture(autouse=True)
def _wks(settings, tmp_path):
    settings.WKD_DOMAINS = ["example.org"]
    settings.WKS_SUBMISSION_ADDRESS = "key-submission@{domain}"
    settings.ALLOWED_HOSTS = ["*"]
    settings.VAR_DIR = tmp_path / "var"


def tool(path: str) -> str:
    found = shutil.which(path)
    if not found:
        pytest.fail(f"{path} is not installed (apt-get install gnupg gpg-wks-client)")
    return found


# -- helpers: mails as gpg-wks-client builds them ----------------------------------------


def pgp_mime(inner: bytes, recipient_cert: bytes, *, frm: str, to: str = SUBMIT) -> bytes:
    armored = openpgp.encrypt(openpgp.parse(recipient_cert).certs[0], inner)
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer.attach(MIMEApplication("Version: 1\n", "pgp-encrypted"))
    outer.attach(MIMEApplication(armored, "octet-stream"))
    outer["From"], outer["To"], outer["Subject"] = frm, to, "Key publishing request"
    return outer.as_bytes()


def keys_part(data: bytes) -> bytes:
    return b"Content-Type: application/pgp-keys\n\n" + openpgp.armor(data).encode()


def submission(user: openpgp.GeneratedKey, address: str, to: str = SUBMIT) -> bytes:
    return pgp_mime(keys_part(user.public), bytes(server_key.for_address(SUBMIT).public), frm=address, to=to)


def response(address: str, nonce: str, frm: str | None = None) -> bytes:
    body = f"type: confirmation-response\nsender: {SUBMIT}\naddress: {address}\nnonce: {nonce}\n"
    inner = b"Content-Type: application/vnd.gnupg.wks\n\n" + body.encode()
    return pgp_mime(inner, bytes(server_key.for_address(SUBMIT).public), frm=frm or address)


def nonce_of(mail, user: openpgp.GeneratedKey) -> dict[str, str]:
    """The key/value lines of a delivered confirmation request, decrypted with the user's key."""
    # PGP/MIME signed (by the submission address's key) around the draft's multipart/mixed.
    assert mail.get_content_type() == "multipart/signed"
    assert mail.get_payload(0).get_content_type() == "multipart/mixed"
    part = next(p for p in mail.walk() if p.get_content_type() == "application/vnd.gnupg.wks")
    encrypted = part.get_payload(decode=True)
    assert encrypted.startswith(b"-----BEGIN PGP MESSAGE-----")  # the nonce never travels in the clear
    return fields(openpgp.decrypt(user.secret, encrypted))


def receive(raw: bytes, recipient: str = "") -> str:
    """`manage.py wks_receive` with `raw` on standard input; its output."""
    out = io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(raw))
    try:
        call_command("wks_receive", *(["--recipient", recipient] if recipient else []), stdout=out)
    finally:
        sys.stdin = stdin
    return out.getvalue().strip()


def stored() -> tuple:
    """Everything a bad mail must leave as it was (the server key aside)."""
    server = server_key.for_address(SUBMIT).fingerprint
    return (
        sorted(Key.objects.exclude(fingerprint=server).values_list("fingerprint", "data")),
        sorted(Binding.objects.values_list("address", "state", "validation")),
        sorted(VerificationToken.objects.values_list("digest", "used_at")),
    )


def refusals() -> list[str]:
    return list(Event.objects.filter(action="wks_refused").values_list("detail", flat=True))


# -- the protocol without gpg -----------------------------------------------------------


def test_submission_then_response_publishes_as_wks_confirmed(smtp):
    user = openpgp.generate("Wendy <wendy@example.org>")
    assert receive(submission(user, "wendy@example.org")) == "handled: submitted (wendy@example.org)"
    assert [m.last_error for m in OutboxMail.objects.all()] == [""]
    [request] = smtp.to("wendy@example.org")
    assert request["From"] == SUBMIT and request["Wks-Draft-Version"] == "3"
    values = nonce_of(request, user)
    assert_signed_by_server(smtp.raw_to("wendy@example.org")[0])  # the signature over it all, by gpg
    assert values["type"] == "confirmation-request"
    assert values["sender"] == SUBMIT and values["address"] == "wendy@example.org"
    assert values["fingerprint"] == user.fingerprint and len(values["nonce"]) > 16
    token = VerificationToken.objects.get(purpose="wks")
    assert token.digest == VerificationToken.hash(values["nonce"]) != values["nonce"]  # stored hashed
    # Pending while the request is out, as after a confirmation mail from the upload page.
    assert Binding.objects.get(address="wendy@example.org").state == Binding.State.PENDING
    assert receive(response("wendy@example.org", values["nonce"])) == "handled: published (wendy@example.org)"
    binding = Binding.objects.get(address="wendy@example.org")
    assert (binding.state, binding.validation) == (Binding.State.PUBLISHED, "wks_confirmed")
    from django.test import Client

    assert Client().get("/vks/v1/by-email/wendy@example.org")["Key-Validation"] == "wks_confirmed"
    assert [m["Subject"] for m in smtp.to("wendy@example.org")][-1].startswith("Your key for wendy@")
    # The "published" answer is PGP/MIME signed by the submission address's key, checked by gpg.
    assert "wendy@example.org" in assert_signed_by_server(smtp.raw_to("wendy@example.org")[-1])


def test_an_undeliverable_request_leaves_the_address_no_longer_pending(smtp, settings):
    settings.MAIL_RETRY_HOURS = 0  # the first failure is the last
    smtp.fail_next = 100
    user = openpgp.generate("Wendy <wendy@example.org>")
    assert receive(submission(user, "wendy@example.org")) == "handled: submitted (wendy@example.org)"
    assert OutboxMail.objects.get(kind="wks").state == "failed" and smtp.to("wendy@example.org") == []
    binding = Binding.objects.get(address="wendy@example.org")
    assert binding.state == Binding.State.UNPUBLISHED and not binding.awaiting_confirmation
    assert Event.objects.filter(action="verification_mail_failed", address="wendy@example.org").exists()


def test_the_submission_address_file_names_the_address_and_its_key_is_served_over_wkd(client, settings):
    for response_ in [
        client.get("/.well-known/openpgpkey/submission-address", HTTP_HOST="example.org"),
        client.get(
            "/.well-known/openpgpkey/example.org/submission-address", HTTP_HOST="openpgpkey.example.org"
        ),
    ]:
        assert response_.status_code == 200 and response_.content == b"key-submission@example.org\n"
    from keys.identifiers import wkd_hash

    key = client.get(f"/.well-known/openpgpkey/hu/{wkd_hash(SUBMIT)}", HTTP_HOST="example.org")
    assert key.status_code == 200
    assert openpgp.parse(key.content).certs[0].fingerprint == server_key.for_address(SUBMIT).fingerprint
    settings.WKS_SUBMISSION_ADDRESS = ""
    assert (
        client.get("/.well-known/openpgpkey/submission-address", HTTP_HOST="example.org").status_code == 404
    )


# -- bad mail: refused with a reason, nothing stored changes ----------------------------


def test_not_encrypted_is_refused_and_not_answered(smtp):
    """Any spam is "not encrypted": answering it would be backscatter."""
    user = openpgp.generate("Wendy <wendy@example.org>")
    before = stored()
    plain = EmailMessage()
    plain["From"], plain["To"], plain["Subject"] = "wendy@example.org", SUBMIT, "key"
    plain.set_content(openpgp.armor(user.public), subtype="pgp-keys")
    plain.replace_header("Content-Type", "application/pgp-keys")
    assert receive(plain.as_bytes()).startswith("refused: not encrypted")
    assert stored() == before and smtp.messages == []
    assert refusals() == ["not encrypted: application/pgp-keys"]


def undecryptable(frm: str = "wendy@example.org") -> bytes:
    """A submission encrypted to some other key than the submission address's."""
    user, other = openpgp.generate(f"Wendy <{frm}>"), openpgp.generate("Other <other@example.net>")
    return pgp_mime(keys_part(user.public), other.public, frm=frm)


def test_cannot_decrypt_is_refused_and_answered(smtp):
    before = stored()
    assert receive(undecryptable()).startswith("refused: cannot decrypt")
    assert stored() == before
    [answer] = smtp.to("wendy@example.org")
    assert answer["Subject"] == "Your key publication request was not accepted"
    text = assert_signed_by_server(smtp.raw_to("wendy@example.org")[-1])
    assert "It could not be decrypted with the key of the submission address" in text


def test_a_refusal_is_explained_in_the_servers_language(smtp, settings):
    settings.LANGUAGE_CODE = "de"
    user = openpgp.generate("Bob <bob@example.net>")
    assert receive(submission(user, "bob@example.net")).startswith("refused: domain not served")
    [answer] = smtp.to("bob@example.net")
    subject = str(make_header(decode_header(answer["Subject"])))
    assert subject == "Ihre Anfrage zur Veröffentlichung des Schlüssels wurde nicht angenommen"
    text = assert_signed_by_server(smtp.raw_to("bob@example.net")[-1])
    assert "Der Schlüssel hat keine Adresse in einer Domain, die dieser Server veröffentlicht." in text
    assert "domain not served" not in text


def test_wrong_recipient_is_refused_unanswered(smtp):
    user = openpgp.generate("Wendy <wendy@example.org>")
    before = stored()
    raw = submission(user, "wendy@example.org", to="someone@example.org")
    assert receive(raw).startswith("refused: wrong recipient")
    assert receive(submission(user, "wendy@example.org"), recipient="other@example.org").startswith(
        "refused: wrong recipient"
    )
    assert stored() == before and smtp.messages == []
    assert len(refusals()) == 2


def test_a_key_for_a_domain_not_served_is_refused(smtp):
    user = openpgp.generate("Bob <bob@example.net>")
    before = stored()
    assert receive(submission(user, "bob@example.net")).startswith("refused: domain not served")
    assert stored() == before
    assert smtp.to("bob@example.net")  # told why


def test_a_secret_key_is_refused(smtp):
    user = openpgp.generate("Wendy <wendy@example.org>")
    before = stored()
    inner = keys_part(user.secret)
    raw = pgp_mime(inner, bytes(server_key.for_address(SUBMIT).public), frm="wendy@example.org")
    assert receive(raw).startswith("refused: SecretKeyRefused")
    assert stored() == before
    assert len(smtp.to("wendy@example.org")) == 1  # the import service's own message tells why
    assert str(SecretKeyRefused.default_message) in assert_signed_by_server(
        smtp.raw_to("wendy@example.org")[-1]
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff garbage \x89PNG\r\n",
        b"From: x@example.org\nTo: key-submission@example.org\nContent-Type: multipart/encrypted; "
        b'protocol="application/pgp-encrypted"; boundary=b\n\n--b\n'
        b"Content-Type: application/pgp-encrypted\n\nVersion: 1\n--b\n"
        b"Content-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\nAAAA\n--b--\n",
    ],
    ids=["empty", "binary", "broken-pgp"],
)
def test_garbage_is_refused(smtp, raw):
    before = stored()
    assert receive(raw).startswith("refused: ")
    assert stored() == before


def test_encrypted_garbage_and_a_wrong_wks_type_are_refused(smtp):
    before = stored()
    server = bytes(server_key.for_address(SUBMIT).public)
    assert receive(pgp_mime(b"Content-Type: text/plain\n\nhello", server, frm="w@example.org")).startswith(
        "refused: garbage"
    )
    wrong = b"Content-Type: application/vnd.gnupg.wks\n\ntype: confirmation-request\n"
    assert receive(pgp_mime(wrong, server, frm="w@example.org")).startswith("refused: garbage")
    assert stored() == before


def _requested(smtp, user, address):
    assert receive(submission(user, address)).startswith("handled: submitted")
    return nonce_of(smtp.to(address)[-1], user)["nonce"]


def test_a_replayed_nonce_is_refused(smtp):
    user = openpgp.generate("Wendy <wendy@example.org>")
    nonce = _requested(smtp, user, "wendy@example.org")
    assert receive(response("wendy@example.org", nonce)).startswith("handled: published")
    before = stored()
    assert receive(response("wendy@example.org", nonce)).startswith("refused: nonce unknown, used or expired")
    assert stored() == before


def test_an_expired_nonce_is_refused(smtp, settings):
    user = openpgp.generate("Wendy <wendy@example.org>")
    nonce = _requested(smtp, user, "wendy@example.org")
    before = stored()
    clock.set_now(clock.now() + settings.VERIFY_TOKEN_TTL + timedelta(minutes=1))
    assert receive(response("wendy@example.org", nonce)).startswith("refused: nonce unknown, used or expired")
    assert stored() == before
    assert Binding.objects.get(address="wendy@example.org").state != Binding.State.PUBLISHED


def test_a_response_for_another_key_is_refused(smtp):
    wendy = openpgp.generate("Wendy <wendy@example.org>")
    mallory = openpgp.generate("Mallory <mallory@example.org>")
    wendys = _requested(smtp, wendy, "wendy@example.org")
    _requested(smtp, mallory, "mallory@example.org")
    before = stored()
    # Wendy's nonce, claimed for Mallory's address (and key): not this nonce's.
    assert receive(response("mallory@example.org", wendys)).startswith("refused: response for another key")
    assert stored() == before
    assert not Binding.objects.filter(state=Binding.State.PUBLISHED).exclude(address=SUBMIT).exists()


def test_oversized_mail_is_refused_on_both_paths(smtp, settings):
    user = openpgp.generate("Wendy <wendy@example.org>")
    raw = submission(user, "wendy@example.org")
    settings.WKS_MAX_MESSAGE_BYTES = len(raw) - 1
    before = stored()
    assert receive(raw).startswith("refused: oversized")
    listener = _listener()
    try:
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("wendy@example.org", [SUBMIT], crlf(raw))  # SIZE= at MAIL
            assert refused.value.smtp_code == 552
            client.rset()
            # A client that does not say SIZE= is refused once the data passes the limit.
            assert client.mail("wendy@example.org")[0] == 250
            assert client.rcpt(SUBMIT)[0] == 250
            code, _ = client.data(crlf(raw))
            assert code == 552
    finally:
        listener.stop()
    assert stored() == before and OutboxMail.objects.filter(kind="wks").count() == 0
    # Each refusal is kept with its reason, the listener's own included.
    details = refusals()
    assert len(details) == 3 and all(d.startswith("oversized") for d in details), details
    assert sum("fixed maximum" in d for d in details) == 1 and sum("Too much" in d for d in details) == 1


@pytest.mark.gpg
def test_a_compressed_bomb_is_refused_at_its_decrypted_size(smtp, gpg_factory):
    """100 MB of zeros, zlib-compressed by gpg and encrypted to the submission
    key, fit in a 256 KiB mail: decrypting stops at the limit."""
    gpg = gpg_factory()
    gpg.run("--import", input=bytes(server_key.for_address(SUBMIT).public))
    zeros = b"Content-Type: application/pgp-keys\n\n" + bytes(100_000_000)
    encrypt = ("--trust-model", "always", "--compress-algo", "zlib", "-z", "9", "--armor")
    armored = gpg.run(*encrypt, "-r", SUBMIT, "--encrypt", input=zeros, timeout=120).stdout.decode()
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer.attach(MIMEApplication("Version: 1\n", "pgp-encrypted"))
    outer.attach(MIMEApplication(armored, "octet-stream"))
    outer["From"], outer["To"], outer["Subject"] = "wendy@example.org", SUBMIT, "Key publishing request"
    raw = outer.as_bytes()
    assert len(raw) < 256 * 1024
    before = stored()
    started = time.monotonic()
    assert "larger than" in receive(raw)
    assert time.monotonic() - started < 10
    assert stored() == before


def test_the_listener_accepts_only_submission_addresses_and_survives_bad_mail(smtp):
    listener = _listener()
    try:
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("x@example.org", ["postmaster@example.org"], b"Subject: hi\n\nhi")
            assert refused.value.recipients["postmaster@example.org"][0] == 550
            client.sendmail("x@example.org", [SUBMIT], b"\x00garbage")  # accepted, then refused inside
        user = openpgp.generate("Wendy <wendy@example.org>")
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            client.sendmail("wendy@example.org", [SUBMIT], crlf(submission(user, "wendy@example.org")))
    finally:
        listener.stop()
    assert refusals() and smtp.to("wendy@example.org")  # the listener lived on: a request went out


def test_wks_receive_exits_75_while_the_database_is_unavailable(tmp_path):
    raw = b"From: w@example.org\nTo: key-submission@example.org\n\nhello\n"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        "WKD_DOMAINS": "example.org",
        "WKS_SUBMISSION_ADDRESS": "key-submission@{domain}",
        "VAR_DIR": str(tmp_path),
    }
    manage = Path(django_settings.BASE_DIR) / "manage.py"
    done = subprocess.run(
        [sys.executable, str(manage), "wks_receive"], input=raw, env=env, capture_output=True
    )
    assert done.returncode == 75, done.stderr.decode()[-2000:]


def crlf(raw: bytes) -> bytes:
    """As an MTA sends it over SMTP (smtplib leaves the line ends of bytes alone)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _data_refused(sender: str, raw: bytes) -> int:
    """The code the listener answers a mail's DATA with, which it must refuse."""
    listener = _listener()
    try:
        with (
            smtplib.SMTP(listener.hostname, listener.port) as client,
            pytest.raises(smtplib.SMTPDataError) as refused,
        ):
            client.sendmail(sender, [SUBMIT], raw)
    finally:
        listener.stop()
    return refused.value.smtp_code


def _listener():
    from keys.management.commands.wks_smtpd import controller

    listener = controller(f"127.0.0.1:{free_port()}")
    listener.start()
    return listener


# -- hostile mail: parsers that recurse, control characters, limits, backscatter ---------


def refused_mail_events() -> list[tuple[str, str]]:
    return list(Event.objects.filter(action="wks_refused").values_list("address", "detail"))


@pytest.mark.parametrize("header", ["From", "To", "Cc"])
def test_an_address_header_the_parser_cannot_read_is_garbage(smtp, header):
    """500 "(" make email.utils recurse until RecursionError: refused, not a crash."""
    user = openpgp.generate("Wendy <wendy@example.org>")
    raw = submission(user, "wendy@example.org")
    bad = f"{header}: {'(' * 500}\n".encode()
    raw = raw.replace(f"{header}: ".encode(), b"X-Was: ") if header != "Cc" else raw
    before = stored()
    assert receive(bad + raw).startswith("refused: garbage (unreadable")
    assert stored() == before and OutboxMail.objects.count() == 0
    listener = _listener()  # and the listener answers 250, not 451 for ever
    try:
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            client.sendmail("wendy@example.org", [SUBMIT], crlf(bad + raw))
    finally:
        listener.stop()
    # The listener knows the envelope recipient: it reads no To or Cc header.
    assert len(refusals()) == (2 if header == "From" else 1)
    assert all(d.startswith("garbage: unreadable") for d in refusals())


def test_an_unexpected_error_is_a_deliberate_exit_without_a_traceback(monkeypatch, smtp, caplog):
    from keys.services import wks

    def broken(raw, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(wks, "handle", broken)
    out, err, stdin = io.StringIO(), io.StringIO(), sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(b"From: w@example.org\n\nhi\n"))
    try:
        with pytest.raises(SystemExit) as exited:
            call_command("wks_receive", stdout=out, stderr=err)
    finally:
        sys.stdin = stdin
    assert exited.value.code == 70  # EX_SOFTWARE: the MTA bounces, it does not retry for days
    assert "Traceback" not in out.getvalue() + err.getvalue() + caplog.text
    assert "internal error (ZeroDivisionError)" in err.getvalue()
    assert "wks mail failed: ZeroDivisionError at test_wks.py" in caplog.text
    assert _data_refused("w@example.org", b"Subject: hi\r\n\r\nhi") == 554


def nested(depth: int) -> bytes:
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth)
    )
    closing = b"".join(b"\n--b%d--\n" % i for i in reversed(range(depth)))
    return opening + b"Content-Type: text/plain\n\nhi" + closing


def test_deeply_nested_or_too_many_mime_parts_inside_are_garbage(smtp):
    server = bytes(server_key.for_address(SUBMIT).public)
    user = openpgp.generate("Wendy <wendy@example.org>")
    many = b"Content-Type: multipart/mixed; boundary=b\n\n" + b"".join(
        b"--b\nContent-Type: text/plain\n\nhi\n" for _ in range(100)
    )
    many += b"--b\n" + keys_part(user.public) + b"\n--b--\n"
    before = stored()
    for inner in (nested(1200), nested(20), many):
        assert receive(pgp_mime(inner, server, frm="wendy@example.org")).startswith("refused: garbage"), (
            inner[:80]
        )
    assert stored() == before
    assert sum("MIME" in d for d in refusals()) == 3, refusals()
    # A key a few multiparts deep is still found.
    inner = b"Content-Type: multipart/mixed; boundary=a\n\n--a\n" + keys_part(user.public) + b"\n--a--\n"
    assert receive(pgp_mime(inner, server, frm="wendy@example.org")).startswith("handled: submitted")


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x7f"])
def test_control_characters_in_an_address_are_refused_and_never_stored(smtp, char):
    user = openpgp.generate("Wendy <wendy@example.org>")
    raw = submission(user, "wendy@example.org")
    before = stored()
    bad_from = raw.replace(b"From: wendy@example.org", f"From: wen{char}dy@example.org".encode())
    assert receive(bad_from).startswith("refused: garbage (a From address with control characters")
    bad_to = raw.replace(f"To: {SUBMIT}".encode(), f"To: key-{char}submission@example.org".encode())
    assert receive(bad_to).startswith("refused: wrong recipient")
    assert stored() == before and OutboxMail.objects.count() == 0 and smtp.messages == []
    events = refused_mail_events()
    assert len(events) == 2 and all(char not in a + d for a, d in events), events
    assert ("", "garbage: a From address with control characters or spaces") in events


def test_a_submission_address_with_domain_serves_only_its_own_domain(smtp, settings):
    settings.WKD_DOMAINS = ["example.org", "example.com"]
    inner = b"Content-Type: application/pgp-keys\n\n" + public_key(WENDY, "wendy@example.com").encode()
    server = bytes(server_key.for_address(SUBMIT).public)
    assert receive(pgp_mime(inner, server, frm=WENDY)) == f"handled: submitted ({WENDY})"
    assert list(OutboxMail.objects.values_list("address", flat=True)) == [WENDY]
    only_com = b"Content-Type: application/pgp-keys\n\n" + public_key("bob@example.com").encode()
    assert receive(pgp_mime(only_com, server, frm="bob@example.com")).startswith("refused: domain not served")
    # One fixed address serves every domain.
    settings.WKS_SUBMISSION_ADDRESS = SUBMIT
    assert (
        receive(pgp_mime(only_com, server, frm="bob@example.com")) == "handled: submitted (bob@example.com)"
    )


def test_a_response_for_another_domain_is_not_published(smtp, settings):
    """A nonce asked for by key-submission@example.org, answered to the
    example.com submission address: that one does not serve example.org."""
    settings.WKD_DOMAINS = ["example.org", "example.com"]
    user = openpgp.generate("Wendy <wendy@example.org>")
    nonce = _requested(smtp, user, WENDY)
    other = "key-submission@example.com"
    body = f"type: confirmation-response\nsender: {other}\naddress: {WENDY}\nnonce: {nonce}\n"
    inner = b"Content-Type: application/vnd.gnupg.wks\n\n" + body.encode()
    raw = pgp_mime(inner, bytes(server_key.for_address(other).public), frm=WENDY, to=other)
    assert receive(raw).startswith("refused: not publishable")
    assert Binding.objects.get(address=WENDY).state != Binding.State.PUBLISHED


def test_one_submission_queues_at_most_max_mails_per_upload_requests(smtp, settings):
    settings.MAX_MAILS_PER_UPLOAD = 2
    addresses = [f"u{i}@example.org" for i in range(5)]
    inner = b"Content-Type: application/pgp-keys\n\n" + public_key(*addresses).encode()
    server = bytes(server_key.for_address(SUBMIT).public)
    assert receive(pgp_mime(inner, server, frm=addresses[0])).startswith("handled: submitted")
    assert OutboxMail.objects.filter(kind="wks", params__phase="request").count() == 2


def test_a_sender_gets_at_most_rate_mail_per_client_requests(smtp, settings):
    settings.RATE_MAIL_PER_CLIENT = "2/3600"
    server = bytes(server_key.for_address(SUBMIT).public)
    three = (
        b"Content-Type: application/pgp-keys\n\n"
        + public_key("a@example.org", "b@example.org", "c@example.org").encode()
    )
    assert receive(pgp_mime(three, server, frm=WENDY)) == "handled: submitted (a@example.org, b@example.org)"
    before = stored()
    one = b"Content-Type: application/pgp-keys\n\n" + public_key("d@example.org").encode()
    assert receive(pgp_mime(one, server, frm=WENDY)).startswith("refused: rate limited")
    assert stored() == before  # the key of a refused submission is not kept either
    assert OutboxMail.objects.filter(kind="wks").count() == 2
    # Another sender has a limit of its own.
    assert receive(pgp_mime(one, server, frm="d@example.org")) == "handled: submitted (d@example.org)"


@pytest.mark.parametrize(
    ("header", "frm", "sender"),
    [
        (b"Precedence: bulk\n", WENDY, None),
        (b"Precedence: junk\n", WENDY, None),
        (b"List-Id: <wks.example.org>\n", WENDY, None),
        (b"Auto-Submitted: auto-replied\n", WENDY, None),
        (b"", "MAILER-DAEMON@example.org", None),
        (b"", "postmaster@example.org", None),
        (b"", WENDY, ""),
        (b"", WENDY, "<>"),
        (b"", WENDY, "MAILER-DAEMON"),
    ],
    ids=["bulk", "junk", "list", "auto", "mailer-daemon", "postmaster", "null", "null-angle", "postfix-null"],
)
def test_bounces_and_bulk_mail_are_not_answered(smtp, header, frm, sender):
    raw = header + undecryptable(frm)
    out = io.StringIO()
    stdin, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(raw))
    try:
        call_command("wks_receive", *([f"--sender={sender}"] if sender is not None else []), stdout=out)
    finally:
        sys.stdin = stdin
    assert out.getvalue().startswith("refused: cannot decrypt")
    assert OutboxMail.objects.count() == 0 and smtp.messages == []


def test_the_listener_passes_the_envelope_sender(smtp):
    listener = _listener()
    try:
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            client.sendmail("", [SUBMIT], crlf(undecryptable()))  # MAIL FROM:<>, a bounce
            assert OutboxMail.objects.count() == 0
            client.sendmail(WENDY, [SUBMIT], crlf(undecryptable()))
    finally:
        listener.stop()
    assert [r for r in refusals() if r.startswith("cannot decrypt")] and len(refusals()) == 2
    assert len(smtp.to(WENDY)) == 1  # the second, from a real sender, is answered


def test_a_refusal_answer_does_not_use_up_the_confirmation_request_limit(smtp):
    assert receive(undecryptable()).startswith("refused: cannot decrypt")  # anyone can forge this From
    user = openpgp.generate("Wendy <wendy@example.org>")
    assert receive(submission(user, WENDY)) == f"handled: submitted ({WENDY})"
    assert receive(undecryptable()).startswith("refused: cannot decrypt")
    phases = sorted(OutboxMail.objects.values_list("params__phase", flat=True))
    assert phases == ["refused", "request"]  # the second refusal has its own limit, used up


def test_an_address_of_the_organisations_directory_gets_no_request(smtp):
    from keys.models import Source

    Source.objects.create(
        name="directory",
        kind=Source.Kind.LDAP,
        url=f"ldap://127.0.0.1:{free_port()}",
        authoritative_domains=["example.org"],
    )
    user = openpgp.generate("Wendy <wendy@example.org>")
    assert receive(submission(user, WENDY)).startswith("handled: nothing to confirm")
    assert OutboxMail.objects.count() == 0


def test_a_policy_blocked_address_gets_no_request(smtp):
    PolicyBlock.objects.create(address_pattern="*@example.org", reason="test")
    user = openpgp.generate("Wendy <wendy@example.org>")
    assert not receive(submission(user, WENDY)).startswith("handled: submitted")
    assert OutboxMail.objects.count() == 0


@pytest.mark.parametrize("change", ["blocked", "directory", "revoked"])
def test_an_address_no_longer_publishable_is_not_published_by_its_response(smtp, change):
    from keys.models import Source

    user = openpgp.generate("Wendy <wendy@example.org>")
    nonce = _requested(smtp, user, WENDY)
    if change == "blocked":
        PolicyBlock.objects.create(address_pattern=WENDY, reason="test")
    elif change == "directory":
        Source.objects.create(
            name="directory",
            kind=Source.Kind.LDAP,
            url=f"ldap://127.0.0.1:{free_port()}",
            authoritative_domains=["example.org"],
        )
    else:
        Binding.objects.filter(address=WENDY).update(state=Binding.State.REVOKED)
    assert receive(response(WENDY, nonce)).startswith("refused: ")
    assert not Binding.objects.filter(address=WENDY, state=Binding.State.PUBLISHED).exists()
    assert not VerificationToken.objects.filter(used_at__isnull=False).exists()


def test_the_listener_takes_each_recipient_once_and_at_most_ten(monkeypatch, smtp, settings):
    from keys.services import wks

    calls: list[str] = []
    real = wks.handle

    def counted(raw, **kwargs):
        calls.append(kwargs["recipient"])
        return real(raw, **kwargs)

    monkeypatch.setattr(wks, "handle", counted)
    settings.WKD_DOMAINS = ["example.org", *(f"d{i}.example" for i in range(11))]
    listener = _listener()
    try:
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            client.ehlo()
            assert client.mail("x@example.org")[0] == 250
            for i in range(1000):
                assert client.rcpt(SUBMIT if i % 2 else SUBMIT.upper())[0] == 250
            assert client.data(b"Subject: hi\r\n\r\nhi")[0] == 250
            assert client.mail("x@example.org")[0] == 250
            codes = [client.rcpt(f"key-submission@d{i}.example")[0] for i in range(11)]
            assert codes == [250] * 10 + [452]
    finally:
        listener.stop()
    assert calls == [SUBMIT]


def test_an_unreadable_server_key_defers_the_mail(smtp, settings, caplog):
    user = openpgp.generate("Wendy <wendy@example.org>")
    raw = submission(user, WENDY)
    settings.SECRET_KEY = "another secret key than the one that sealed the server key"
    before = stored()
    with pytest.raises(SystemExit) as exited:
        receive(raw)
    assert exited.value.code == 75
    assert "`manage.py server_key rotate --address key-submission@example.org`" in caplog.text
    assert _data_refused(WENDY, crlf(raw)) == 451
    assert stored() == before and refusals() == []


def test_the_decrypt_child_gets_the_secret_on_stdin_and_sets_its_own_limits(monkeypatch):
    from keys.openpgp import wks as seam

    user = openpgp.generate("Wendy <wendy@example.org>")
    seen: dict = {}
    real = subprocess.run

    def run(args, **kwargs):
        seen.update(kwargs, files=[Path(a).read_bytes() for a in args[1:] if Path(a).is_file()])
        return real(args, **kwargs)

    monkeypatch.setattr(seam.subprocess, "run", run)
    encrypted = openpgp.encrypt(openpgp.parse(user.public).certs[0], b"hi").encode()
    assert seam.decrypt(user.secret, encrypted) == b"hi"
    assert "preexec_fn" not in seen and seen["input"] == user.secret
    assert not any(user.secret in data for data in seen["files"])  # no secret on disk
    source = seam.CHILD.read_text()
    assert source.index("setrlimit") < source.index("import pysequoia")


# -- the full round trip with gpg-wks-client ---------------------------------------------


@pytest.fixture
def tls_site(live_server, tmp_path):
    from .wkd_tls import TlsFront, make_certificates

    ca, leaf, key = make_certificates(tmp_path, ["example.org", "openpgpkey.example.org"])
    front = TlsFront(leaf, key, urlparse(live_server.url).port or 80, wait=30)
    yield ca
    front.close()


def in_namespace(ca: Path, home: str, script: list[str], workdir: Path) -> str:
    """Shell lines under `unshare -m` with example.org on 127.0.0.1 and our CA
    trusted (as tests/wkd_tls.run_in_namespace), in the GNUPGHOME `home` that
    outlives the call; stdout and stderr together."""
    from .wkd_tls import SYSTEM_BUNDLE

    hosts = workdir / "hosts"
    hosts.write_text("127.0.0.1 localhost example.org\n")  # the direct method only
    bundle = workdir / "ca.crt"
    bundle.write_bytes(SYSTEM_BUNDLE.read_bytes() + b"\n" + ca.read_bytes())
    resolv = workdir / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    setup = [
        f"mount --bind {hosts} /etc/hosts",
        f"mount --bind {bundle} {SYSTEM_BUNDLE}",
        f"mount --bind {resolv} /etc/resolv.conf",
        f"export GNUPGHOME={home} HOME={home}",
        f"cd {shlex.quote(str(workdir))}",
    ]
    body = "; ".join(script)
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{' && '.join(setup)} && {{ {body}; }}; gpgconf --kill all"],
        capture_output=True,
        timeout=180,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


@pytest.mark.gpg
@pytest.mark.parametrize("path", ["wks_receive", "smtp"])
def test_gpg_wks_client_round_trip(tls_site, smtp, tmp_path, path):
    ca = tls_site
    client, gpg = tool(WKS_CLIENT), tool("gpg")
    home = tempfile.mkdtemp(dir="/tmp", prefix="wks.")
    os.chmod(home, 0o700)
    deliver = _pipe if path == "wks_receive" else _smtp
    try:
        fpr = "$(gpg --with-colons --list-keys wendy@example.org | awk -F: '/^fpr/{print $10; exit}')"
        out = in_namespace(
            ca,
            home,
            [
                f"{gpg} --batch --passphrase '' --quick-gen-key 'Wendy <{WENDY}>' default default never",
                f"echo supported=$({client} -v --supported wendy@example.org 2>&1; echo rc=$?)",
                f"echo check=$({client} -v --check wendy@example.org 2>&1; echo rc=$?)",
                f"{client} -v --create {fpr} wendy@example.org > submission.eml",
            ],
            tmp_path,
        )
        assert "provider for 'wendy@example.org' supports WKS" in out and "supported=" in out, out
        assert "public key for 'wendy@example.org' NOT found via WKD" in out, out
        assert "submitting request to 'key-submission@example.org'" in out, out
        deliver((tmp_path / "submission.eml").read_bytes())
        [request] = smtp.to("wendy@example.org")
        (tmp_path / "request.eml").write_bytes(request.as_bytes())
        out = in_namespace(ca, home, [f"{client} -v --receive < request.eml > response.eml"], tmp_path)
        reply = (tmp_path / "response.eml").read_bytes()
        assert b"To: key-submission@example.org" in reply and b"multipart/encrypted" in reply, out
        deliver((tmp_path / "response.eml").read_bytes())
        binding = Binding.objects.get(address="wendy@example.org")
        assert (binding.state, binding.validation) == (Binding.State.PUBLISHED, "wks_confirmed")
        out = in_namespace(
            ca,
            home,
            [
                f"{client} -v --check wendy@example.org",
                f"rm -f {home}/pubring.kbx",
                f"{gpg} --batch --auto-key-locate clear,nodefault,wkd --locate-external-keys {WENDY}",
            ],
            tmp_path,
        )
        assert "public key for 'wendy@example.org' found via WKD" in out, out
        assert "Wendy <wendy@example.org>" in out and binding.key.fingerprint in out.replace(" ", ""), out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _pipe(raw: bytes) -> None:
    assert receive(raw).startswith("handled: ")


def _smtp(raw: bytes) -> None:
    listener = _listener()
    try:
        with smtplib.SMTP(listener.hostname, listener.port) as client:
            client.sendmail("wendy@example.org", [SUBMIT], crlf(raw))
    finally:
        listener.stop()
