"""Create the PostgreSQL database DATABASE_URL names, if it does not exist yet (`make serve`)."""

from __future__ import annotations

import os
import sys

import environ
import psycopg
from psycopg import sql


def main() -> int:
    url = environ.Env.db_url_config(os.environ.get("DATABASE_URL", ""))
    if "postgresql" not in url.get("ENGINE", ""):
        return 0
    conninfo = psycopg.conninfo.make_conninfo(
        host=url["HOST"] or None,
        port=str(url["PORT"] or 5432),
        user=url["USER"] or None,
        password=url.get("PASSWORD") or None,
        dbname="postgres",
    )
    with psycopg.connect(conninfo, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [url["NAME"]]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url["NAME"])))
            print(f"created database {url['NAME']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
