"""A second instance of this server in a subprocess (SQLite, mail to files).

Used as the embedded-default smoke test and as a real upstream (HKP and VKS)
for the federation tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "EMAIL_URL",
    "PUBLISH_DIR",
}


class Instance:
    def __init__(self, var: Path, **extra_env: str) -> None:
        self.var = var
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "attester.settings",
                "VAR_DIR": str(var),
                "PORT": str(self.port),
                "SITE_URL": self.url,
                **extra_env,
            }
        )
        for args in (["migrate", "--noinput"], ["createcachetable"]):
            subprocess.run(
                [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True
            )
        self.log = open(var / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runkeyserver"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(150):
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError((var / "server.log").read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()

    def mails(self) -> list[str]:
        return [p.read_text() for p in sorted((self.var / "mail").glob("*.log"))]

    def confirm_latest(self, address: str) -> None:
        text = next(m for m in reversed(self.mails()) if f"To: {address}" in m)
        link = re.search(r"http://127\.0\.0\.1:\d+/verify/[A-Za-z0-9_-]+", text)
        assert link
        session = requests.Session()
        page = session.get(link.group(0), timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf
        done = session.post(link.group(0), data={"csrfmiddlewaretoken": csrf.group(1)}, timeout=10)
        assert done.status_code == 200, done.text

    def publish(self, armored: str, *addresses: str) -> str:
        upload = requests.post(f"{self.url}/vks/v1/upload", json={"keytext": armored}, timeout=10).json()
        requests.post(
            f"{self.url}/vks/v1/request-verify",
            json={"token": upload["token"], "addresses": list(addresses)},
            timeout=10,
        )
        for address in addresses:
            self.confirm_latest(address)
        return upload["key_fpr"]
