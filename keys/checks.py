"""System checks for settings that must be right in production.

"Public" is a SITE_URL whose host is not this machine (localhost, a
loopback address, Django's test host): mail links and browsers reach it.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Warning, register

_LOCAL_HOSTS = {"localhost", "testserver", ""}


def public_site(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _several_writers() -> bool:
    """More than one process writes the database: web workers, or a Celery
    worker beside the web server."""
    return settings.WEB_CONCURRENCY > 1 or not settings.CELERY_TASK_ALWAYS_EAGER


@register()
def check_settings(app_configs: Any, **kwargs: Any) -> list[Warning]:
    problems = []
    https = settings.SITE_URL.startswith("https://")
    public = public_site(settings.SITE_URL)
    if getattr(settings, "SECRET_KEY_FROM_FILE", False) and not settings.DEBUG and https:
        problems.append(Warning("SECRET_KEY is not set; a generated key in var/ is used.", id="keys.W001"))
    if settings.EMAIL_BACKEND.endswith("filebased.EmailBackend") and (https or public) and not settings.DEBUG:
        problems.append(
            Warning(
                "EMAIL_URL is not set: confirmation mail is written to files, not sent.",
                hint="Set EMAIL_URL=smtp+tls://user:password@host:587 (docs/operations.md).",
                id="keys.W002",
            )
        )
    if settings.DEBUG and public:
        problems.append(
            Warning(
                f"DEBUG is on while SITE_URL ({settings.SITE_URL}) is public: error pages show settings "
                "and code to anyone.",
                hint="Unset DEBUG (or DEBUG=false) in production.",
                id="keys.W003",
            )
        )
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and _several_writers():
        problems.append(
            Warning(
                "The database is SQLite while several processes write it (WEB_CONCURRENCY above 1, "
                "or a Celery worker): writers wait for each other and time out.",
                hint="Set DATABASE_URL=postgres://… (docs/operations.md).",
                id="keys.W004",
            )
        )
    return problems
