"""What the audit trail keeps of a client: its address truncated (default),
hashed, kept or dropped (EVENT_CLIENT_ADDRESSES).

Events name who did something ("web 192.0.2.7", "hkp 2001:db8::1") and are
kept EVENT_RETENTION_DAYS. A truncated address (/24 for IPv4, /48 for IPv6)
still tells an operator which network a flood came from; a hashed one (keyed
with SECRET_KEY) lets them see that two events came from the same client
without storing who it is.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from django.conf import settings

MODES = ("truncate", "hash", "keep", "drop")


def client_for_log(actor: str) -> str:
    """The actor with a trailing client address made as private as configured."""
    channel, _sep, last = actor.rpartition(" ")
    try:
        address = ipaddress.ip_address(last)
    except ValueError:
        return actor
    mode = settings.EVENT_CLIENT_ADDRESSES
    if mode == "keep":
        return actor
    if mode == "drop":
        return channel
    if mode == "hash":
        digest = hmac.new(settings.SECRET_KEY.encode(), address.packed, hashlib.sha256).hexdigest()[:16]
        return f"{channel} client:{digest}"
    prefix = 24 if address.version == 4 else 48
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return f"{channel} {network}"


def facts() -> dict[str, object]:
    """What the privacy page states, from the settings in force."""
    return {
        "event_days": settings.EVENT_RETENTION_DAYS,
        "unconfirmed_days": settings.UNCONFIRMED_RETENTION_DAYS,
        "outbox_days": settings.OUTBOX_RETENTION_DAYS,
        "verify_hours": int(settings.VERIFY_TOKEN_TTL.total_seconds() // 3600),
        "manage_minutes": int(settings.MANAGE_TOKEN_TTL.total_seconds() // 60),
        "client_addresses": settings.EVENT_CLIENT_ADDRESSES,
    }
