"""Liveness and readiness.

/readyz is 503 when the database does not answer: nothing can be served
from it. Redis (the shared cache) is reported but does not make a node
unready: every request path works without it (keys.cache), and a load
balancer that took every node out whenever Redis blinked would turn a
degraded service into an outage. Only staff see the errors themselves; to
anyone else a failed part is a name, never a host, port or message.

With a broker, "celery" says whether a worker answered a heartbeat within
the last minute (on which queues) and when beat last sent a task
(keys.heartbeat); a silent worker or beat degrades the node, nothing more:
mail waits in the outbox. A replica that does not answer degrades it too,
since lookups then read the primary.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from .. import heartbeat, replica
from ..cache import ResilientRedisCache


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def _database(alias: str = "default") -> str | None:
    if alias != "default" and alias not in settings.DATABASES:
        return None
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # readiness reports any failure, it never raises
        return str(exc)
    return None


def _redis() -> str | None:
    if not settings.REDIS_URL:
        return None
    backend = caches["default"]
    try:
        if isinstance(backend, ResilientRedisCache):
            backend.ping()
        else:
            backend.set("readyz", "1", 5)
            if backend.get("readyz") != "1":
                return "read back failed"
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    try:
        return bool(user and user.is_active and user.is_staff)
    except Exception:  # the session could not be read
        return False


def _celery() -> tuple[dict[str, object] | None, dict[str, str]]:
    """The heartbeats, and what is missing of them (nothing without a broker:
    tasks then run in the web process)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return None, {}
    beats = heartbeat.status(tuple(settings.CELERY_QUEUES))
    missing = {}
    if not beats["worker_answered"]:
        missing["worker"] = "no worker answered within the last minute"
    if not beats["beat_recent"]:
        missing["beat"] = f"beat last ran {beats['beat_last_ran'] or 'never'}"
    return beats, missing


def readyz(request: HttpRequest) -> HttpResponse:
    failed = {name: error for name, error in (("database", _database()),) if error}
    celery, missing = _celery()
    degraded = {
        name: error
        for name, error in (("redis", _redis()), ("replica", _database(replica.REPLICA)), *missing.items())
        if error
    }
    # Staff are known by their session, which is read from the database.
    if not failed and _is_staff(request):
        failed, degraded = ({name: error[:300] for name, error in d.items()} for d in (failed, degraded))
    else:
        failed, degraded = ({name: "unavailable" for name in d} for d in (failed, degraded))
    body: dict[str, object] = {"ready": not failed}
    if failed:
        body["failed"] = failed
    if degraded:
        body["degraded"] = degraded
    if celery is not None:
        body["celery"] = celery
    return JsonResponse(body, status=503 if failed else 200)
