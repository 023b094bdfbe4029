"""When a key is refreshed next (DESIGN.md, Refresh).

Every REFRESH_INTERVAL_DAYS; daily while the key expires within
REFRESH_NEAR_EXPIRY_DAYS or expired within the last REFRESH_AFTER_EXPIRY_DAYS
(that is when upstream copies change: new expiry dates, revocations); a
revoked key gets one last check and then none. Failures back off:
1, 2, 4, ... hours, never longer than the normal interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from ..models import Key, Origin


def refreshable(key: Key) -> bool:
    """Keys from an upstream origin; uploads only when refresh peers are configured."""
    return key.origin != Origin.UPLOAD or bool(settings.REFRESH_PEERS)


def next_refresh(key: Key, now: datetime, *, failures: int = 0, was_revoked: bool = False) -> datetime | None:
    if not refreshable(key):
        return None
    interval = timedelta(days=settings.REFRESH_INTERVAL_DAYS)
    if failures:
        return now + min(timedelta(hours=2 ** min(failures - 1, 16)), interval)
    if key.revoked:
        # One last check after the revocation arrived, then no more.
        return None if was_revoked else now + timedelta(days=1)
    if key.expires is not None:
        soon = key.expires - timedelta(days=settings.REFRESH_NEAR_EXPIRY_DAYS)
        late = key.expires + timedelta(days=settings.REFRESH_AFTER_EXPIRY_DAYS)
        if soon <= now <= late:
            return now + timedelta(days=1)
        if now < soon:
            # Come back no later than when the near-expiry window opens.
            return min(now + interval, soon)
    return now + interval
