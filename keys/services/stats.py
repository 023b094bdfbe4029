"""The store's size for HKP op=stats and the gauges of /metrics: counted at
most every STATS_SECONDS (in the shared cache), never on every request."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from ..models import Binding, Key

CACHE_KEY = "stats:store"


def store_counts() -> dict[str, int]:
    """Keys (not blocked) and published addresses, as of the last count."""
    counted = cache.get(CACHE_KEY)
    if counted is None:
        counted = {**Key.objects.counts(), "published_addresses": Binding.objects.published_count()}
        cache.set(CACHE_KEY, counted, settings.STATS_SECONDS)
    return counted
