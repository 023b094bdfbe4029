"""The Prometheus metrics every process counts (prometheus-client).

Counters and histograms only: in multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by the settings) each web worker and each Celery worker writes its own
file and `/metrics` sums them. Values that describe the store (keys,
published addresses, the outbox's oldest row, breakers) are not counted
here; the scrape reads them when asked (keys/views/metrics.py), cheaply.

Label values are always from a small fixed set (route names, outcome words,
source names an admin configured): never an address, a key or a client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import Counter, Histogram

PREFIX = "keyserver"

REQUESTS = Counter(
    f"{PREFIX}_http_requests", "HTTP requests answered, by route and status", ["route", "status"]
)
LATENCY = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer, by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LOOKUPS = Counter(f"{PREFIX}_lookups", "Key lookups by protocol and outcome (hit, miss)", ["path", "outcome"])
UPLOADS = Counter(
    f"{PREFIX}_uploads", "Keys uploaded, by outcome (accepted, merged, unchanged, refused)", ["outcome"]
)
REFUSED = Counter(f"{PREFIX}_uploads_refused", "Uploads refused, by reason", ["reason"])
MAILS = Counter(
    f"{PREFIX}_mails", "Outbox mails by event (queued, sent, retry, failed) and kind", ["event", "kind"]
)
CONFIRMATIONS = Counter(f"{PREFIX}_confirmations", "Addresses confirmed by their owners")
UPSTREAM = Counter(
    f"{PREFIX}_upstream_requests",
    "Requests to upstream sources, by source and outcome",
    ["source", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    f"{PREFIX}_upstream_request_duration_seconds",
    "Time an upstream source took to answer (or fail), by source",
    ["source"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
REFRESHES = Counter(f"{PREFIX}_refreshes", "Scheduled key refreshes, by outcome", ["outcome"])
RATE_LIMITED = Counter(f"{PREFIX}_rate_limited", "Requests refused by a rate limit, by limit", ["limit"])


def clear_files(directory: str) -> int:
    """Remove the counters of processes of an earlier run (before the web
    server starts: multiprocess mode sums every file it finds)."""
    removed = 0
    for path in Path(directory).glob("*.db"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


@contextmanager
def upstream_request(source: str) -> Iterator[None]:
    """Count and time one request to an upstream source."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        UPSTREAM.labels(source, "error").inc()
        raise
    else:
        UPSTREAM.labels(source, "ok").inc()
    finally:
        UPSTREAM_LATENCY.labels(source).observe(time.perf_counter() - started)


def refresh_outcome(result: str) -> str:
    """The first word of a refresh result ("updated", "failed: …", …)."""
    word = result.split(":", 1)[0].split(";", 1)[0].strip().split(" ", 1)[0]
    return (
        word
        if word in {"updated", "unchanged", "missing", "refused", "failed", "deferred", "no", "would"}
        else "other"
    )
