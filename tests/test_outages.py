"""Faults of the parts the server stands on, with the real parts stopped and
started again: its own PostgreSQL cluster and Redis (never the shared ones),
gunicorn, a Celery worker with beat, an SMTP sink.

What must hold: no mail the server decided to send is lost or sent twice,
Redis is optional on every request path, and a database outage answers 503
in each protocol's format.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests

from .certs import public_key
from .stack import Stack, wait_for

pytestmark = pytest.mark.outage


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("stack"),
        RATE_MAIL_PER_CLIENT="1000/60",
        RATE_UPLOAD_PER_CLIENT="1000/60",
    )
    yield running
    running.close()


def delivered_once(stack: Stack, addresses: list[str]) -> bool:
    return all(len(stack.smtp.to(a)) >= 1 for a in addresses)


def assert_exactly_one_mail_each(stack: Stack, addresses: list[str]) -> None:
    counts = {a: len(stack.smtp.to(a)) for a in addresses}
    assert set(counts.values()) == {1}, counts


def test_with_the_broker_down_uploads_answer_and_the_mails_go_out_when_it_returns(stack):
    addresses = [f"broker{n}@example.org" for n in range(3)]
    stack.redis.stop()
    try:
        for address in addresses:
            answer = stack.upload_and_request(public_key(address), address)
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"][address] == "pending"
        # Asking again for a pending address answers, and queues nothing more.
        again = stack.upload_and_request(public_key(addresses[0]), addresses[0])
        assert again.status_code == 200
        time.sleep(3)
        assert not any(stack.smtp.to(a) for a in addresses)  # nothing can run without the broker
    finally:
        stack.redis.start()
    wait_for(lambda: delivered_once(stack, addresses), 90, "the mails after the broker returned")
    time.sleep(5)  # two more sweeps: nothing is sent twice
    assert_exactly_one_mail_each(stack, addresses)
    assert stack.outbox() == {"sent": 3}  # the second key waits for the address's mail window


def test_a_redis_restart_with_mails_queued_loses_none(stack):
    """docker-compose runs Redis without persistence: a restart empties the
    queue; the outbox still holds every mail and the worker's start sweeps it."""
    addresses = [f"restart{n}@example.org" for n in range(3)]
    stack.stop_worker()
    for address in addresses:
        assert stack.upload_and_request(public_key(address), address).status_code == 200
    stack.redis.stop()
    stack.redis.start()  # the wake-ups are gone with it
    stack.start_worker()
    wait_for(lambda: delivered_once(stack, addresses), 60, "the mails after the restart")
    time.sleep(5)
    assert_exactly_one_mail_each(stack, addresses)


def test_a_postgresql_restart_during_delivery_loses_no_mail_and_sends_none_twice(stack):
    addresses = [f"pgblip{n}@example.org" for n in range(24)]
    stack.stop_worker()
    for start in range(0, len(addresses), 8):
        group = addresses[start : start + 8]
        assert stack.upload_and_request(public_key(*group), *group).status_code == 200
    stack.smtp.delay = 0.25  # a slow relay: the restart falls in the middle of delivery
    try:
        stack.start_worker()
        wait_for(lambda: sum(bool(stack.smtp.to(a)) for a in addresses) >= 4, 60, "the first mails")
        stack.pg.stop()
        time.sleep(2)
        stack.pg.start()
        wait_for(lambda: delivered_once(stack, addresses), 120, "every mail after the restart")
    finally:
        stack.smtp.delay = 0
    time.sleep(5)
    assert_exactly_one_mail_each(stack, addresses)
    wait_for(lambda: stack.outbox().get("queued", 0) == 0, 30, "the outbox to be empty")


def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def test_with_redis_stopped_every_upload_path_and_lookup_answers(stack):
    stack.shell(
        "from keys.models import Source; Source.objects.get_or_create(name='down', defaults="
        "dict(kind='hkp', url='http://127.0.0.1:9', order=10, timeout=1.0))"
    )
    url = stack.url
    stack.redis.stop()
    try:
        browser = requests.Session()
        answers = {
            "hkp add": requests.post(
                f"{url}/pks/add", data={"keytext": public_key("r1@example.org")}, timeout=30
            ),
            "vks upload": requests.post(
                f"{url}/vks/v1/upload", json={"keytext": public_key("r2@example.org")}, timeout=30
            ),
            "upload page": browser.post(
                f"{url}/upload",
                data={
                    "csrfmiddlewaretoken": _csrf(browser, f"{url}/upload"),
                    "keytext": public_key("r3@example.org"),
                },
                timeout=30,
            ),
            "attester pub": requests.post(
                f"{url}/pub/r4@example.org",
                data=public_key("r4@example.org"),
                headers={"Content-Type": "text/plain"},
                timeout=30,
            ),
            "request verify": stack.upload_and_request(public_key("r5@example.org"), "r5@example.org"),
            # Misses ask the configured source (down): the negative cache and
            # the circuit breaker have no Redis either.
            "hkp miss": requests.get(f"{url}/pks/lookup?op=get&search=nobody@example.org", timeout=30),
            "vks miss": requests.get(f"{url}/vks/v1/by-email/nobody@example.org", timeout=30),
            "attester miss": requests.get(f"{url}/pub/nobody@example.org", timeout=30),
            "wkd miss": requests.get(
                f"{url}/.well-known/openpgpkey/example.org/hu/kei1q4tipxxu1yj79k9kfukdhfy631xe", timeout=30
            ),
            "search page": requests.get(f"{url}/search?q=nobody@example.org", timeout=30),
            "stats": requests.get(f"{url}/pks/lookup?op=stats", timeout=30),
        }
        ready = requests.get(f"{url}/readyz", timeout=30)
    finally:
        stack.redis.start()
    statuses = {name: r.status_code for name, r in answers.items()}
    assert all(s < 500 for s in statuses.values()), statuses
    assert {
        statuses[n] for n in ("hkp add", "vks upload", "upload page", "attester pub", "request verify")
    } == {200}
    assert statuses["hkp miss"] == statuses["vks miss"] == 404
    assert answers["request verify"].json()["status"]["r5@example.org"] == "pending"
    assert ready.status_code == 200
    assert "degraded" in ready.text and "redis" in ready.text.lower()
    wait_for(lambda: stack.smtp.to("r5@example.org"), 60, "r5's mail after Redis returned")


def test_with_postgresql_stopped_each_protocol_answers_503_in_its_format(stack):
    url = stack.url
    stack.pg.stop()
    try:
        hkp = requests.get(f"{url}/pks/lookup?op=get&search=someone@example.org", timeout=30)
        hkp_add = requests.post(
            f"{url}/pks/add", data={"keytext": public_key("down1@example.org")}, timeout=30
        )
        vks = requests.get(f"{url}/vks/v1/by-email/someone@example.org", timeout=30)
        vks_upload = requests.post(
            f"{url}/vks/v1/upload", json={"keytext": public_key("down2@example.org")}, timeout=30
        )
        attester = requests.get(f"{url}/pub/someone@example.org", timeout=30)
        page = requests.get(f"{url}/search?q=someone@example.org", timeout=30)
        wkd = requests.get(
            f"{url}/.well-known/openpgpkey/example.org/hu/kei1q4tipxxu1yj79k9kfukdhfy631xe", timeout=30
        )
        ready = requests.get(f"{url}/readyz", timeout=30)
    finally:
        stack.pg.start()
    for answer in (hkp, hkp_add, vks, vks_upload, attester, page, wkd):
        assert answer.status_code == 503, (answer.url, answer.status_code, answer.text[:300])
        assert int(answer.headers["Retry-After"]) > 0
    for answer in (hkp, hkp_add, wkd):
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert "try again" in answer.text.lower()
    assert isinstance(vks.json()["error"], str) and isinstance(vks_upload.json()["error"], str)
    assert attester.json()["error"]["code"] == 503
    assert page.headers["Content-Type"].startswith("text/html") and "<html" in page.text.lower()
    assert ready.status_code == 503
    assert "database" in ready.text
    assert str(stack.pg.port) not in ready.text and "127.0.0.1" not in ready.text  # no connection details
    # Back: the same workers answer again without a restart.
    took = wait_for(
        lambda: (
            requests.get(f"{url}/pks/lookup?op=get&search=someone@example.org", timeout=5).status_code == 404
        ),
        30,
        "lookups after PostgreSQL returned",
    )
    assert took < 30
    assert "Traceback" not in (stack.var / "web.log").read_text(errors="replace")
