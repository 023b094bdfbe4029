"""The benchmarks' scratch database: dropped and created anew for each run."""

from __future__ import annotations


def fresh_database(url: str) -> None:
    """Drop and recreate the database named at the end of `url`."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
