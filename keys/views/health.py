"""Liveness and readiness."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request: HttpRequest) -> HttpResponse:
    failed = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # readiness reports any failure, it never raises
        failed["database"] = str(exc)[:200]
    if settings.REDIS_URL:
        try:
            cache.set("readyz", "1", 5)
            if cache.get("readyz") != "1":
                failed["redis"] = "read back failed"
        except Exception as exc:
            failed["redis"] = str(exc)[:200]
    if failed:
        return JsonResponse({"ready": False, "failed": failed}, status=503)
    return JsonResponse({"ready": True})
