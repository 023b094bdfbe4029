"""The Attester API with a FlowCrypt-shaped client, id_tokens from a local issuer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keys import openpgp
from keys.models import Binding, Event, Key

from .conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)
ISSUER = "https://accounts.example.test"
AUDIENCE = "flowcrypt-client"


class Issuer:
    """An OIDC issuer of our own: a signing key and its JWKS over HTTP."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        self.requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(issuer.jwks)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"

    def token(
        self, email: str, *, aud: str = AUDIENCE, exp: float | None = None, key: Any = None, **extra: Any
    ) -> str:
        claims = {
            "iss": ISSUER,
            "aud": aud,
            "sub": "1234",
            "email": email,
            "email_verified": True,
            "iat": int(time.time()),
            "exp": int(exp if exp is not None else time.time() + 3600),
            **extra,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def issuer(settings):
    server = Issuer()
    settings.OIDC_ISSUERS = [{"issuer": ISSUER, "jwks_url": server.url, "audiences": [AUDIENCE]}]
    # The JWKS is fetched through the outbound helper: loopback only when allowed.
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    yield server
    server.server.shutdown()
    server.server.server_close()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_API_VERSION": "3"}


def post_pub(client, address: str, armored: bytes, **headers: str):
    # FlowCrypt's browser client sends the raw armored key as text/plain.
    return client.post(f"/pub/{address}", armored, content_type="text/plain;charset=UTF-8", **headers)


def fingerprints(text: str) -> list[str]:
    return [c.fingerprint for c in openpgp.parse(text.encode()).certs]


@pytest.fixture
def user(gpg_factory):
    gpg = gpg_factory()
    fpr = gpg.generate("Uma User <uma@example.org>")
    return gpg, fpr, gpg.run("--export", "--armor", fpr).stdout


def test_a_flowcrypt_client_publishes_with_its_id_token_and_looks_up(client, issuer, user):
    _gpg, fpr, armored = user
    response = post_pub(client, "uma@example.org", armored, **bearer(issuer.token("uma@example.org")))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    binding = Binding.objects.get(address="uma@example.org")
    assert binding.state == Binding.State.PUBLISHED
    assert binding.validation == Binding.Validation.OIDC_VERIFIED
    found = client.get("/pub/uma@example.org")
    assert found.status_code == 200 and found["Content-Type"].startswith("text/plain")
    assert fingerprints(found.content.decode()) == [fpr]
    for query in [fpr, fpr[-16:], "UMA@example.org"]:
        assert fingerprints(client.get(f"/pub/{query}").content.decode()) == [fpr], query
    assert issuer.requests == 1  # the JWKS is cached


def test_a_second_key_with_a_token_replaces_the_first_and_mails_a_notice(
    client, issuer, user, gpg_factory, mailoutbox
):
    _gpg, first, armored = user
    post_pub(client, "uma@example.org", armored, **bearer(issuer.token("uma@example.org")))
    other = gpg_factory()
    second = other.generate("Uma New <uma@example.org>")
    token = issuer.token("uma@example.org")
    response = post_pub(
        client, "uma@example.org", other.run("--export", "--armor", second).stdout, **bearer(token)
    )
    assert response.status_code == 200
    assert fingerprints(client.get("/pub/uma@example.org").content.decode()) == [second]
    assert client.get(f"/pks/lookup?op=get&search=0x{first}").status_code == 404
    notice = [m for m in mailoutbox if "replaced" in m.subject]
    assert len(notice) == 1 and notice[0].to == ["uma@example.org"]
    assert " ".join(first[i : i + 4] for i in range(0, 40, 4)) in notice[0].body
    assert Event.objects.filter(action="address_replaced", fingerprint=first).exists()


def test_without_a_token_a_confirmation_mail_is_sent_and_confirming_replaces(
    client, issuer, user, gpg_factory, mailoutbox
):
    _gpg, first, armored = user
    post_pub(client, "uma@example.org", armored, **bearer(issuer.token("uma@example.org")))
    other = gpg_factory()
    second = other.generate("Uma Laptop <uma@example.org>")
    response = post_pub(client, "uma@example.org", other.run("--export", "--armor", second).stdout)
    assert response.status_code == 200
    assert "confirmation mail" in response.content.decode()
    assert fingerprints(client.get("/pub/uma@example.org").content.decode()) == [first]
    mail = [m for m in mailoutbox if "/verify/" in m.body][-1]
    assert "replaces" in mail.body
    link = "/verify/" + mail.body.split("/verify/", 1)[1].split()[0]
    assert client.post(link).status_code == 200
    assert fingerprints(client.get("/pub/uma@example.org").content.decode()) == [second]
    assert any("replaced" in m.subject for m in mailoutbox)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "expired"),
        ("audience", "another application"),
        ("email", "another email"),
        ("signature", "signature"),
        ("issuer", "issuer"),
        ("garbage", "not a valid JWT"),
        ("unverified", "verified email"),
    ],
)
def test_bad_tokens_are_a_401_and_store_nothing(client, issuer, user, case, message):
    _gpg, _fpr, armored = user
    token = {
        "expired": lambda: issuer.token("uma@example.org", exp=time.time() - 3600),
        "audience": lambda: issuer.token("uma@example.org", aud="someone-else"),
        "email": lambda: issuer.token("mallory@example.org"),
        "signature": lambda: issuer.token(
            "uma@example.org", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        "issuer": lambda: issuer.token("uma@example.org", iss="https://evil.example"),
        "garbage": lambda: "not.a.token",
        "unverified": lambda: issuer.token("uma@example.org", email_verified=False),
    }[case]()
    response = post_pub(client, "uma@example.org", armored, **bearer(token))
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401 and message in error["message"]
    assert not Key.objects.exists()


def test_a_jwks_on_a_private_address_is_refused_by_the_outbound_guard(client, settings, user):
    """The JWKS fetch goes through federation.http like every outbound call."""
    server = Issuer()
    try:
        settings.OIDC_ISSUERS = [{"issuer": ISSUER, "jwks_url": server.url, "audiences": [AUDIENCE]}]
        response = post_pub(client, "uma@example.org", user[2], **bearer(server.token("uma@example.org")))
    finally:
        server.server.shutdown()
        server.server.server_close()
    assert response.status_code == 401
    assert "non-public address 127.0.0.1" in response.json()["error"]["message"]
    assert not Key.objects.exists()


def test_an_unreachable_jwks_is_a_401_not_a_500(client, settings, user):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.OIDC_ISSUERS = [
        {"issuer": ISSUER, "jwks_url": f"http://127.0.0.1:{free_port()}/jwks", "audiences": [AUDIENCE]}
    ]
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "email": "uma@example.org", "exp": int(time.time()) + 60},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
    )
    response = post_pub(client, "uma@example.org", user[2], **bearer(token))
    assert response.status_code == 401
    assert "could not be fetched" in response.json()["error"]["message"]


def test_a_key_without_the_address_is_a_400(client, issuer, user):
    response = post_pub(client, "other@example.org", user[2], **bearer(issuer.token("other@example.org")))
    assert response.status_code == 400
    assert "no valid user ID for other@example.org" in response.json()["error"]["message"]
    assert not Key.objects.exists()


@pytest.mark.parametrize(
    ("path", "status"),
    [("/pub/nobody@example.org", 404), ("/pub/not-an-address", 400), ("/pub/1234ABCD", 400)],
)
def test_lookup_errors_have_the_attester_shape(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == status
    assert response.json()["error"]["message"]


def test_post_pub_errors(client, cast):
    assert client.post("/pub/uma@example.org", b"", content_type="text/plain").status_code == 400
    assert client.post("/pub/uma@example.org", b"garbage", content_type="text/plain").status_code == 400
    secret = client.post("/pub/alice@example.org", cast.alice_secret.data, content_type="text/plain")
    assert secret.status_code == 400 and "secret" in secret.json()["error"]["message"]
    no_type = client.generic("POST", "/pub/alice@example.org", cast.alice.data)
    assert no_type.status_code == 200
    assert "confirmation mail" in no_type.content.decode()


def test_welcome_message_is_sent_encrypted_for_a_valid_token(client, issuer, user, mailoutbox):
    gpg, _fpr, armored = user
    response = client.post(
        "/welcome-message",
        {"email": "uma@example.org", "pubkey": armored.decode()},
        content_type="application/json",
        **bearer(issuer.token("uma@example.org")),
    )
    assert response.json() == {"sent": True}
    mail = mailoutbox[-1]
    assert mail.to == ["uma@example.org"]
    assert "BEGIN PGP MESSAGE" in mail.body
    decrypted = gpg.run("--decrypt", input=mail.body.encode()).stdout.decode()
    assert "uma@example.org" in decrypted and "works" in decrypted


def test_welcome_message_is_not_an_open_relay(client, user, mailoutbox, cast):
    _gpg, _fpr, armored = user
    response = client.post(
        "/welcome-message",
        {"email": "uma@example.org", "pubkey": armored.decode()},
        content_type="application/json",
    )
    assert response.json() == {"sent": False}
    assert not mailoutbox


def test_welcome_message_for_a_published_key_without_token(client, issuer, user, mailoutbox):
    _gpg, _fpr, armored = user
    post_pub(client, "uma@example.org", armored, **bearer(issuer.token("uma@example.org")))
    response = client.post(
        "/test/welcome",
        {"email": "uma@example.org", "pubkey": armored.decode()},
        content_type="application/json",
    )
    assert response.json() == {"sent": True}
    assert "BEGIN PGP MESSAGE" in mailoutbox[-1].body


def test_welcome_message_to_a_key_that_cannot_encrypt_is_a_400(client, issuer, gpg_factory):
    gpg = gpg_factory()
    fpr = gpg.generate("Sign Only <signer@example.org>", "ed25519")
    armored = gpg.run("--export", "--armor", fpr).stdout
    response = client.post(
        "/welcome-message",
        {"email": "signer@example.org", "pubkey": armored.decode()},
        content_type="application/json",
        **bearer(issuer.token("signer@example.org")),
    )
    assert response.status_code == 400
    assert "encryption" in response.json()["error"]["message"]


@pytest.mark.parametrize("body", ['{"email": "uma@example.org"}', '{"pubkey": "x"}', "not json", '["list"]'])
def test_welcome_message_bad_bodies_are_400s(client, body):
    response = client.post("/welcome-message", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_legacy_submit_and_lookup(client, user, mailoutbox):
    _gpg, fpr, armored = user
    saved = client.post(
        "/initial/legacy_submit",
        {"email": "uma@example.org", "pubkey": armored.decode()},
        content_type="application/json",
    )
    assert saved.json() == {"saved": True}
    link = "/verify/" + mailoutbox[-1].body.split("/verify/", 1)[1].split()[0]
    client.post(link)
    results = client.post(
        "/lookup/email",
        {"email": ["uma@example.org", "nobody@example.org", "bad"]},
        content_type="application/json",
    ).json()["results"]
    assert results[0]["email"] == "uma@example.org" and results[0]["longid"] == fpr[-16:]
    assert results[0]["validation"] == "email_confirmed"
    assert fingerprints(results[0]["pubkey"]) == [fpr]
    assert results[1] == {"email": "nobody@example.org", "pubkey": None, "longid": None, "validation": None}
    assert results[2]["pubkey"] is None


def test_cors_preflight_allows_the_attester_headers(client):
    response = client.options("/pub/uma@example.org", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert response.status_code == 204
    allowed = response["Access-Control-Allow-Headers"]
    for header in ["Authorization", "api-version", "Content-Type"]:
        assert header in allowed
    assert response["Access-Control-Allow-Origin"] == "*"


class JwksServer:
    """A JWKS endpoint that misbehaves: `mode` "drip" sends one byte a second,
    "404" answers not found. Counts the requests it gets."""

    def __init__(self, mode: str) -> None:
        self.requests = 0
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self.requests += 1
                if mode == "404":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(60):
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(1)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode", ["drip", "404"])
def test_a_dripping_or_404ing_jwks_is_a_401_and_is_not_asked_again_at_once(client, settings, user, mode):
    jwks = JwksServer(mode)
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.OIDC_JWKS_TIMEOUT = 2.0
    settings.OIDC_ISSUERS = [{"issuer": ISSUER, "jwks_url": jwks.url, "audiences": [AUDIENCE]}]
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "email": "uma@example.org", "exp": int(time.time()) + 60},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    try:
        started = time.monotonic()
        first = post_pub(client, "uma@example.org", user[2], **bearer(token))
        took = time.monotonic() - started
        again = [post_pub(client, "uma@example.org", user[2], **bearer(token)) for _ in range(5)]
    finally:
        jwks.close()
    assert first.status_code == 401, first.content
    assert "could not be fetched" in first.json()["error"]["message"]
    assert took < 4  # the outbound helper's total deadline, not the drip's minute
    assert [r.status_code for r in again] == [401] * 5
    assert "try again in a minute" in again[0].json()["error"]["message"]
    assert jwks.requests == 1
    assert not Key.objects.exists()


def test_unknown_key_ids_fetch_the_jwks_at_most_once_a_minute(client, issuer, user, settings):
    settings.OIDC_RATE_PER_CLIENT = "1000/60"
    _gpg, _fpr, armored = user
    assert (
        post_pub(client, "uma@example.org", armored, **bearer(issuer.token("uma@example.org"))).status_code
        == 200
    )
    assert issuer.requests == 1
    statuses = []
    for n in range(30):
        forged = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "email": "uma@example.org", "exp": int(time.time()) + 60},
            issuer.key,
            algorithm="RS256",
            headers={"kid": f"unknown-{n}"},
        )
        statuses.append(post_pub(client, "uma@example.org", armored, **bearer(forged)).status_code)
    assert statuses == [401] * 30
    # The first fetch's minute has not passed: not one more request reached the issuer.
    assert issuer.requests == 1
    # A minute later an unknown kid may fetch once (the issuer may have rotated).
    from django.core.cache import cache

    cache.delete(f"jwks-fetched:{ISSUER}")
    for n in range(5):
        forged = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "email": "uma@example.org", "exp": int(time.time()) + 60},
            issuer.key,
            algorithm="RS256",
            headers={"kid": f"later-{n}"},
        )
        assert post_pub(client, "uma@example.org", armored, **bearer(forged)).status_code == 401
    assert issuer.requests == 2


def test_token_verifications_are_bounded_per_client(client, issuer, user, settings):
    settings.OIDC_RATE_PER_CLIENT = "3/60"
    settings.RATE_UPLOAD_PER_CLIENT = "1000/60"
    _gpg, _fpr, armored = user
    token = issuer.token("uma@example.org")
    statuses = [post_pub(client, "uma@example.org", armored, **bearer(token)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    other = post_pub(client, "uma@example.org", armored, REMOTE_ADDR="192.0.2.9", **bearer(token))
    assert other.status_code == 200
