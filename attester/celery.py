"""The Celery app and the one beat schedule of the project.

With REDIS_URL (or CELERY_BROKER_URL) set, tasks go to the broker and a worker
runs them; without, `CELERY_TASK_ALWAYS_EAGER` runs them in-process.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "attester.settings")
os.environ["RUST_BACKTRACE"] = "0"

app = Celery("attester")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The one beat schedule. Periodic jobs are added here (refresh, housekeeping:
# issue 5); each also exists as a management command.
app.conf.beat_schedule = {}
