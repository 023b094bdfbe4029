"""The Celery app and the one beat schedule of the project.

With REDIS_URL (or CELERY_BROKER_URL) set, tasks go to the broker, a worker
runs them and `celery beat` (or a worker with -B) sends the periodic ones;
without a broker, `make run` runs the same schedule in-process
(keys/management/commands/runkeyserver.py) and tasks run eagerly.
"""

import os
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_ready
from django.conf import settings

from keys import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "attester.settings")

app = Celery("attester")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# The one beat schedule: every periodic job, each also a management command
# (refresh_keys --due, send_notices, housekeeping, send_expiry_reminders,
# reconfirm_addresses). The intervals are settings, so .env sets
# them like everything else; they are read once the settings are loaded.
def beat_schedule() -> dict[str, dict[str, object]]:
    every = float(settings.CELERY_HEARTBEAT_SECONDS)
    heartbeats = {
        # One to each queue, where only its workers answer it; a heartbeat
        # stuck behind a backlog expires instead of piling up.
        f"heartbeat-{queue}": {
            "task": "keys.tasks.heartbeat",
            "schedule": every,
            "args": (queue,),
            "options": {"queue": queue, "expires": every * 2},
        }
        for queue in settings.CELERY_QUEUES
    }
    return {
        **heartbeats,
        "refresh-due-keys": {
            "task": "federation.tasks.refresh_due_task",
            "schedule": float(settings.REFRESH_TICK_SECONDS),
        },
        "sweep-outbox": {
            "task": "keys.tasks.sweep_outbox",
            "schedule": float(settings.OUTBOX_SWEEP_SECONDS),
        },
        "send-notices": {
            "task": "keys.tasks.send_notices",
            "schedule": float(settings.NOTICE_TICK_SECONDS),
        },
        "housekeeping": {
            "task": "keys.tasks.housekeeping_task",
            "schedule": float(settings.HOUSEKEEPING_SECONDS),
        },
        "expiry-reminders": {
            "task": "keys.tasks.send_expiry_reminders",
            "schedule": float(settings.EXPIRY_REMINDER_SECONDS),
        },
        "reconfirm-addresses": {
            "task": "keys.tasks.reconfirm_addresses",
            "schedule": float(settings.RECONFIRM_SECONDS),
        },
    }


@app.on_after_configure.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    sender.conf.beat_schedule = beat_schedule()


class RecordingScheduler(PersistentScheduler):
    """Celery's own scheduler, recording each time it sends a task (/readyz)."""

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        super().apply_entry(entry, producer=producer)
        from keys import heartbeat

        heartbeat.beat_ran()


@worker_ready.connect
def _sweep_on_start(**kwargs: object) -> None:
    """A worker that starts (after a crash, after Redis lost its queue)
    delivers what is waiting at once, not at the next beat."""
    app.send_task("keys.tasks.sweep_outbox")


# Log lines of a task carry its id, and the id of the request that queued it.
@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **kwargs: object) -> None:
    if headers is not None and logs.request_id.get():
        headers["request_id"] = logs.request_id.get()


_entered: dict[str, tuple[Any, Any]] = {}


@task_prerun.connect
def _enter_task(task_id: str = "", task: Any = None, **kwargs: object) -> None:
    origin = getattr(task.request, "request_id", None) if task is not None else None
    # Eager tasks run inside a request: its id stays (and comes back after).
    rid = origin if isinstance(origin, str) else logs.request_id.get()
    _entered[task_id] = (logs.task_id.set(task_id), logs.request_id.set(rid))


@task_postrun.connect
def _leave_task(task_id: str = "", **kwargs: object) -> None:
    tokens = _entered.pop(task_id, None)
    if tokens is not None:
        logs.task_id.reset(tokens[0])
        logs.request_id.reset(tokens[1])
