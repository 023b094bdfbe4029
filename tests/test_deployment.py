"""The container stack stays valid (no Docker engine runs here, so it is read, not started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_docker_compose_brings_up_the_whole_stack():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "front", "follower", "worker", "beat", "mail"} <= set(services)
    assert "--front-only" in services["front"]["command"] and "web:8000" in services["front"]["command"]
    assert "--follow" in services["follower"]["command"]
    # The front server, the application and the follower share the published files.
    for name in ("front", "web", "follower", "worker"):
        assert "public:/srv/public" in services[name]["volumes"], name
    assert "ports" not in services["web"]  # reached through the front server only
    assert "beat" in services["beat"]["command"] and "worker" in services["worker"]["command"]
    env = services["web"]["environment"]
    for name in ["DATABASE_URL", "REDIS_URL", "EMAIL_URL", "SITE_URL", "SECRET_KEY"]:
        assert name in env, name
    assert services["worker"]["environment"] == env  # one configuration for every process


def test_docker_compose_runs_a_worker_for_each_queue():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    queues = {}
    for name, service in services.items():
        command = service.get("command") or []
        if "worker" in command and "celery" in command:
            for queue in command[command.index("-Q") + 1].split(","):
                queues[queue] = name
            assert "public:/srv/public" in service["volumes"], name  # refresh and pruning change files
    assert set(queues) == {"mail", "refresh", "housekeeping", "celery"}  # celery: left by older versions
    assert sum("beat" in (s.get("command") or []) for s in services.values()) == 1  # exactly one beat


def test_the_dockerfile_runs_the_wsgi_app_with_ldap_support():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements-ldap.txt" in dockerfile and "attester.wsgi" in dockerfile
    assert "libnginx-mod-http-lua" in dockerfile


def test_every_setting_is_in_env_example():
    import re

    settings_text = "".join(
        p.read_text() for p in (ROOT / "attester").glob("settings*.py") if p.stem != "settings_test"
    )
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', settings_text))
    example = (ROOT / ".env.example").read_text()
    missing = sorted(n for n in names if n not in example)
    assert not missing, f".env.example lacks {missing}"


def test_db_pool_gives_each_process_a_psycopg_pool_that_answers():
    import subprocess
    import sys

    code = (
        "import django; django.setup(); from django.db import connection;"
        "[connection.cursor().execute('SELECT 1') for _ in range(3)];"
        "pool = connection.pool;"
        "print(type(pool).__name__, pool.max_size, connection.settings_dict['CONN_MAX_AGE'])"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "attester.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        "DB_POOL": "3",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["ConnectionPool", "3", "0"]


@pytest.mark.django_db
def test_a_test_run_has_its_own_database_and_cache_keys(settings):
    """Two runs at once (two checkouts) must not drop each other's database
    or flush each other's counters."""
    import os

    import redis
    from django.core.cache import cache
    from django.db import connection

    assert connection.settings_dict["NAME"].endswith(f"_{os.getpid()}")
    assert settings.CACHES["default"]["KEY_PREFIX"] == f"test{os.getpid()}"
    other = redis.Redis.from_url(settings.REDIS_URL)
    other.set("another-run:1:rl:upload-ip:x", b"5")
    try:
        cache.set("ours", 1)
        cache.clear()
        assert cache.get("ours") is None
        assert other.get("another-run:1:rl:upload-ip:x") == b"5"
    finally:
        other.delete("another-run:1:rl:upload-ip:x")
