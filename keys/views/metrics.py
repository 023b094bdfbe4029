"""/metrics for Prometheus: the counters of every process on this machine
(multiprocess mode) and, read when scraped, what describes the store: keys
and published addresses (as last counted, keys.services.stats), the
outbox's queued mails and the age of the oldest, and each source's circuit
breaker. Answered only to METRICS_ALLOWED_NETWORKS."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import clock
from ..errors import Forbidden
from ..metrics import PREFIX
from ..models import OutboxMail, Source
from ..services.stats import store_counts
from .http import client_ip, in_networks


class StoreCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        counts = store_counts()
        yield GaugeMetricFamily(
            f"{PREFIX}_keys", "Keys stored (not blocked), as last counted", counts["keys"]
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_published_addresses",
            "Addresses published, as last counted",
            counts["published_addresses"],
        )
        queued, oldest = OutboxMail.objects.queue_summary()
        yield GaugeMetricFamily(f"{PREFIX}_outbox_queued", "Mails waiting in the outbox", queued)
        age = (clock.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(f"{PREFIX}_outbox_oldest_seconds", "Age of the oldest queued mail", age)
        breakers = GaugeMetricFamily(
            f"{PREFIX}_upstream_breaker_open",
            "1 while a source is left alone after failures",
            labels=["source"],
        )
        sources = list(Source.objects.filter(enabled=True).values_list("pk", "name"))
        opened = cache.get_many([f"cb-open:{pk}" for pk, _name in sources])
        for pk, name in sources:
            breakers.add_metric([name], 1.0 if opened.get(f"cb-open:{pk}") else 0.0)
        yield breakers


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not in_networks(client_ip(request), settings.METRICS_ALLOWED_NETWORKS):
        raise Forbidden()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(StoreCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
