"""One refresh tick against 1,000,000 keys in PostgreSQL: `make bench-refresh`.

Synthetic rows (generate_series, not real certificates) with next refresh
times spread over the next 30 days, a thirtieth of them due. Measures the
statement a beat tick runs (select and lease a batch of 1,000 due keys with
FOR UPDATE SKIP LOCKED) and prints its query plan.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keyserver_bench_refresh"
)
os.environ["DJANGO_SETTINGS_MODULE"] = "attester.settings"
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
TICKS = int(os.environ.get("BENCH_TICKS", "10"))


def main() -> None:
    from benchdb import fresh_database

    fresh_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from federation.refresh import lease_due
    from keys import clock

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO keys_key (
                fingerprint, version, key_id, algorithm, algorithm_id, bits, created, expires,
                revoked, blocked, data, published, published_armor, published_user_ids,
                fallback, fallback_armor, fallback_user_ids, origin, first_seen, updated,
                next_refresh_at, last_refresh_result, refresh_failures)
            SELECT upper(lpad(to_hex(i), 40, '0')), 4, upper(lpad(to_hex(i), 16, '0')), 'EdDSA', 22, 255,
                   now() - interval '1 year', NULL, false, false, '', '', '', '[]', '', '', '[]',
                   'vks', now(), now(),
                   now() + (random() * 30 - 1) * interval '1 day', '', 0
            FROM generate_series(1, %s) AS i
            """,
            [ROWS],
        )
    # Steady state, as autovacuum leaves a table: hint bits set, statistics fresh.
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit = True
    raw.execute("VACUUM (ANALYZE) keys_key")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM keys_key WHERE next_refresh_at <= now()")
        due = cursor.fetchone()[0]
    print(f"inserted {ROWS:,} keys in {time.perf_counter() - started:.1f} s; {due:,} due now")

    now = clock.now()
    times = []
    leased = 0
    for _ in range(TICKS):
        tick = time.perf_counter()
        ids = lease_due(now, batch=1000)
        times.append((time.perf_counter() - tick) * 1000)
        leased += len(ids)
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(
            """
            EXPLAIN (ANALYZE, BUFFERS)
            UPDATE keys_key SET next_refresh_at = %s
            WHERE id IN (
                SELECT id FROM keys_key
                WHERE next_refresh_at IS NOT NULL AND next_refresh_at <= %s
                ORDER BY next_refresh_at LIMIT 1000
                FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            [now, now],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("ROLLBACK")

    print(f"\n{'case':<52} {'ticks':>6} {'median ms':>10} {'max ms':>8} {'keys/tick':>10}")
    print("-" * 90)
    print(
        f"{'lease 1,000 due keys of ' + format(ROWS, ',') + ' (SKIP LOCKED)':<52} {TICKS:>6} "
        f"{statistics.median(times):>10.1f} {max(times):>8.1f} {leased // TICKS:>10}"
    )
    print(f"\nquery plan:\n{plan}")


if __name__ == "__main__":
    main()
