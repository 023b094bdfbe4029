"""Benchmarks of the hot paths, printed as a table: `make bench`.

Uses PostgreSQL (BENCH_DATABASE_URL, default the local server, database
keyserver_bench, recreated). Measures:

- import: parse, verify, merge and store real certificates (pysequoia made);
- lookups through the full Django stack (HKP get and index by address and by
  fingerprint, VKS by key id) with N published keys in the store;
- hostile inputs from tests/fixtures: time and peak memory to refuse them.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keyserver_bench"
)
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ["DJANGO_SETTINGS_MODULE"] = "attester.settings"
warnings.simplefilter("ignore", DeprecationWarning)

N_KEYS = int(os.environ.get("BENCH_KEYS", "1000"))
N_LOOKUPS = int(os.environ.get("BENCH_LOOKUPS", "500"))


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[int(len(ordered) * 0.95) - 1] * 1000,
        ordered[-1] * 1000,
    )


def main() -> None:
    from benchdb import fresh_database

    fresh_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    import pysequoia

    from keys import openpgp
    from keys.models import Binding, Key
    from keys.services import imports, publication

    rows: list[tuple[str, int, str, str, str]] = []

    certs = [bytes(pysequoia.Cert.generate(f"User {i} <user{i}@bench.example>")) for i in range(N_KEYS)]
    times = []
    for data in certs:
        started = time.perf_counter()
        imports.import_keys(data, actor="bench")
        times.append(time.perf_counter() - started)
    rows.append(("import new key (parse, verify, store)", len(times), *fmt(times)))

    times = []
    for data in certs[:200]:
        started = time.perf_counter()
        imports.import_keys(data, actor="bench")
        times.append(time.perf_counter() - started)
    rows.append(("re-upload (merge, unchanged)", len(times), *fmt(times)))

    for key in Key.objects.all():
        for binding in key.bindings.all():
            publication.publish(key, binding, Binding.Validation.EMAIL_CONFIRMED, actor="bench")
    keys = list(Key.objects.values_list("fingerprint", "key_id"))
    client = Client()
    lookups = {
        "HKP get by address": lambda i: f"/pks/lookup?op=get&options=mr&search=user{i}@bench.example",
        "HKP index by address": lambda i: f"/pks/lookup?op=index&options=mr&search=user{i}@bench.example",
        "HKP get by fingerprint": lambda i: f"/pks/lookup?op=get&options=mr&search=0x{keys[i][0]}",
        "VKS by key id": lambda i: f"/vks/v1/by-keyid/{keys[i][1]}",
        "HKP get, unknown address (404)": lambda i: f"/pks/lookup?op=get&search=nobody{i}@bench.example",
    }
    for name, make in lookups.items():
        times = []
        for n in range(N_LOOKUPS):
            path = make(n % len(keys))
            started = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - started)
            assert response.status_code in (200, 404), (path, response.status_code)
        rows.append((f"{name} ({len(keys)} keys stored)", len(times), *fmt(times)))

    fixtures = ROOT / "tests" / "fixtures"
    for name in [
        "sigs_flood.pgp",
        "thirdparty_flood.pgp",
        "uids_10k.pgp",
        "zip_bomb.pgp",
        "dave_certified.asc",
    ]:
        data = (fixtures / name).read_bytes()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            openpgp.parse(data)
            outcome = "accepted"
        except Exception as exc:
            outcome = f"refused: {str(exc)[:40]}"
        elapsed = time.perf_counter() - started
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        rows.append(
            (f"{name} ({len(data) // 1024} KiB) {outcome}", 1, f"{elapsed * 1000:.1f}", "", f"+{grown} MB")
        )

    print(f"\n{'case':<72} {'n':>5} {'median ms':>10} {'p95 ms':>9} {'max ms':>9}")
    print("-" * 109)
    for row in rows:
        print(f"{row[0]:<72} {row[1]:>5} {row[2]:>10} {row[3]:>9} {row[4]:>9}")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


def fmt(samples: list[float]) -> tuple[str, str, str]:
    median, p95, worst = percentiles(samples)
    return f"{median:.2f}", f"{p95:.2f}", f"{worst:.2f}"


if __name__ == "__main__":
    main()
