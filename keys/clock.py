"""An injectable clock: services ask `now()`, tests can move it."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

_override: datetime | None = None


def now() -> datetime:
    return _override or timezone.now()


def set_now(moment: datetime | None) -> None:
    """For tests: freeze the clock at `moment` (None restores the real one)."""
    global _override
    _override = moment
