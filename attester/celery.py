"""The Celery app and the one beat schedule of the project.

With REDIS_URL (or CELERY_BROKER_URL) set, tasks go to the broker, a worker
runs them and `celery beat` (or a worker with -B) sends the periodic ones;
without a broker, `make run` runs the same schedule in-process
(keys/management/commands/runkeyserver.py) and tasks run eagerly.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "attester.settings")
os.environ["RUST_BACKTRACE"] = "0"

app = Celery("attester")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The one beat schedule: every periodic job, each also a management command
# (refresh_keys --due, housekeeping).
BEAT_SCHEDULE = {
    "refresh-due-keys": {
        "task": "federation.tasks.refresh_due_task",
        "schedule": float(os.environ.get("REFRESH_TICK_SECONDS", "60")),
    },
    "housekeeping": {
        "task": "keys.tasks.housekeeping_task",
        "schedule": float(os.environ.get("HOUSEKEEPING_SECONDS", "3600")),
    },
}
app.conf.beat_schedule = BEAT_SCHEDULE
