"""Production settings: `check --deploy` clean, the project's own checks,
the Content-Security-Policy and the pages it must not break, the Celery
queues, and /readyz's report of the workers and of beat."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attester.celery import app
from keys import heartbeat
from keys.checks import check_settings, public_site
from keys.models import Key

from .keyserver import Keyserver
from .stack import OwnRedis, wait_for

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "production-" + "Zq9-xK3p" * 8,
    "SITE_URL": "https://keys.example.org",
    "EMAIL_URL": "smtp+tls://user:password@mail.example.org:587",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def _check_deploy(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "CSP_"))}
    environment.update(
        {"DJANGO_SETTINGS_MODULE": "attester.settings", "ENV_FILE": str(tmp_path / "none.env")}
    )
    environment["VAR_DIR"] = str(tmp_path)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    done = _check_deploy(tmp_path, **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_names_what_production_lacks(tmp_path):
    lacking = {k: v for k, v in PRODUCTION.items() if not k.startswith("SECURE_")}
    done = _check_deploy(tmp_path, **lacking)
    assert done.returncode != 0
    for check in ("security.W004", "security.W008"):  # HSTS, the redirect to HTTPS
        assert check in done.stderr, done.stderr


# -- The project's own checks ----------------------------------------------------


def _ids(settings) -> set[str]:
    return {str(w.id) for w in check_settings(None)}


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://keys.example.org", True),
        ("http://203.0.113.7:8000", True),
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://[::1]:8000", False),
        ("http://testserver", False),
    ],
)
def test_a_public_site_is_one_outside_this_machine(url, public):
    assert public_site(url) is public


def test_debug_on_a_public_site_is_warned_about(settings):
    settings.DEBUG, settings.SITE_URL = True, "https://keys.example.org"
    assert "keys.W003" in _ids(settings)
    settings.SITE_URL = "http://127.0.0.1:8000"
    assert "keys.W003" not in _ids(settings)
    settings.DEBUG, settings.SITE_URL = False, "https://keys.example.org"
    assert "keys.W003" not in _ids(settings)


def test_mail_to_files_in_production_is_warned_about(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.DEBUG, settings.SITE_URL = False, "https://keys.example.org"
    assert "keys.W002" in _ids(settings)
    settings.SITE_URL = "http://127.0.0.1:8000"  # make run
    assert "keys.W002" not in _ids(settings)
    settings.SITE_URL = "https://keys.example.org"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "keys.W002" not in _ids(settings)


def test_sqlite_with_several_writers_is_warned_about(settings, monkeypatch):
    default = settings.DATABASES["default"]
    settings.CELERY_TASK_ALWAYS_EAGER, settings.WEB_CONCURRENCY = True, 1
    assert "keys.W004" not in _ids(settings)  # PostgreSQL
    monkeypatch.setitem(default, "ENGINE", "django.db.backends.sqlite3")  # restored after the test
    assert "keys.W004" not in _ids(settings)  # make run: one process
    settings.WEB_CONCURRENCY = 4
    assert "keys.W004" in _ids(settings)
    settings.WEB_CONCURRENCY, settings.CELERY_TASK_ALWAYS_EAGER = 1, False  # a Celery worker beside it
    assert "keys.W004" in _ids(settings)


def test_the_checks_are_registered():
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "attester.settings", "DEBUG": "true",
             "SITE_URL": "https://keys.example.org"},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert "keys.W003" in done.stderr + done.stdout


# -- Content-Security-Policy ------------------------------------------------------

INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    re.compile(r"<style\b", re.I),
    re.compile(r"\sstyle=", re.I),
    re.compile(r"\son[a-z]+=", re.I),
    re.compile(r"javascript:", re.I),
]


def _csp(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


@pytest.mark.django_db(transaction=True)
def test_pages_carry_a_policy_they_keep(client, admin_client, cast, mailoutbox):
    ks = Keyserver(client, mailoutbox)
    ks.publish(cast.alice.data, "alice@example.org")
    key_pk = Key.objects.get().pk
    pages = {
        client: ["/", "/upload", "/manage", "/fingerprint", "/about/api", "/about/privacy",
                 "/search?q=alice@example.org", f"/search?q={cast.alice.fingerprint}",
                 "/pks/lookup?op=index&search=alice@example.org", "/admin/login/"],
        admin_client: ["/admin/", "/admin/keys/key/", f"/admin/keys/key/{key_pk}/change/",
                       "/admin/keys/binding/", "/admin/keys/outboxmail/", "/admin/federation/source/add/"],
    }  # fmt: skip
    for who, paths in pages.items():
        for path in paths:
            response = who.get(path)
            assert response.status_code == 200, path
            policy = _csp(response)
            assert policy["script-src"] == "script-src 'self'", path
            assert policy["style-src"] == "style-src 'self'", path
            assert "unsafe-inline" not in response["Content-Security-Policy"]
            assert policy["frame-ancestors"] == "frame-ancestors 'none'"
            html = response.content.decode()
            for pattern in INLINE:
                assert not pattern.search(html), (path, pattern.pattern, pattern.search(html))


@pytest.mark.django_db
def test_protocol_answers_carry_no_policy_the_front_server_would_lack(client):
    for path in (
        "/pks/lookup?op=get&search=nobody@example.org",
        "/vks/v1/by-email/nobody@example.org",
        "/healthz",
        "/readyz",
    ):
        assert "Content-Security-Policy" not in client.get(path), path
    # HKP's index for people is a page: test_pages_carry_a_policy_they_keep checks it has one.


def test_the_policy_can_be_report_only_from_the_environment(tmp_path):
    script = "import django; django.setup(); from django.conf import settings; print(settings.CONTENT_SECURITY_POLICY_REPORT_ONLY['DIRECTIVES']['report-uri'], settings.CONTENT_SECURITY_POLICY)"  # noqa: E501
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "attester.settings", "CSP_REPORT_ONLY": "true",
           "CSP_REPORT_URI": "https://reports.example.org/csp", "VAR_DIR": str(tmp_path)}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["https://reports.example.org/csp", "None"], out.stderr


# -- Celery queues --------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("keys.tasks.deliver_mail", "mail"),
        ("keys.tasks.sweep_outbox", "mail"),
        ("keys.tasks.send_verification_mail", "mail"),
        ("keys.tasks.send_manage_mail", "mail"),
        ("federation.tasks.refresh_due_task", "refresh"),
        ("federation.tasks.refresh_key_task", "refresh"),
        ("keys.tasks.housekeeping_task", "housekeeping"),
    ],
)
def test_each_task_goes_to_its_queue(task, queue):
    app.loader.import_default_modules()
    assert task in app.tasks
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_a_worker_without_q_consumes_every_queue_and_the_one_of_older_versions():
    assert set(app.amqp.queues) == {"mail", "refresh", "housekeeping", "celery"}


def test_beat_sends_a_heartbeat_to_each_queue():
    schedule = app.conf.beat_schedule
    for queue in ("mail", "refresh", "housekeeping"):
        entry = schedule[f"heartbeat-{queue}"]
        assert entry["options"]["queue"] == queue and entry["args"] == (queue,)
        assert app.amqp.router.route(entry["options"], entry["task"])["queue"].name == queue


# -- /readyz: workers and beat -------------------------------------------------


def test_heartbeats_older_than_a_minute_are_not_an_answer():
    now = time.time()
    heartbeat.worker_answered("mail")
    assert heartbeat.status(("mail", "refresh"), now=now)["worker_answered"] is True
    seen = heartbeat.status(("mail", "refresh"), now=now + 61)
    assert seen["worker_answered"] is False and seen["queues"]["mail"]["last"] is not None
    assert heartbeat.status(("refresh",), now=now)["worker_answered"] is False
    assert heartbeat.status(("mail",), now=now)["beat_recent"] is False
    heartbeat.beat_ran()
    assert heartbeat.status(("mail",), now=now + 1)["beat_recent"] is True


@pytest.mark.django_db
def test_readyz_reports_a_real_worker_on_its_queue_and_beat(client, settings, tmp_path):
    """A Celery worker (consuming only the mail queue) with its embedded beat,
    on a Redis broker of its own, writing to the cache this process reads."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    before = client.get("/readyz").json()
    assert before["ready"] is True
    assert before["celery"]["worker_answered"] is False and before["celery"]["beat_last_ran"] is None
    assert set(before["degraded"]) >= {"worker", "beat"}

    broker = OwnRedis()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "attester.settings",
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",  # the worker reads no table here
            "REDIS_URL": settings.CACHES["default"]["LOCATION"],
            "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
            "CELERY_BROKER_URL": broker.url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_HEARTBEAT_SECONDS": "1",
            "OUTBOX_SWEEP_SECONDS": "3600",
            "REFRESH_TICK_SECONDS": "3600",
        }
    )
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "attester", "worker", "--pool=solo", "-Q", "mail",
         "-B", "-s", str(tmp_path / "beat-schedule"), "--without-mingle", "--without-gossip", "-l", "info"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        answers = []

        def answered() -> bool:
            # The answer that shows both is the one judged (another test run on
            # the shared Redis may flush it between two requests).
            answers.append(client.get("/readyz").json())
            return bool(answers[-1]["celery"]["worker_answered"] and answers[-1]["celery"]["beat_recent"])

        wait_for(answered, 90, "a heartbeat and beat")
        ready = answers[-1]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        broker.remove()
        log.close()
    celery = ready["celery"]
    assert celery["queues"]["mail"]["answered"] is True
    # Nothing consumes refresh and housekeeping: their heartbeats wait (and expire).
    assert celery["queues"]["refresh"]["answered"] is False
    assert celery["queues"]["housekeeping"]["answered"] is False
    assert celery["beat_last_ran"] is not None and celery["beat_recent"] is True
    assert "worker" not in ready.get("degraded", {}) and "beat" not in ready.get("degraded", {})
    assert ready["ready"] is True


def test_without_a_broker_readyz_reports_no_celery(client, db):
    assert "celery" not in client.get("/readyz").json()
