"""The embedded default of `make run` (SQLite, tasks in-process, mail as files).

Runs the real command in a subprocess with a fresh var/ directory and none
of the test suite's PostgreSQL or Redis settings: migrate, upload, confirm,
look up.
"""

from __future__ import annotations

import requests

from .instance import Instance


def test_make_run_default_serves_upload_confirm_and_lookup(tmp_path, cast):
    server = Instance(tmp_path)
    try:
        assert (tmp_path / "keyserver.sqlite3").exists()
        server.publish(cast.bob.text, "bob@example.net")
        assert len(server.mails()) == 1
        found = requests.get(
            f"{server.url}/pks/lookup", params={"op": "get", "search": "bob@example.net"}, timeout=10
        )
        assert found.status_code == 200
        assert "BEGIN PGP PUBLIC KEY BLOCK" in found.text
        assert requests.get(f"{server.url}/readyz", timeout=10).json() == {"ready": True}
    finally:
        server.stop()
