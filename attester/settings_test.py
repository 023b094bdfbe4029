"""Settings for the test suite: PostgreSQL and Redis on this machine by default."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keyserver")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
# Two runs at once (two checkouts, two sessions) share neither the test
# database nor the cache's keys.
os.environ.setdefault("CACHE_KEY_PREFIX", f"test{os.getpid()}")
os.environ.setdefault("SITE_URL", "http://testserver")
# The published file tree of the test process: a scratch directory, never var/.
os.environ.setdefault("PUBLISH_DIR", tempfile.mkdtemp(prefix="ks-public-"))
# The metrics files of the test process: a scratch directory too.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ks-metrics-"))

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# pytest-django creates this database for the run and drops it at the end.
DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_{DATABASES['default']['NAME']}_{os.getpid()}"  # noqa: F405
