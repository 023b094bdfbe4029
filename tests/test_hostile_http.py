"""Every endpoint against hostile or odd input: a clear 4xx, never a 500."""

from __future__ import annotations

import pytest

from keys.models import Key

pytestmark = pytest.mark.django_db(transaction=True)

ODD = [
    "",
    " ",
    "%00",
    "\x00",
    "a" * 5000,
    "<script>alert(1)</script>@example.org",
    "ünïcödé@例え.テスト",
    "x@[127.0.0.1]",
    "0x" + "F" * 64,
    "0x" + "G" * 40,
    "../../etc/passwd",
    "'; DROP TABLE keys_key; --",
    "@@",
    "a@b",
    "%F0%9F%92%A9@example.org",
]


@pytest.fixture(autouse=True)
def _wide_open(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.WKD_DOMAINS = ["example.org"]


def assert_clear(response, path: str) -> None:
    assert response.status_code < 500, (path, response.status_code, response.content[:200])
    if response.status_code >= 400 and response.get("Content-Type", "").startswith(
        ("text/", "application/json")
    ):
        assert response.content.strip(), path


@pytest.mark.parametrize("value", ODD)
def test_lookups_with_odd_values(client, value):
    from urllib.parse import quote

    q = quote(value, safe="")
    for path in [
        f"/pks/lookup?op=get&search={q}",
        f"/pks/lookup?op=index&options=mr&search={q}",
        f"/pks/lookup?op=vindex&search={q}",
        f"/pks/lookup?op={q}&search=a@example.org",
        f"/vks/v1/by-fingerprint/{q}",
        f"/vks/v1/by-keyid/{q}",
        f"/vks/v1/by-email/{q}",
        f"/pub/{q}",
        f"/search?q={q}",
        f"/fingerprint?email={q}&fingerprint={q}",
        f"/verify/{q}",
        f"/manage/{q}",
        f"/.well-known/openpgpkey/hu/{q}?l={q}",
        f"/.well-known/openpgpkey/{q}/hu/{q}",
        f"/.well-known/openpgpkey/{q}/policy",
        f"/ldap-relay?server={q}&search={q}",
        f"/api/v1/directory-check?email={q}&fingerprint={q}",
    ]:
        if "/" in value and path.startswith(
            ("/vks/v1/by-f", "/vks/v1/by-k", "/pub/", "/verify/", "/manage/")
        ):
            continue  # not a route: Django's own 404
        assert_clear(client.get(path), path)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00" * 100,
        b"\xff\xfe garbage",
        b'{"keytext": null}',
        b'{"keytext": {"a": 1}}',
        b'{"keytext": "' + b"A" * 100_000 + b'"}',
        b'{"token": ["x"], "addresses": "a@example.org"}',
        b'{"email": ["a@example.org"], "pubkey": 12}',
        b"[" * 50_000,
        b'"just a string"',
    ],
)
def test_posts_with_odd_bodies(client, body):
    for path in [
        "/vks/v1/upload",
        "/vks/v1/request-verify",
        "/welcome-message",
        "/initial/legacy_submit",
        "/lookup/email",
        "/pub/someone@example.org",
    ]:
        for content_type in ["application/json", "text/plain", "application/octet-stream"]:
            assert_clear(client.post(path, body, content_type=content_type), path)
    assert_clear(client.post("/pks/add", {"keytext": body.decode("latin-1")}), "/pks/add")
    assert_clear(client.post("/upload", {"keytext": body.decode("latin-1")}), "/upload")
    assert not Key.objects.exists()


def test_forms_with_odd_fields(client):
    for data in [{"token": "x" * 1000, "address": ["a"]}, {"address": "a@example.org"}, {}]:
        assert_clear(client.post("/upload/request-verify", data), "/upload/request-verify")
    for email in ["", "x", "a" * 300 + "@example.org", "x@[127.0.0.1]"]:
        assert_clear(client.post("/manage", {"email": email}), "/manage")


def test_wrong_methods_are_405_not_500(client):
    for method, path in [
        ("put", "/pks/add"),
        ("delete", "/vks/v1/upload"),
        ("post", "/pks/lookup?op=get&search=a@example.org"),
        ("patch", "/pub/a@example.org"),
        ("post", "/vks/v1/by-email/a@example.org"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 405, (method, path)


def test_a_user_id_with_markup_is_escaped_on_every_page(client, gpg_factory, mailoutbox):
    from .keyserver import Keyserver

    gpg = gpg_factory()
    fpr = gpg.generate('<img src=x onerror=alert(1)> "Eve" <eve@example.org>')
    ks = Keyserver(client, mailoutbox)
    ks.publish(gpg.run("--export", "--armor", fpr).stdout, "eve@example.org")
    for path in ["/search?q=eve@example.org", "/pks/lookup?op=index&search=eve@example.org"]:
        html = client.get(path).content.decode()
        assert "<img src=x" not in html and "&lt;img src=x" in html, path
