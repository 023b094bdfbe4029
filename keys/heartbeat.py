"""Heartbeats of the Celery workers and of beat, for /readyz.

Beat sends a heartbeat task to each queue every CELERY_HEARTBEAT_SECONDS;
the worker that runs it records the time for its queue, and beat records
the time it last sent a task (attester.celery.RecordingScheduler). Both go
to the shared cache (Redis), so any web node can tell whether a worker
answered within the last minute without asking the workers itself.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache

ANSWERED_WITHIN = 60.0
_WORKER = "heartbeat:worker:{}"
_BEAT = "heartbeat:beat"
_KEEP = 7 * 24 * 3600


def worker_answered(queue: str) -> None:
    cache.set(_WORKER.format(queue), time.time(), _KEEP)


def beat_ran() -> None:
    cache.set(_BEAT, time.time(), _KEEP)


def _moment(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def status(queues: tuple[str, ...], now: float | None = None) -> dict[str, Any]:
    """Which queues a worker answered on within the last minute, and when
    beat last sent a task."""
    now = time.time() if now is None else now
    try:
        seen = cache.get_many([_WORKER.format(q) for q in queues] + [_BEAT])
    except Exception:  # the cache is not there: nothing is known
        seen = {}
    last = {q: seen.get(_WORKER.format(q)) for q in queues}
    answered = {q: at is not None and now - at <= ANSWERED_WITHIN for q, at in last.items()}
    beat = seen.get(_BEAT)
    return {
        "worker_answered": any(answered.values()),
        "queues": {q: {"answered": answered[q], "last": _moment(last[q])} for q in queues},
        "beat_last_ran": _moment(beat),
        "beat_recent": beat is not None and now - beat <= ANSWERED_WITHIN,
    }
