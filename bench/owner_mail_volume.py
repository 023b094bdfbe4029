"""How much mail the owners' features send: `python bench/owner_mail_volume.py`.

1,000 synthetic keys in a scratch PostgreSQL database (BENCH_DATABASE_URL):
40% never expire, the rest valid for 1, 2 or 3 years and made at a random
moment of that period; 80% with one published address, 20% with two,
confirmed at a random moment of the last two years. The injectable clock
walks 365 days; each day the real jobs run (keys.services.reminders,
keys.services.reconfirmation) with the default settings, then with
RECONFIRM_DAYS=365, and simulated owners answer (half extend their key at
the first reminder, 70% of the rest at the second; 80% re-confirm within
ten days). Mails are counted as the outbox rows each day queued, by kind.

Change notices (kind NOTICE) count the owners' own changes: each extension
answering a reminder, and one other change per key and year on average.
Each feature is a `Feature` (its settings, its job, how owners answer).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keyserver_bench_owner_mail"
)
os.environ["DJANGO_SETTINGS_MODULE"] = "attester.settings"
# Mails are counted, not delivered: no worker takes them from the in-memory broker.
os.environ["CELERY_BROKER_URL"] = "memory://localhost/"
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
os.environ.setdefault("PUBLISH_DIR", tempfile.mkdtemp(prefix="bench-owner-mail-"))
os.environ.setdefault("LOG_LEVEL", "WARNING")
KEYS = int(os.environ.get("BENCH_KEYS", "1000"))
DAYS = int(os.environ.get("BENCH_DAYS", "365"))
DAY = timedelta(days=1)
YEAR = timedelta(days=365)


@dataclass
class Feature:
    """One feature that mails owners: the job a day of beat runs, and how
    owners answer what it sent that day (`answer(now, rng)`)."""

    name: str
    run: Callable[[datetime], object]
    answer: Callable[[datetime, random.Random], None] = lambda now, rng: None
    state: dict = field(default_factory=dict)


def _runs_per_day(seconds: int) -> int:
    return max(1, 86400 // max(1, seconds))


def expiry_feature() -> Feature:
    from django.conf import settings

    from keys.models import Key, OutboxMail
    from keys.services import reminders

    def run(now: datetime) -> object:
        return reminders.send_due(
            settings.EXPIRY_REMINDER_BATCH * _runs_per_day(settings.EXPIRY_REMINDER_SECONDS)
        )

    def answer(now: datetime, rng: random.Random) -> None:
        # Owners reminded today: half extend at the first reminder, 70% of the rest at the last.
        rows = OutboxMail.objects.filter(kind="expiry", created__gte=now, created__lt=now + DAY)
        for key_pk, threshold in set(rows.values_list("binding__key_id", "params__threshold")):
            if rng.random() < (0.5 if threshold == max(settings.EXPIRY_REMINDER_DAYS) else 0.7):
                moment = now + rng.uniform(0, 3) * DAY
                Key.objects.filter(pk=key_pk).update(expires=moment + 2 * YEAR, encryption_expires=None)

    return Feature("expiry", run, answer)


def reconfirm_feature() -> Feature:
    from django.conf import settings

    from keys.models import OutboxMail
    from keys.services import reconfirmation
    from keys.services.locking import locked_key

    pending: list[tuple[datetime, int, int]] = []

    def run(now: datetime) -> object:
        return reconfirmation.run(settings.RECONFIRM_BATCH * _runs_per_day(settings.RECONFIRM_SECONDS))

    def answer(now: datetime, rng: random.Random) -> None:
        rows = OutboxMail.objects.filter(kind="reconfirm", created__gte=now, created__lt=now + DAY)
        for binding_pk, key_pk in rows.values_list("binding_id", "binding__key_id"):
            if rng.random() < 0.8:
                pending.append((now + rng.uniform(0, 10) * DAY, key_pk, binding_pk))
        for item in [p for p in pending if p[0] <= now + DAY]:
            pending.remove(item)
            _, key_pk, binding_pk = item
            with locked_key(key_pk) as key:
                binding = key.bindings.get(pk=binding_pk)
                if binding.state == "published":
                    reconfirmation.confirmed(key, binding, again=True, actor="owner")

    return Feature("reconfirm", run, answer)


def notice_feature() -> Feature:
    """Change notices: the owners' own changes are told to their addresses.
    Each extension the expiry answers made is a changed expiry date (as the
    import service would record it), and every key has one other change a
    year on average (a new subkey, say), on a random day."""
    from keys.models import Binding, Key, NoticeChange
    from keys.services import notice_mail, notices

    expiries: dict[int, datetime | None] = {}

    def addresses_of(pks: list[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        rows = Binding.objects.filter(key_id__in=pks, state=Binding.State.PUBLISHED)
        for key_pk, address in rows.values_list("key_id", "address"):
            found.setdefault(key_pk, []).append(address)
        return found

    def run(now: datetime) -> object:
        return notice_mail.send_due(100_000)

    def answer(now: datetime, rng: random.Random) -> None:
        current = dict(Key.objects.values_list("pk", "expires"))
        if not expiries:
            expiries.update(current)
            return
        changed = {pk for pk, when in current.items() if expiries.get(pk) != when}
        other = {pk for pk in current if rng.random() < 1 / 365}
        expiries.update(current)
        told = addresses_of(sorted(changed | other))
        fingerprints = dict(Key.objects.filter(pk__in=list(told)).values_list("pk", "fingerprint"))
        for pk, addresses in told.items():
            change = NoticeChange.Change.EXPIRY_CHANGED if pk in changed else NoticeChange.Change.SUBKEY_ADDED
            notices.record(addresses, fingerprints[pk], change, actor="owner upload")

    return Feature("notice", run, answer)


FEATURES: list[Callable[[], Feature]] = [expiry_feature, reconfirm_feature, notice_feature]


def populate(start: datetime, rng: random.Random) -> None:
    from keys import openpgp
    from keys.models import Binding, Key, NoticeChange

    # One real certificate for all: unpublishing after the grace rebuilds the key's answers from it.
    data = (ROOT / "tests" / "fixtures" / "bob.asc").read_bytes()
    cert = openpgp.parse(data).certs[0].data
    Key.objects.all().delete()
    NoticeChange.objects.all().delete()
    keys = []
    for i in range(KEYS):
        expires = None
        if rng.random() >= 0.4:
            valid = rng.choice((1, 2, 3)) * YEAR
            expires = start + rng.uniform(0, 1) * valid
        keys.append(
            Key(
                fingerprint=f"{i + 1:040X}",
                version=4,
                key_id=f"{i + 1:016X}",
                algorithm="EdDSA",
                created=start - 3 * YEAR,
                expires=expires,
                data=cert,
            )
        )
    Key.objects.bulk_create(keys)
    bindings = []
    for key in Key.objects.order_by("id"):
        for n in range(1 if rng.random() < 0.8 else 2):
            address = f"owner{key.pk}.{n}@example.org"
            bindings.append(
                Binding(
                    key=key,
                    address=address,
                    domain="example.org",
                    wkd_hash=f"{key.pk:032d}",
                    state=Binding.State.PUBLISHED,
                    validation=Binding.Validation.EMAIL_CONFIRMED,
                    verified_at=start - rng.uniform(0, 2) * YEAR,
                )
            )
    Binding.objects.bulk_create(bindings)


def simulate(overrides: Mapping[str, object], seed: int = 13) -> dict[str, list[int]]:
    from django.conf import settings
    from django.db.models.functions import TruncDay

    from keys import clock
    from keys.models import OutboxMail

    for name, value in overrides.items():
        setattr(settings, name, value)
    rng = random.Random(seed)
    start = datetime(2027, 1, 1, 3, tzinfo=UTC)
    populate(start, rng)
    OutboxMail.objects.all().delete()
    features = [make() for make in FEATURES]
    for day in range(DAYS):
        now = start + day * DAY
        clock.set_now(now)
        for feature in features:
            feature.run(now)
        for feature in features:
            feature.answer(now, rng)
    clock.set_now(None)
    per_day: dict[str, Counter] = {}
    rows = OutboxMail.objects.annotate(day=TruncDay("created")).values_list("kind", "day")
    for kind, day in rows:
        per_day.setdefault(kind, Counter())[day] += 1
    kinds = sorted({f.name for f in features} | set(per_day))
    return {kind: [per_day.get(kind, Counter()).get(d, 0) for d in _days(start)] for kind in kinds}


def _days(start: datetime) -> list[datetime]:
    first = start.replace(hour=0)
    return [first + i * DAY for i in range(DAYS)]


def main() -> None:
    from benchdb import fresh_database

    fresh_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    scenarios = [
        ("defaults (RECONFIRM_DAYS=0)", {"RECONFIRM_DAYS": 0}),
        ("RECONFIRM_DAYS=365", {"RECONFIRM_DAYS": 365}),
    ]
    scale = 1000 / KEYS
    print(f"{KEYS:,} keys, {DAYS} days; mails per 1,000 keys per day")
    print(
        f"{'scenario':<30} {'kind':<10} {'mean':>7} {'peak':>6} {'peak day':>9} {'total':>7} {'after day 30: mean':>19} {'peak':>6}"
    )
    for label, overrides in scenarios:
        result = simulate(overrides)
        for kind, counts in result.items():
            tail = counts[30:] or [0]
            peak = max(counts)
            print(
                f"{label:<30} {kind:<10} {statistics.mean(counts) * scale:>7.2f} {peak * scale:>6.0f} "
                f"{counts.index(peak):>9} {sum(counts) * scale:>7.0f} {statistics.mean(tail) * scale:>19.2f} "
                f"{max(tail) * scale:>6.0f}"
            )


if __name__ == "__main__":
    main()
