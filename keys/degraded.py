"""Parts a request can do without for a while (Redis as the cache, the
Celery broker): their failures are logged once when an outage starts and
once when the part answers again, not on every request."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("keyserver.degraded")
_down: dict[str, float] = {}  # part -> when it was first seen failing (monotonic)
_lock = threading.Lock()


def failed(part: str, error: BaseException, consequence: str) -> None:
    """`part` failed; the first failure of an outage is logged with what it means."""
    with _lock:
        first = part not in _down
        if first:
            _down[part] = time.monotonic()
    if first:
        log.warning("%s is unreachable (%s: %s); %s", part, type(error).__name__, error, consequence)


def answered(part: str) -> None:
    """`part` answered: the end of its outage, if there was one, is logged."""
    if part not in _down:
        return
    with _lock:
        since = _down.pop(part, None)
    if since is not None:
        log.warning("%s answers again after %.0f s", part, time.monotonic() - since)


def is_down(part: str) -> bool:
    return part in _down
