"""Restarts under load: `make bench-outage`.

Starts the production stack of its own (tests/stack.py: a PostgreSQL
cluster and a Redis on free ports, gunicorn with 4 workers, a Celery worker
with beat, an SMTP sink), keeps it busy with lookups of a published key and
uploads that ask for confirmation mails, and restarts PostgreSQL, then Redis,
then the worker. Prints per phase: requests, those that failed (5xx or no
answer), the seconds until lookups answered again; and at the end the mails
asked for, delivered, lost and sent twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore", DeprecationWarning)

from tests.certs import public_key  # noqa: E402
from tests.stack import Stack, wait_for  # noqa: E402

DOWN_SECONDS = float(os.environ.get("BENCH_DOWN_SECONDS", "3"))
CALM_SECONDS = float(os.environ.get("BENCH_CALM_SECONDS", "8"))
THREADS = int(os.environ.get("BENCH_THREADS", "6"))


@dataclass
class Phase:
    name: str
    started: float
    outcomes: Counter = field(default_factory=Counter)
    recovered_after: float | None = None


class Load:
    """Threads that look up and upload until stopped, recording each outcome
    in the current phase."""

    def __init__(self, stack: Stack, published: str) -> None:
        self.stack = stack
        self.published = published
        self.phases: list[Phase] = []
        self.requested: list[str] = []  # addresses answered "pending"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.serial = 0

    def phase(self, name: str) -> Phase:
        with self.lock:
            self.phases.append(Phase(name, time.monotonic()))
            return self.phases[-1]

    def record(self, outcome: str) -> None:
        with self.lock:
            self.phases[-1].outcomes[outcome] += 1

    def _lookup(self, session: requests.Session) -> None:
        answer = session.get(f"{self.stack.url}/pks/lookup?op=get&search={self.published}", timeout=10)
        self.record("ok" if answer.status_code == 200 else f"lookup {answer.status_code}")

    def _upload(self, session: requests.Session) -> None:
        with self.lock:
            self.serial += 1
            address = f"load{self.serial}@example.org"
        upload = session.post(
            f"{self.stack.url}/vks/v1/upload", json={"keytext": public_key(address)}, timeout=10
        )
        if upload.status_code != 200:
            self.record(f"upload {upload.status_code}")
            return
        asked = session.post(
            f"{self.stack.url}/vks/v1/request-verify",
            json={"token": upload.json()["token"], "addresses": [address]},
            timeout=10,
        )
        if asked.status_code == 200 and asked.json()["status"].get(address) == "pending":
            with self.lock:
                self.requested.append(address)
            self.record("ok")
        else:
            self.record(f"request-verify {asked.status_code}")

    def run(self, n: int) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                if n % 3 == 0:
                    self._upload(session)
                else:
                    self._lookup(session)
            except requests.RequestException as exc:
                self.record(f"no answer ({exc.__class__.__name__})")
                time.sleep(0.05)


def lookups_answer(stack: Stack, address: str) -> bool:
    return requests.get(f"{stack.url}/pks/lookup?op=get&search={address}", timeout=2).status_code == 200


def publish(stack: Stack, address: str) -> None:
    assert stack.upload_and_request(public_key(address), address).status_code == 200
    wait_for(lambda: stack.smtp.to(address), 30, "the first confirmation mail")
    link = stack.smtp.link(address)
    session = requests.Session()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(link, timeout=10).text)
    assert token
    assert session.post(link, data={"csrfmiddlewaretoken": token.group(1)}, timeout=10).status_code == 200


def restart(load: Load, name: str, stop, start) -> None:
    phase = load.phase(f"{name} restart")
    stop()
    time.sleep(DOWN_SECONDS)
    start()
    back = time.monotonic()
    wait_for(lambda: lookups_answer(load.stack, load.published), 60, f"lookups after {name}")
    phase.recovered_after = time.monotonic() - back
    time.sleep(CALM_SECONDS)


def main() -> None:
    var = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    stack = Stack(var, workers=4, RATE_MAIL_PER_CLIENT="100000/60", RATE_UPLOAD_PER_CLIENT="100000/60")
    try:
        published = "steady@example.org"
        publish(stack, published)
        load = Load(stack, published)
        load.phase("steady")
        threads = [threading.Thread(target=load.run, args=(n,), daemon=True) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(CALM_SECONDS)
        restart(load, "PostgreSQL", stack.pg.stop, stack.pg.start)
        restart(load, "Redis", stack.redis.stop, stack.redis.start)
        restart(load, "worker", stack.stop_worker, stack.start_worker)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=15)
        settled = time.monotonic()
        wanted = list(load.requested)
        with contextlib.suppress(TimeoutError):  # the report counts what is missing
            wait_for(lambda: all(stack.smtp.to(a) for a in wanted), 180, "every mail")
        time.sleep(5)
        report(load, stack, wanted, time.monotonic() - settled)
    finally:
        stack.close()


def report(load: Load, stack: Stack, wanted: list[str], settle: float) -> None:
    print(f"\n{THREADS} client threads, gunicorn -w 4, each part down {DOWN_SECONDS:g} s\n")
    print("| phase | requests | failed | failures | lookups back after |")
    print("|---|---:|---:|---|---:|")
    for phase in load.phases:
        total = sum(phase.outcomes.values())
        failed = total - phase.outcomes["ok"]
        kinds = ", ".join(f"{k}: {v}" for k, v in phase.outcomes.items() if k != "ok") or "-"
        back = f"{phase.recovered_after:.2f} s" if phase.recovered_after is not None else "-"
        print(f"| {phase.name} | {total} | {failed} | {kinds} | {back} |")
    counts = Counter(len(stack.smtp.to(a)) for a in wanted)
    delivered = sum(n for c, n in counts.items() if c >= 1)
    print(
        f"\nmails asked for: {len(wanted)}, delivered: {delivered}, lost: {counts.get(0, 0)}, "
        f"sent twice: {sum(n for c, n in counts.items() if c > 1)}, "
        f"all out {settle:.1f} s after the load stopped; outbox: {stack.outbox()}"
    )


if __name__ == "__main__":
    main()
