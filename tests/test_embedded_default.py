"""The embedded default of `make run` (SQLite, tasks in-process, mail as files).

Starts the real command in a subprocess with a fresh var/ directory and none
of the test suite's PostgreSQL or Redis settings: migrate, upload, confirm,
look up.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "EMAIL_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "attester.settings",
            "VAR_DIR": str(tmp_path),
            "PORT": str(port),
            "SITE_URL": f"http://127.0.0.1:{port}",
        }
    )
    python = sys.executable
    for args in (["migrate", "--noinput"], ["createcachetable"]):
        subprocess.run([python, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [python, "manage.py", "runkeyserver"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail((tmp_path / "server.log").read_text())
        yield base, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_make_run_default_serves_upload_confirm_and_lookup(embedded, cast):
    base, var = embedded
    assert (var / "keyserver.sqlite3").exists()
    upload = requests.post(f"{base}/vks/v1/upload", json={"keytext": cast.bob.text}, timeout=10).json()
    assert upload["status"] == {"bob@example.net": "unpublished"}
    verify = requests.post(
        f"{base}/vks/v1/request-verify",
        json={"token": upload["token"], "addresses": ["bob@example.net"]},
        timeout=10,
    )
    assert verify.json()["status"] == {"bob@example.net": "pending"}
    mails = list((var / "mail").glob("*.log"))
    assert len(mails) == 1
    found_link = re.search(r"http://127\.0\.0\.1:\d+/verify/[A-Za-z0-9_-]+", mails[0].read_text())
    assert found_link
    link = found_link.group(0)
    session = requests.Session()
    page = session.get(link, timeout=10)
    found_csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found_csrf
    csrf = found_csrf.group(1)
    assert session.post(link, data={"csrfmiddlewaretoken": csrf}, timeout=10).status_code == 200
    found = requests.get(f"{base}/pks/lookup", params={"op": "get", "search": "bob@example.net"}, timeout=10)
    assert found.status_code == 200
    assert "BEGIN PGP PUBLIC KEY BLOCK" in found.text
    ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.json() == {"ready": True}
