"""The short way protocol requests take (ProtocolMiddleware) answers exactly as
the whole middleware stack does: same status, body and headers, for hits,
misses, errors, languages, submissions and a disallowed host."""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings
from django.test import Client

from keys.identifiers import wkd_hash

from .keyserver import Keyserver

pytestmark = pytest.mark.django_db(transaction=True)
SHORTCUT = "keys.views.http.ProtocolMiddleware"
# Headers the whole stack adds to every answer and a key answer does without:
# it is the same in every language.
LANGUAGE = {"Vary", "Content-Language"}


@pytest.fixture
def published(client, cast, mailoutbox, settings):
    settings.WKD_DOMAINS = ["example.org"]
    settings.ALLOWED_HOSTS = ["localhost", "testserver", "openpgpkey.example.org"]
    Keyserver(client, mailoutbox).publish(cast.alice.data, *cast.alice.emails)
    return cast.alice


def requests_for(alice) -> list[tuple[str, str, dict]]:
    fpr, keyid, hashed = alice.fingerprint, alice.key_id, wkd_hash("alice@example.org")
    get = [
        f"/pks/lookup?op=get&options=mr&search=0x{fpr}",
        f"/pks/lookup?op=get&options=mr&search=0x{keyid}",
        "/pks/lookup?op=get&options=mr&search=alice@example.org",
        "/pks/lookup?op=index&options=mr&search=alice@example.org",
        "/pks/lookup?op=index&search=alice@example.org",
        "/pks/lookup?op=vindex&search=alice@example.org",
        "/pks/lookup?op=get&search=nobody@example.org",
        "/pks/lookup?op=get&search=1234ABCD",
        "/pks/lookup?op=stats",
        "/pks/lookup?op=x-nonsense",
        f"/vks/v1/by-fingerprint/{fpr}",
        f"/vks/v1/by-keyid/{keyid}",
        "/vks/v1/by-email/alice@example.org",
        "/vks/v1/by-email/not-an-address",
        "/vks/v1/by-fingerprint/ZZZ",
        "/pub/alice@example.org",
        f"/pub/{keyid}",
        "/pub/nobody@example.org",
        f"/.well-known/openpgpkey/example.org/hu/{hashed}?l=alice",
        "/.well-known/openpgpkey/example.org/hu/short",
        "/.well-known/openpgpkey/example.org/policy",
        "/vks/v1/nothing-here",
    ]
    cases: list[tuple[str, str, dict]] = [("get", path, {}) for path in get]
    cases += [("get", path, {"HTTP_ACCEPT_LANGUAGE": "de"}) for path in get[6:9] + get[13:15]]
    cases += [("head", get[0], {}), ("head", get[10], {})]
    cases += [
        ("get", get[0], {"HTTP_IF_NONE_MATCH": "*"}),
        ("get", get[0], {"HTTP_HOST": "evil.example"}),
        ("post", "/pks/add", {"data": {"keytext": alice.text}}),
        ("post", "/pks/add", {"data": {"keytext": "garbage"}, "HTTP_ACCEPT_LANGUAGE": "de"}),
        ("post", "/vks/v1/upload", {"data": "not json", "content_type": "application/json"}),
        ("post", "/pub/alice@example.org", {"data": "garbage", "content_type": "text/plain"}),
        ("options", "/vks/v1/upload", {}),
    ]
    return cases


def answer(client: Client, method: str, path: str, extra: dict):
    """Status, body and headers; a page's CSRF token (random each time) as a placeholder."""
    extra = dict(extra)
    kwargs = {k: extra.pop(k) for k in ("data", "content_type") if k in extra}
    response = getattr(client, method)(path, **kwargs, **extra)
    body = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"CSRF", response.content)
    headers = dict(response.headers)
    assert len(headers.pop("X-Request-ID")) == 32  # a fresh id each time
    cookie = response.cookies.get(django_settings.CSRF_COOKIE_NAME)
    if cookie is not None:
        headers["csrf cookie"] = "set" if cookie.value else "unset"
    return response.status_code, body, headers


def test_the_short_way_answers_as_the_whole_stack(published, settings):
    short = [answer(Client(), *case) for case in requests_for(published)]
    settings.MIDDLEWARE = [m for m in django_settings.MIDDLEWARE if m != SHORTCUT]
    whole = [answer(Client(), *case) for case in requests_for(published)]
    for case, (status, body, headers), (status2, body2, headers2) in zip(
        requests_for(published), short, whole, strict=True
    ):
        assert (status, body) == (status2, body2), case
        language_free = "ETag" in headers
        if language_free:
            assert not LANGUAGE & set(headers), case
            headers2 = {k: v for k, v in headers2.items() if k not in LANGUAGE}
        assert headers == headers2, case


def test_a_key_answer_carries_validators_and_answers_304(client, published):
    path = f"/pks/lookup?op=get&options=mr&search=0x{published.fingerprint}"
    first = client.get(path)
    etag, modified = first["ETag"], first["Last-Modified"]
    assert etag.startswith('"') and "-" in etag
    assert int(etag.strip('"').split("-")[1], 16) == len(first.content)
    assert client.get(path, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get(path, HTTP_IF_MODIFIED_SINCE=modified).status_code == 304
    assert client.get(path, HTTP_IF_NONE_MATCH='"0-0"').status_code == 200
