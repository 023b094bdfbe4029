"""Metrics, logs and request ids, on the production stack of tests/stack.py
(gunicorn with two workers, a Celery worker, JSON logs at DEBUG), and the
parts that need no stack (allow-list, op=stats, Sentry) in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from . import upstreams
from .certs import public_key
from .signed_mail import mail_text
from .stack import ROOT, Stack, wait_for


def samples(stack: Stack) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by name and sorted labels."""
    text = requests.get(f"{stack.url}/metrics", timeout=10).text
    found: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def upstream_key() -> str:
    return public_key("far@example.net")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, upstream_key) -> Iterator[Stack]:
    peer = upstreams.RawServer(upstreams.answer(200, upstream_key.encode(), "application/pgp-keys"))
    running = Stack(
        tmp_path_factory.mktemp("observed"),
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        STATS_SECONDS="1",
        RATE_UPLOAD_PER_CLIENT="20/3600",
        FEDERATION_SOURCES=json.dumps([{"name": "peer", "kind": "hkp", "url": peer.url}]),
    )
    yield running
    running.close()
    peer.close()


def confirm(stack: Stack, address: str) -> requests.Response:
    link = stack.smtp.link(address)
    session = requests.Session()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(link, timeout=10).text)
    assert token
    return session.post(link, data={"csrfmiddlewaretoken": token.group(1)}, timeout=10)


def test_metrics_follow_an_upload_confirm_lookup_miss_and_refresh(stack):
    before = samples(stack)
    address = "metric@example.org"
    asked = stack.upload_and_request(public_key(address), address)
    assert asked.status_code == 200
    wait_for(lambda: stack.smtp.to(address), 30, "the confirmation mail")
    assert confirm(stack, address).status_code == 200
    for _ in range(6):  # two workers: some of these land on each
        assert requests.get(f"{stack.url}/pks/lookup?op=get&search={address}", timeout=10).status_code == 200
    assert requests.get(f"{stack.url}/vks/v1/by-email/nobody@example.org", timeout=10).status_code == 404
    fetched = requests.get(f"{stack.url}/pks/lookup?op=get&search=far@example.net", timeout=10)
    assert fetched.status_code == 200
    fingerprint = stack.query("SELECT fingerprint FROM keys_key WHERE origin <> 'upload'")[0][0]
    stack.manage("refresh_keys", "--fingerprint", fingerprint)
    wait_for(
        lambda: delta(before, samples(stack), "keyserver_mails_total", event="sent", kind="verify") >= 1,
        30,
        "mail",
    )
    after = samples(stack)

    assert delta(before, after, "keyserver_uploads_total", outcome="accepted") == 1
    assert delta(before, after, "keyserver_mails_total", event="queued", kind="verify") == 1
    assert delta(before, after, "keyserver_mails_total", event="sent", kind="verify") == 1  # from the worker
    assert delta(before, after, "keyserver_confirmations_total") == 1
    assert delta(before, after, "keyserver_lookups_total", path="hkp", outcome="hit") == 7
    assert delta(before, after, "keyserver_lookups_total", path="vks", outcome="miss") == 1
    assert delta(before, after, "keyserver_http_requests_total", route="hkp-lookup", status="200") == 7
    assert delta(before, after, "keyserver_http_request_duration_seconds_count", route="hkp-lookup") == 7
    assert delta(before, after, "keyserver_upstream_requests_total", source="peer", outcome="ok") >= 2
    assert delta(before, after, "keyserver_upstream_request_duration_seconds_count", source="peer") >= 2
    assert delta(before, after, "keyserver_refreshes_total", outcome="unchanged") == 1
    assert value(after, "keyserver_upstream_breaker_open", source="peer") == 0
    wait_for(lambda: value(samples(stack), "keyserver_published_addresses") >= 1, 10, "the store gauges")
    assert value(samples(stack), "keyserver_keys") >= 2
    assert value(after, "keyserver_outbox_queued") == 0


def test_every_log_line_is_json_with_the_request_id_and_holds_no_secret(stack):
    address = "logged@example.org"
    armored = public_key(address)
    upload = requests.post(
        f"{stack.url}/vks/v1/upload",
        json={"keytext": armored},
        headers={"X-Request-ID": "trace-0001-upload"},
        timeout=10,
    )
    assert upload.headers["X-Request-ID"] == "trace-0001-upload"
    token = upload.json()["token"]
    asked = requests.post(
        f"{stack.url}/vks/v1/request-verify",
        json={"token": token, "addresses": [address]},
        headers={"X-Request-ID": "trace-0002-verify"},
        timeout=10,
    )
    assert asked.status_code == 200
    wait_for(lambda: stack.smtp.to(address), 30, "the mail")
    link = stack.smtp.link(address)
    requests.get(link.replace("/verify/", "/verify/x"), timeout=10)  # a bad link: logged as a 4xx
    assert confirm(stack, address).status_code == 200
    mail_body = mail_text(stack.smtp.to(address)[-1])
    wait_for(lambda: "trace-0002-verify" in stack.logs(), 10, "the worker's lines")

    lines = [line for line in stack.logs().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("request_id") == "trace-0001-upload" for r in records)
    # The worker's delivery carries its task id and the id of the request that queued it.
    assert any(r.get("task_id") and r.get("request_id") == "trace-0002-verify" for r in records)
    text = stack.logs()
    secrets = {
        "upload token": token,
        "verify token": link.rsplit("/", 1)[1],
        "key": max(armored.splitlines(), key=len),
        "mail body": next(line for line in mail_body.splitlines() if len(line) > 30),
        "secret key setting": stack.env["SECRET_KEY"],
    }
    leaked = [name for name, secret in secrets.items() if secret in text]
    assert not leaked, leaked


def test_a_request_id_that_does_not_look_like_one_is_replaced(stack):
    answer = requests.get(f"{stack.url}/healthz", headers={"X-Request-ID": "bad id\twith tab"}, timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])


# Last of the stack's tests: it spends this client's upload limit.
def test_rate_limit_refusals_are_counted_by_limit(stack):
    before = samples(stack)
    statuses = [
        requests.post(f"{stack.url}/pks/add", data={"keytext": "garbage"}, timeout=10).status_code
        for _ in range(25)
    ]
    refused = statuses.count(429)
    assert refused >= 5 and set(statuses) == {400, 429}
    after = samples(stack)
    assert delta(before, after, "keyserver_rate_limited_total", limit="upload-ip") == refused
    assert delta(before, after, "keyserver_uploads_refused_total", reason="InvalidKey") == statuses.count(400)


# -- in-process ------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_answer_only_the_allowed_networks(client, settings):
    assert client.get("/metrics").status_code == 200
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    refused = client.get("/metrics")
    assert refused.status_code == 403 and b"not available" in refused.content
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


@pytest.mark.django_db
def test_op_stats_counts_the_store_at_most_once_per_interval(client, django_assert_num_queries):
    first = client.get("/pks/lookup?op=stats")
    assert first.status_code == 200 and set(first.json()) == {"keys", "published_addresses"}
    with django_assert_num_queries(0):
        for _ in range(5):
            assert client.get("/pks/lookup?op=stats").json() == first.json()


def test_sentry_gets_errors_without_tokens_or_bodies(tmp_path):
    received: list[bytes] = []

    class Ingest(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://public@127.0.0.1:{server.server_address[1]}/1"
    code = (
        "import django, logging, sentry_sdk; django.setup();"
        "sentry_sdk.capture_exception(ValueError('failed on /verify/AbCdEfGhIjKlMnOpQrSt'));"
        "sentry_sdk.flush(5)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "attester.settings",
        "SENTRY_DSN": dsn,
        "VAR_DIR": str(tmp_path),
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    server.shutdown()
    server.server_close()
    assert received, "no event reached the Sentry endpoint"
    import gzip

    payload = b"".join(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body for body in received)
    assert b"ValueError" in payload
    assert b"AbCdEfGhIjKlMnOpQrSt" not in payload


def test_the_dashboard_and_alerts_name_only_metrics_the_server_exports():
    import yaml
    from prometheus_client import Counter, Histogram

    from keys import metrics

    exported = {"keyserver_keys", "keyserver_published_addresses", "keyserver_outbox_queued"}
    exported |= {"keyserver_outbox_oldest_seconds", "keyserver_upstream_breaker_open"}  # read when scraped
    for metric in vars(metrics).values():
        if isinstance(metric, Counter):
            exported.add(f"{metric._name}_total")
        elif isinstance(metric, Histogram):
            exported |= {f"{metric._name}_bucket", f"{metric._name}_count"}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "keyserver-dashboard.json").read_text())
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "keyserver-alerts.yml").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    named = {m for e in expressions for m in re.findall(r"keyserver_[a-z_]+", e)}
    assert named and named <= exported, named - exported
