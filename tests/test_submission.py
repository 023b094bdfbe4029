"""Submission on every path (HKP, VKS, upload page) and bad input on each."""

from __future__ import annotations

import json

import pytest

from keys.models import Binding, Event, Key

from .keyserver import Keyserver

# Transactional: mail is enqueued on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ks(client, mailoutbox) -> Keyserver:
    return Keyserver(client, mailoutbox)


# -- HKP /pks/add --------------------------------------------------------------


def test_pks_add_stores_the_key_and_mails_each_address(client, cast, mailoutbox):
    response = client.post("/pks/add", {"keytext": cast.alice.text})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert cast.alice.fingerprint in response.content.decode()
    assert sorted(m.to[0] for m in mailoutbox) == ["alice@example.org", "alice@work.example.com"]
    mail = mailoutbox[0]
    assert mail.extra_headers["Auto-Submitted"] == "auto-generated"
    assert "/verify/" in mail.body
    assert cast.alice.fingerprint[:4] in mail.body.replace(" ", "")[:2000]
    assert "ignore" in mail.body


def test_pks_add_twice_sends_no_second_mail(client, cast, mailoutbox):
    client.post("/pks/add", {"keytext": cast.alice.text})
    response = client.post("/pks/add", {"keytext": cast.alice.text})
    assert response.status_code == 200
    assert "pending" in response.content.decode()
    assert len(mailoutbox) == 2


def test_pks_add_says_per_address_what_happened_to_the_mail(client, cast, mailoutbox):
    first = client.post("/pks/add", {"keytext": cast.alice.text}).content.decode()
    assert "alice@example.org: pending. A confirmation mail was sent now." in first
    assert "marked pending" not in first
    again = client.post("/pks/add", {"keytext": cast.alice.text}).content.decode()
    assert "alice@example.org: pending. Already pending: the confirmation mail was sent earlier." in again
    assert "sent now" not in again
    assert len(mailoutbox) == 2


def test_pks_add_names_the_address_limit_and_when_to_retry(client, cast, mailoutbox, settings):
    from keys import clock
    from keys.models import OutboxMail

    settings.RATE_MAIL_PER_ADDRESS = "1/3600"
    now = clock.now()
    OutboxMail.objects.create(  # a confirmation mail asked for with another key
        kind=OutboxMail.Kind.VERIFY,
        address="alice@example.org",
        params={},
        state=OutboxMail.State.SENT,
        created=now,
        next_attempt_at=now,
        deadline=now,
    )
    answer = client.post("/pks/add", {"keytext": cast.alice.text}).content.decode()
    line = next(x for x in answer.splitlines() if "alice@example.org" in x)
    assert "No confirmation mail was sent (the limit for this address); try again after 20" in line
    assert line.endswith(" UTC.")
    assert "alice@work.example.com: pending. A confirmation mail was sent now." in answer
    assert [m.to for m in mailoutbox].count(["alice@work.example.com"]) == 1


def test_pks_add_with_a_keyring_stores_every_key(client, cast):
    response = client.post("/pks/add", {"keytext": cast.keyring3.text})
    assert response.status_code == 200
    assert Key.objects.count() == 3


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({}, 400, "keytext"),
        ({"keytext": ""}, 400, "keytext"),
        ({"keytext": "garbage"}, 400, "not OpenPGP"),
    ],
)
def test_pks_add_bad_forms_get_a_plain_text_4xx(client, form, status, message):
    response = client.post("/pks/add", form)
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/plain")
    assert message in response.content.decode()


def test_pks_add_refuses_a_secret_key_and_stores_nothing(client, cast):
    response = client.post("/pks/add", {"keytext": cast.alice_secret.text})
    assert response.status_code == 400
    assert "secret" in response.content.decode()
    assert not Key.objects.exists()


def test_pks_add_refuses_a_wrong_content_type(client, cast):
    response = client.post("/pks/add", cast.alice.text, content_type="application/pgp-keys")
    assert response.status_code == 400
    assert "keytext" in response.content.decode()


def test_pks_add_answers_413_above_the_size_cap(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = client.post("/pks/add", {"keytext": "A" * 20_000})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")


def test_a_huge_key_file_on_the_upload_page_is_a_413_before_it_is_read(client, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    huge = SimpleUploadedFile("key.asc", b"A" * 200_000)
    response = client.post("/upload", {"keyfile": huge})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")


def test_a_pasted_key_near_the_limit_on_the_upload_page_is_a_413_not_a_bare_400(settings):
    """Below the declared-length cut but with a field over
    DATA_UPLOAD_MAX_MEMORY_SIZE: the CSRF check would parse it first."""
    from django.test import Client

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    browser = Client(enforce_csrf_checks=True)
    browser.get("/upload")
    token = browser.cookies["csrftoken"].value
    response = browser.post("/upload", {"csrfmiddlewaretoken": token, "keytext": "A" * 30_000})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert "too large" in response.content.decode()
    # A form of normal size still reaches the page (and its CSRF check).
    small = browser.post("/upload", {"csrfmiddlewaretoken": token, "keytext": "garbage"})
    assert small.status_code == 400  # the page's own error: a failed CSRF check is a 403


@pytest.mark.parametrize(
    "path",
    ["/", "/search", "/search?q=nobody%40example.org", "/upload", "/manage", "/fingerprint", "/about/api"],
)
def test_pages_answer_head_like_get_without_a_body(client, path):
    get = client.get(path)
    head = client.head(path)
    assert head.status_code == get.status_code == 200
    assert head["Content-Type"] == get["Content-Type"]
    assert head.content == b""


def test_the_verify_and_manage_links_answer_head_without_using_the_token(client, cast, mailoutbox):
    from keys.models import Binding

    from .keyserver import Keyserver

    ks = Keyserver(client, mailoutbox)
    token = ks.upload(cast.alice.text).json()["token"]
    ks.request_verify(token, [cast.alice.emails[0]])
    link = ks.link(cast.alice.emails[0])
    assert client.head(link).status_code == 200
    assert client.post(link).status_code == 200  # still single use, still unused
    assert Binding.objects.get(address=cast.alice.emails[0]).state == Binding.State.PUBLISHED
    assert client.head("/manage/not-a-token").status_code in (400, 404)


def test_a_key_too_large_after_dearmoring_is_a_413(client, cast, settings):
    settings.MAX_KEY_BYTES = 500
    response = client.post("/pks/add", {"keytext": cast.bob.text})
    assert response.status_code == 413


# -- VKS upload and request-verify ------------------------------------------------


def test_vks_upload_answers_fingerprint_status_and_token(ks, cast):
    response = ks.upload(cast.bob.data)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"key_fpr", "status", "token"}
    assert body["status"] == {"bob@example.net": "unpublished"}


def test_vks_upload_of_a_keyring_answers_a_bare_list_of_fingerprints(ks, cast):
    body = ks.upload(cast.keyring3.data).json()
    assert body == [cast.alice.fingerprint, cast.bob.fingerprint, cast.carol.fingerprint]


def test_vks_upload_of_a_revoked_key_has_an_empty_status(ks, cast):
    assert ks.upload(cast.alice_revoked.data).json()["status"] == {}


def test_vks_request_verify_makes_addresses_pending_and_mails_them(ks, cast):
    token = ks.upload(cast.alice.data).json()["token"]
    response = ks.request_verify(token, ["alice@example.org"])
    assert response.status_code == 200
    body = response.json()
    assert body["key_fpr"] == cast.alice.fingerprint
    assert body["status"] == {"alice@example.org": "pending", "alice@work.example.com": "unpublished"}
    assert [m.to for m in ks.outbox] == [["alice@example.org"]]


def test_vks_request_verify_uses_the_first_known_locale(ks, cast):
    token = ks.upload(cast.bob.data).json()["token"]
    ks.request_verify(token, ["bob@example.net"], locale=["xx_YY", "de_CH", "en"])
    mail = ks.outbox[0]
    assert mail.subject == "Bestätigen Sie bob@example.net für Ihren OpenPGP-Schlüssel"
    assert "Der Link ist 72 Stunden gültig" in mail.body


def test_pages_and_errors_follow_accept_language(client, cast):
    page = client.get("/upload", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert "Ihren öffentlichen Schlüssel hochladen" in page.content.decode()
    error = client.post(
        "/vks/v1/upload", {"keytext": "garbage"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="de"
    )
    assert error.json()["error"] == "Dies sind keine OpenPGP-Daten."
    english = client.get("/upload", HTTP_ACCEPT_LANGUAGE="en")
    assert "Upload your public key" in english.content.decode()


def test_vks_upload_token_is_reusable_within_the_hour(ks, cast):
    token = ks.upload(cast.alice.data).json()["token"]
    assert ks.request_verify(token, ["alice@example.org"]).status_code == 200
    assert ks.request_verify(token, ["alice@work.example.com"]).status_code == 200
    assert len(ks.outbox) == 2


def test_vks_upload_token_expires(ks, cast):
    from datetime import timedelta

    from keys import clock

    token = ks.upload(cast.alice.data).json()["token"]
    clock.set_now(clock.now() + timedelta(minutes=61))
    response = ks.request_verify(token, ["alice@example.org"])
    assert response.status_code == 400
    assert response.json() == {"error": "Upload session expired. Please try again."}


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("not json", "application/json", "JSON"),
        ('["a list"]', "application/json", "JSON object"),
        ('{"keytext": 5}', "application/json", "No key"),
        ('{"keytext": ""}', "application/json", "No key"),
        ('{"keytext": "garbage"}', "application/json", "not OpenPGP"),
        ('{"keytext": "x"}', "text/plain", "expected application/json"),
    ],
)
def test_vks_upload_errors_are_json_400s(client, body, content_type, message):
    response = client.post("/vks/v1/upload", body, content_type=content_type)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_vks_upload_refuses_secret_keys_in_json(ks, cast):
    response = ks.upload(cast.alice_secret.data)
    assert response.status_code == 400
    assert "secret" in response.json()["error"]
    assert not Key.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"token": "nonsense", "addresses": ["alice@example.org"]},
        {"addresses": ["alice@example.org"]},
        {"token": None, "addresses": []},
    ],
)
def test_vks_request_verify_with_a_bad_token_is_a_json_400(ks, payload):
    response = ks.client.post("/vks/v1/request-verify", payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]


def test_vks_request_verify_refuses_an_address_not_on_the_key(ks, cast):
    token = ks.upload(cast.alice.data).json()["token"]
    for address in ["mallory@example.org", "not an address"]:
        response = ks.request_verify(token, [address])
        assert response.status_code == 400
    assert not ks.outbox


def test_vks_lookups_refuse_malformed_ids_with_json(client):
    for path in ["/vks/v1/by-fingerprint/XYZ", "/vks/v1/by-keyid/1234", "/vks/v1/by-email/not-an-address"]:
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.json()["error"], path


# -- HKP lookups: bad searches -------------------------------------------------


@pytest.mark.parametrize(
    "search",
    [
        "",
        "alice",
        "@example.org",
        "0x1234ABCD",
        "1234ABCD",
        "0xZZZZ",
        "alice@",
        "a@@example.org",
        "%00",
        "a b@example.org>",
        "a\tb@example.org",
    ],
)
def test_hkp_refuses_bad_and_short_searches_with_400(client, search):
    response = client.get("/pks/lookup", {"op": "get", "search": search})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.strip()


def test_a_wildcard_is_an_exact_address_and_matches_nothing(client, cast, ks):
    ks.publish(cast.bob.data, "bob@example.net")
    assert client.get("/pks/lookup", {"op": "index", "search": "*@example.net"}).status_code == 404


def test_lookups_answer_head_requests(client, cast, ks):
    ks.publish(cast.bob.data, "bob@example.net")
    assert client.head("/pks/lookup?op=get&search=bob@example.net").status_code == 200
    assert client.head(f"/vks/v1/by-fingerprint/{cast.bob.fingerprint}").status_code == 200


def test_hkp_unsupported_operations_are_501_and_unknown_ones_400(client):
    assert client.get("/pks/lookup", {"op": "hget", "search": "a@b.org"}).status_code == 501
    assert client.get("/pks/lookup", {"op": "x-nonsense", "search": "a@b.org"}).status_code == 501
    unknown = client.get("/pks/lookup", {"op": "delete-everything", "search": "a@b.org"})
    assert unknown.status_code == 400 and b"Unknown operation" in unknown.content


def test_hkp_stats(client, cast, ks):
    ks.publish(cast.bob.data, "bob@example.net")
    body = json.loads(client.get("/pks/lookup", {"op": "stats"}).content)
    assert body == {"keys": 1, "published_addresses": 1}


def test_cors_is_open_on_protocol_paths(client, cast, ks):
    ks.publish(cast.bob.data, "bob@example.net")
    for path in ["/pks/lookup?op=get&search=bob@example.net", "/vks/v1/by-email/bob@example.net"]:
        assert client.get(path)["Access-Control-Allow-Origin"] == "*"
    preflight = client.options("/vks/v1/upload")
    assert preflight.status_code == 204
    assert "Content-Type" in preflight["Access-Control-Allow-Headers"]


def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


# -- The upload page -----------------------------------------------------------


def test_the_upload_page_lets_the_person_choose_addresses(client, cast, mailoutbox):
    page = client.get("/upload")
    assert page.status_code == 200 and b"<textarea" in page.content
    result = client.post("/upload", {"keytext": cast.alice.text})
    assert result.status_code == 200
    html = result.content.decode()
    assert 'value="alice@example.org"' in html and 'value="alice@work.example.com"' in html
    assert not mailoutbox  # nothing is mailed until the person chooses
    token = result.context["items"][0]["token"]
    sent = client.post("/upload/request-verify", {"token": token, "address": ["alice@work.example.com"]})
    assert sent.status_code == 200
    assert [m.to for m in mailoutbox] == [["alice@work.example.com"]]
    assert Binding.objects.get(address="alice@work.example.com").state == Binding.State.PENDING
    assert Binding.objects.get(address="alice@example.org").state == Binding.State.UNPUBLISHED


def test_the_upload_page_accepts_a_key_file(client, cast):
    from django.core.files.uploadedfile import SimpleUploadedFile

    result = client.post("/upload", {"keyfile": SimpleUploadedFile("bob.asc", cast.bob.data)})
    assert result.status_code == 200
    assert Key.objects.filter(fingerprint=cast.bob.fingerprint).exists()


def test_the_upload_page_shows_errors_as_html(client, cast):
    for form in [{"keytext": "garbage"}, {"keytext": cast.alice_secret.text}]:
        result = client.post("/upload", form)
        assert result.status_code == 400
        assert result["Content-Type"].startswith("text/html")
        assert b'class="error"' in result.content
    assert client.post("/upload", {}).status_code == 400


def test_the_upload_page_forms_carry_csrf_protection(cast):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/upload", {"keytext": cast.bob.text}).status_code == 403
    assert not Key.objects.exists()


def test_the_search_page_finds_published_keys_only(client, cast, ks):
    ks.upload(cast.alice.data)
    assert b"No key found" in client.get("/search", {"q": "alice@example.org"}).content
    ks.publish(cast.bob.data, "bob@example.net")
    page = client.get("/search", {"q": "bob@example.net"}).content.decode()
    assert "Bob &lt;bob@example.net&gt;" in page
    assert client.get("/search", {"q": "0x1234ABCD"}).status_code == 400


def test_every_upload_is_written_to_the_event_log(client, cast):
    client.post("/pks/add", {"keytext": cast.bob.text})
    assert Event.objects.filter(action="key_created", fingerprint=cast.bob.fingerprint).exists()
    assert Event.objects.filter(action="verification_requested", address="bob@example.net").exists()


def test_pks_add_says_why_a_sha1_user_id_is_not_published(client, cast, mailoutbox):
    response = client.post("/pks/add", {"keytext": cast.sha1_only.text})
    assert response.status_code == 200
    text = response.content.decode()
    assert "Sha One <sha1@example.org>: not published" in text and "SHA-1" in text
    assert not mailoutbox


def test_the_upload_page_says_why_a_sha1_user_id_is_not_published(client, cast):
    html = client.post("/upload", {"keytext": cast.sha1_only.text}).content.decode()
    assert "SHA-1" in html and "gpg --quick-set-expire" in html


@pytest.mark.parametrize("path", ["/pks/add", "/vks/v1/upload", "/upload"])
def test_uploads_are_rate_limited_per_client_on_every_path(client, cast, settings, path):
    settings.RATE_UPLOAD_PER_CLIENT = "2/3600"
    statuses = []
    for _ in range(3):
        if path == "/vks/v1/upload":
            response = client.post(path, {"keytext": cast.bob.text}, content_type="application/json")
        else:
            response = client.post(path, {"keytext": cast.bob.text})
        statuses.append(response.status_code)
    assert statuses[:2] != [429, 429] and statuses[2] == 429


def test_deeply_nested_json_is_a_400_not_a_crash(client):
    response = client.post("/vks/v1/upload", "[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]


def test_readiness_names_redis_when_it_is_down_but_stays_ready(client, settings, admin_client):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CACHES = {
        "default": {"BACKEND": "keys.cache.ResilientRedisCache", "LOCATION": settings.REDIS_URL}
    }
    response = client.get("/readyz")
    assert response.status_code == 200  # every request path works without Redis
    assert response.json() == {"ready": True, "degraded": {"redis": "unavailable"}}
    detail = admin_client.get("/readyz").json()["degraded"]["redis"]
    assert "127.0.0.1" in detail or "refused" in detail.lower()  # staff see the error itself
