"""The hot read queries as plain SQL, for the lookups every client makes.

Building and compiling an ORM query costs more CPU than PostgreSQL takes to
run it (docs/performance.md), so the three lookups that answer almost every
request (a key by fingerprint, by key id, the keys of an address) are
written out once here: one statement each, selecting only the columns an
answer needs, executed as a prepared statement on PostgreSQL, and read into
small rows instead of model instances. The managers (keys.managers) expose
them; what they return has the fields of Key that answers and templates use.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.dateparse import parse_datetime

from . import clock, replica

# Times as seconds since the epoch on PostgreSQL: a float loads in C, while
# Django's own loader for timestamptz is written in Python and costs more
# than the rest of the row. SQLite (`make run`) returns its text.
_EPOCH = {"postgresql": "EXTRACT(EPOCH FROM {})::float8"}


def _key_columns(vendor: str) -> str:
    epoch = _EPOCH.get(vendor, "{}")
    return (
        "k.id, k.fingerprint, k.key_id, k.algorithm, k.algorithm_id, k.bits, "
        f"{epoch.format('k.created')}, {epoch.format('k.expires')}, k.revoked, k.blocked, "
        f"{epoch.format('k.updated')}, k.published, k.published_armor, k.published_user_ids, "
        "k.fallback, k.fallback_armor, k.fallback_user_ids"
    )


# Publication rule 4's order: valid keys first, then revoked or expired; newest first.
_BEST_FIRST = (
    "CASE WHEN k.revoked OR (k.expires IS NOT NULL AND k.expires <= %s) THEN 1 ELSE 0 END, "
    "k.created DESC, k.fingerprint"
)
# Served by id: not removed by policy, or removed but revoked (rule 5).
_SERVED_BY_ID = "(NOT k.blocked OR k.revoked)"
# The validation levels of a key's published and cached bindings, as
# "state:validation" pairs (the Key-Validation header of an answer by id).
_LEVELS = {
    "postgresql": "string_agg(DISTINCT b.state || ':' || b.validation, ',')",
    "sqlite": "group_concat(DISTINCT b.state || ':' || b.validation)",
}


def _levels_column(vendor: str) -> str:
    aggregate = _LEVELS.get(vendor, _LEVELS["postgresql"])
    return (
        f"(SELECT {aggregate} FROM keys_binding b WHERE b.key_id = k.id "
        "AND b.state IN ('published', 'cached'))"
    )


def _statements(vendor: str) -> dict[str, str]:
    columns = _key_columns(vendor)
    by_id = f"{columns}, {_levels_column(vendor)}"
    return {
        "stored": _STORED,
        "states": _STATES,
        # The key with this primary fingerprint, else the best key with this subkey.
        "fingerprint": f"""
SELECT {by_id} FROM keys_key k
WHERE k.id IN (SELECT id FROM keys_key WHERE fingerprint = %s
               UNION SELECT primary_id FROM keys_subkey WHERE fingerprint = %s)
  AND {_SERVED_BY_ID}
ORDER BY CASE WHEN k.fingerprint = %s THEN 0 ELSE 1 END, {_BEST_FIRST}
LIMIT 1
""",
        # The keys with this primary key id; only when there are none, those with such a subkey.
        "keyid": f"""
SELECT {by_id} FROM keys_key k
WHERE k.id IN (SELECT id FROM keys_key WHERE key_id = %s
               UNION SELECT primary_id FROM keys_subkey WHERE key_id = %s AND NOT EXISTS (
                   SELECT 1 FROM keys_key p WHERE p.key_id = %s AND (NOT p.blocked OR p.revoked)))
  AND {_SERVED_BY_ID}
ORDER BY {_BEST_FIRST}
""",
        # The certificates WKD serves for (domain, hash): published bindings only.
        "wkd": f"""
SELECT b.certificate, {_EPOCH.get(vendor, "{}").format("k.updated")}, b.validation FROM keys_binding b
JOIN keys_key k ON k.id = b.key_id
WHERE b.domain = %s AND b.wkd_hash = %s AND b.state = %s AND NOT k.blocked
ORDER BY {_BEST_FIRST}
""",
        # The published and cached bindings of an address, with their keys.
        "address": f"""
SELECT b.state, b.certificate, b.validation, {columns} FROM keys_binding b
JOIN keys_key k ON k.id = b.key_id
WHERE b.address = %s AND b.state IN (%s, %s) AND NOT k.blocked
ORDER BY {_BEST_FIRST}
""",
    }


# For an upload: is the fingerprint blocked, and the stored copy if there is one.
_STORED = """
SELECT (SELECT COUNT(*) FROM keys_policyblock WHERE fingerprint = %s),
       k.id, k.fingerprint, k.key_id, k.revoked, k.blocked, k.origin,
       k.next_refresh_at IS NULL AND k.refreshed_at IS NULL, k.data
FROM (SELECT 1 AS one) AS one LEFT JOIN keys_key k ON k.fingerprint = %s
"""
# A key's addresses and their states, in the order they were added.
_STATES = """
SELECT address, state, pending_since IS NOT NULL FROM keys_binding WHERE key_id = %s ORDER BY id
"""

_BY_VENDOR: dict[str, dict[str, str]] = {}


def statement(name: str) -> str:
    """The text of one hot statement for the database in use (built once)."""
    vendor = connection.vendor
    if vendor not in _BY_VENDOR:
        _BY_VENDOR[vendor] = _statements(vendor)
    return _BY_VENDOR[vendor][name]


@dataclass
class KeyRow:
    """What lookups read of a key (the columns of Key they need)."""

    pk: int
    fingerprint: str
    key_id: str
    algorithm: str
    algorithm_id: int
    bits: int | None
    created: datetime
    expires: datetime | None
    revoked: bool
    blocked: bool
    updated: datetime
    published: bytes
    published_armor: str
    published_user_ids: list[str]
    fallback: bytes
    fallback_armor: str
    fallback_user_ids: list[str]
    # (state, validation) of its published and cached bindings (read by id only).
    binding_levels: tuple[tuple[str, str], ...] = ()

    @property
    def is_expired(self) -> bool:
        return self.expires is not None and self.expires <= clock.now()

    def levels(self, state: str) -> tuple[str, ...]:
        """The validation levels of its bindings in `state`."""
        return tuple(v for s, v in self.binding_levels if s == state and v)


@dataclass
class BindingRow:
    state: str
    certificate: bytes
    key: KeyRow
    validation: str = ""


def _moment(value: Any) -> datetime | None:
    if isinstance(value, float | int):
        return datetime.fromtimestamp(value, UTC)
    moment = value if value is None or isinstance(value, datetime) else parse_datetime(str(value))
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _list(value: Any) -> list[str]:
    return json.loads(value) if isinstance(value, str | bytes) else list(value or [])


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """The "state:validation" pairs of the levels column."""
    pairs = (item.partition(":") for item in str(value or "").split(",") if item)
    return tuple(sorted((state, validation) for state, _sep, validation in pairs))


def _key(values: tuple[Any, ...]) -> KeyRow:
    """A row of _KEY_COLUMNS, in their order (and the levels column, if read)."""
    pk, fpr, keyid, algorithm, algorithm_id, bits, created, expires, revoked, blocked, updated = values[:11]
    published, published_armor, published_uids, fallback, fallback_armor, fallback_uids = values[11:17]
    return KeyRow(
        pk=pk,
        fingerprint=fpr,
        key_id=keyid,
        algorithm=algorithm,
        algorithm_id=algorithm_id,
        bits=bits,
        created=_moment(created) or clock.now(),
        expires=_moment(expires),
        revoked=bool(revoked),
        blocked=bool(blocked),
        updated=_moment(updated) or clock.now(),
        published=bytes(published or b""),
        published_armor=published_armor or "",
        published_user_ids=_list(published_uids),
        fallback=bytes(fallback or b""),
        fallback_armor=fallback_armor or "",
        fallback_user_ids=_list(fallback_uids),
        binding_levels=_pairs(values[17]) if len(values) > 17 else (),
    )


def fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run one read statement; prepared on PostgreSQL.

    It reads the replica when keys.replica allows it, else the primary. A
    lookup is read-only, so a connection found broken (PostgreSQL restarted
    under a persistent connection) is replaced and the statement run once
    more, instead of a per-request health check round trip; a replica that
    does not answer twice is left for the primary.
    """
    alias = replica.read_alias()
    for attempt in (1, 2, 3):
        conn = connections[alias]
        try:
            return _execute(conn, sql, params)
        except OperationalError:
            if conn.in_atomic_block or attempt == 3 or (attempt == 2 and alias == DEFAULT_DB_ALIAS):
                raise
            conn.close()
            if attempt == 2:
                alias = DEFAULT_DB_ALIAS
    return []


def _execute(conn: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    if conn.vendor != "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    # Skip Django's per-request "SELECT 1": a broken connection is retried above.
    conn.health_check_done = True  # type: ignore[attr-defined]
    conn.ensure_connection()
    started = time.monotonic()
    with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cursor:
        # Server-side binding, so PostgreSQL plans the statement once per connection.
        cursor.execute(sql, params, prepare=True)
        found = list(cursor.fetchall())
    if conn.queries_logged:  # counted like Django's own (DEBUG, assertNumQueries)
        conn.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
    return found


def by_fingerprint(fpr: str) -> KeyRow | None:
    rows = fetch(statement("fingerprint"), [fpr, fpr, fpr, clock.now()])
    return _key(rows[0]) if rows else None


def by_keyid(keyid: str) -> list[KeyRow]:
    return [_key(row) for row in fetch(statement("keyid"), [keyid, keyid, keyid, clock.now()])]


def wkd(domain: str, wkd_hash: str) -> list[tuple[bytes, datetime, str]]:
    rows = fetch(statement("wkd"), [domain, wkd_hash, "published", clock.now()])
    return [
        (bytes(certificate or b""), _moment(updated) or clock.now(), validation or "")
        for certificate, updated, validation in rows
    ]


def by_address(address: str, states: tuple[str, ...]) -> list[BindingRow]:
    wanted = (*states, *states)[:2]
    rows = fetch(statement("address"), [address, *wanted, clock.now()])
    return [BindingRow(row[0], bytes(row[1] or b""), _key(row[3:]), row[2] or "") for row in rows]


@dataclass
class StoredCopy:
    """What an upload needs of the stored key (keys.services.imports)."""

    blocked_fingerprint: bool
    pk: int | None
    fingerprint: str
    key_id: str
    revoked: bool
    blocked: bool
    origin: str
    never_scheduled: bool  # no next refresh, never refreshed
    data: bytes


def stored_copy(fpr: str) -> StoredCopy:
    (blocked_fpr, pk, fingerprint, keyid, revoked, blocked, origin, unscheduled, data) = fetch(
        statement("stored"), [fpr, fpr]
    )[0]
    return StoredCopy(
        bool(blocked_fpr), pk, fingerprint or "", keyid or "", bool(revoked), bool(blocked),
        origin or "", bool(unscheduled), bytes(data or b""),
    )  # fmt: skip


def states(key_pk: int) -> list[tuple[str, str, bool]]:
    """(address, state, a confirmation mail out) of each binding of a key."""
    return [(a, st, bool(p)) for a, st, p in fetch(statement("states"), [key_pk])]
