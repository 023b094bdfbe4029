"""Lookup latency at 10,000 and at 1,000,000 keys: `make bench-scale`.

Synthetic rows (generate_series, not real certificates: shape, not content,
is what the plans depend on) in PostgreSQL (BENCH_DATABASE_URL, default
keyserver_bench_scale, recreated): one subkey and one published address per
key. Times the application's own statements for a lookup by fingerprint, by
key id, by address and by WKD hash (keys/rows.py),
at 10,000 keys and again after growing the tables to 1,000,000, and prints
the plans. Each lookup runs twice: "first" reads pages no earlier lookup
touched (from the OS cache when they are not in shared_buffers), "again"
reads them from shared_buffers: the plan's own cost.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keyserver_bench_scale"
)
os.environ["DJANGO_SETTINGS_MODULE"] = "attester.settings"
os.environ.setdefault("PUBLISH_DIR", "")
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "10000,1000000").split(",")]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2000"))

from benchdb import fresh_database  # noqa: E402

INSERT = """
INSERT INTO keys_key (id, fingerprint, version, key_id, algorithm, algorithm_id, bits, created, expires,
    revoked, blocked, data, published, published_armor, published_user_ids, fallback, fallback_armor,
    fallback_user_ids, origin, first_seen, updated, refresh_failures, last_refresh_result)
SELECT i, upper(md5('k' || i) || substr(md5('f' || i), 1, 8)), 4, upper(substr(md5('f' || i), 1, 8) || substr(md5('k' || i), 25, 8)),
    'EdDSA Ed25519', 22, 255, now() - (i %% 3650) * interval '1 day', NULL, false, false,
    '\\x00'::bytea, decode(repeat('ab', 300), 'hex'), repeat('A', 900), jsonb_build_array('User <user' || i || '@scale.example>'),
    ''::bytea, '', '[]'::jsonb, 'upload', now(), now(), 0, ''
FROM generate_series(%s, %s) AS i;
INSERT INTO keys_subkey (primary_id, fingerprint, key_id)
SELECT i, upper(md5('s' || i) || substr(md5('t' || i), 1, 8)), upper(substr(md5('t' || i), 1, 8) || substr(md5('s' || i), 25, 8))
FROM generate_series(%s, %s) AS i;
INSERT INTO keys_binding (key_id, address, domain, wkd_hash, state, validation, certificate, created, updated)
SELECT i, 'user' || i || '@scale.example', 'scale.example', substr(md5('w' || i) || md5('x' || i), 1, 32),
    'published', 'email_confirmed', decode(repeat('cd', 300), 'hex'), now(), now()
FROM generate_series(%s, %s) AS i;
"""


def grow(cursor, start: int, end: int) -> None:
    for statement in INSERT.strip().split(";\n"):
        cursor.execute(statement.rstrip(";"), [start, end])
    cursor.execute("ANALYZE keys_key; ANALYZE keys_subkey; ANALYZE keys_binding")


def measure(size: int) -> dict[str, tuple[float, float, float, float]]:
    from django.db import connection

    from keys import rows

    random.seed(size)
    picks = [random.randint(1, size) for _ in range(ROUNDS)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, fingerprint, key_id FROM keys_key WHERE id = ANY(%s)", [list(set(picks))])
        known = {i: (f, k) for i, f, k in cursor.fetchall()}
        cursor.execute("SELECT key_id, wkd_hash FROM keys_binding WHERE key_id = ANY(%s)", [list(set(picks))])
        hashes = dict(cursor.fetchall())
    cases = {
        "by fingerprint": lambda i: rows.by_fingerprint(known[i][0]),
        "by key id": lambda i: rows.by_keyid(known[i][1]),
        "by address": lambda i: rows.by_address(f"user{i}@scale.example", ("published", "cached")),
        "by WKD hash": lambda i: rows.wkd("scale.example", hashes[i]),
    }
    result = {}
    for name, run in cases.items():
        for i in picks[:50]:  # the statement prepared
            run(i)
        first = _timed(run, picks[50:])  # pages read for the first time by this lookup
        again = _timed(run, picks[50:])  # the same lookups once their pages are in memory
        result[name] = (*first, *again)
    return result


def _timed(run, picks: list[int]) -> tuple[float, float]:
    times = []
    for i in picks:
        started = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.95)] * 1e3


def plans(size: int) -> None:
    from django.db import connection

    from keys import clock, rows

    now = clock.now()
    i = size // 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT fingerprint, key_id FROM keys_key WHERE id = %s", [i])
        fpr, keyid = cursor.fetchone()
        cursor.execute("SELECT wkd_hash FROM keys_binding WHERE key_id = %s", [i])
        (hashed,) = cursor.fetchone()
        statements = {
            "by fingerprint": (rows.statement("fingerprint"), [fpr, fpr, fpr, now]),
            "by key id": (rows.statement("keyid"), [keyid, keyid, keyid, now]),
            "by address": (rows.statement("address"), [f"user{i}@scale.example", "published", "cached", now]),
            "by WKD hash": (rows.statement("wkd"), ["scale.example", hashed, "published", now]),
        }
        for name, (sql, params) in statements.items():
            cursor.execute("EXPLAIN ANALYZE " + sql, params)
            print(f"\n-- plan, {name}, {size:,} keys")
            for (line,) in cursor.fetchall():
                print("  " + line)


def main() -> None:
    fresh_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    done = 0
    table = []
    for size in SIZES:
        started = time.monotonic()
        with connection.cursor() as cursor:
            grow(cursor, done + 1, size)
        print(f"{size:,} keys in the tables ({time.monotonic() - started:.0f} s to add them)", flush=True)
        done = size
        table.append((size, measure(size)))
        plans(size)
    print(f"\nshared_buffers {_setting('shared_buffers')}; ms per lookup, median / p95")
    print(
        "\n| lookup | "
        + " | ".join(f"{s:,} keys, first / again" for s, _ in table)
        + " | ratio first | ratio again |"
    )
    print("|---|" + "---:|" * (len(table) + 2))
    for name in table[0][1]:
        cells = [
            f"{r[name][0]:.3f} / {r[name][1]:.3f}, {r[name][2]:.3f} / {r[name][3]:.3f}" for _s, r in table
        ]
        first = table[-1][1][name][0] / table[0][1][name][0]
        again = table[-1][1][name][2] / table[0][1][name][2]
        print(f"| {name} | " + " | ".join(cells) + f" | {first:.2f}× | {again:.2f}× |")


def _setting(name: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


if __name__ == "__main__":
    main()
