"""Persistent database connections against a new one per request.

`make bench-connections`: a PostgreSQL cluster of its own, gunicorn (sync
workers) on it with CONN_MAX_AGE=0 (Django opens and closes a connection
for every request) and then CONN_MAX_AGE=60 (each worker keeps its
connection), and client threads fetching a stored key by fingerprint over
VKS. It reports requests per second and the CPU per request of gunicorn and
of PostgreSQL (the postmaster forks a backend for each new connection; the
CPU of backends that exited is counted through the postmaster's cutime).

Django's psycopg pool (DB_POOL=2: OPTIONS "pool", 2 connections per
process) is measured third.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.certs import public_key  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.stack import OwnPostgres, wait_for  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / TICK


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return found


def _tree_cpu(pid: int) -> float:
    """The process, its live children, and its reaped children."""
    total = _cpu(pid, children=True)
    for child in _descendants(pid):
        with contextlib.suppress(OSError):  # it exited meanwhile
            total += _cpu(child)
    return total


def _postmaster(pg: OwnPostgres) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def _load(url: str) -> int:
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.get(url, timeout=30).raise_for_status()
                with lock:
                    done[0] += 1

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0]


def measure(
    pg: OwnPostgres, env: dict[str, str], fingerprint: str, label: str, **extra: str
) -> dict[str, float]:
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "attester.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(WORKERS)],
        cwd=ROOT, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/vks/v1/by-fingerprint/{fingerprint}"
    try:
        wait_for(lambda: requests.get(url, timeout=2).ok, 30, "gunicorn")
        for _ in range(50):  # warm up every worker
            requests.get(url, timeout=5)
        web_before, pg_before = _tree_cpu(web.pid), _tree_cpu(_postmaster(pg))
        started = time.monotonic()
        requests_done = _load(url)
        elapsed = time.monotonic() - started
        web_cpu, pg_cpu = _tree_cpu(web.pid) - web_before, _tree_cpu(_postmaster(pg)) - pg_before
    finally:
        web.terminate()
        web.wait(timeout=30)
    result = {
        "requests/s": requests_done / elapsed,
        "web ms CPU/request": 1000 * web_cpu / requests_done,
        "PostgreSQL ms CPU/request": 1000 * pg_cpu / requests_done,
    }
    print(label, "  ".join(f"{k}: {v:.2f}" for k, v in result.items()), flush=True)
    return result


def main() -> None:
    pg = OwnPostgres()
    var = Path(tempfile.mkdtemp(prefix="ks-bench-conn-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "REDIS"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "attester.settings",
            "VAR_DIR": str(var),
            "DATABASE_URL": pg.url,
            "SECRET_KEY": "bench-" + "x" * 50,
            "PUBLISH_DIR": "",
        }
    )
    try:
        for command in (["migrate", "--noinput"], ["createcachetable"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                           capture_output=True)  # fmt: skip
        port = free_port()
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "attester.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, 30, "gunicorn")
            answer = requests.post(
                f"http://127.0.0.1:{port}/vks/v1/upload",
                json={"keytext": public_key("bench@example.org")},
                timeout=30,
            )
            fingerprint = answer.json()["key_fpr"]
        finally:
            web.terminate()
            web.wait(timeout=30)
        print(f"{THREADS} client threads, gunicorn -w {WORKERS}, {SECONDS:.0f} s each", flush=True)
        measure(pg, env, fingerprint, "CONN_MAX_AGE=0 ", CONN_MAX_AGE="0")
        measure(pg, env, fingerprint, "CONN_MAX_AGE=60", CONN_MAX_AGE="60")
        if importlib.util.find_spec("psycopg_pool") is None:
            print("psycopg pool: not measured (the psycopg-pool package is not installed)")
        else:
            measure(pg, env, fingerprint, "DB_POOL=2      ", DB_POOL="2")
    finally:
        pg.remove()
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
