"""`make run`: serve the keyserver on 127.0.0.1:PORT, with the periodic jobs.

Without a broker the beat schedule of attester/celery.py runs in a thread of
this one process (runserver without the autoreloader, so it never starts
twice); with a broker, one Celery worker with an embedded beat runs beside
the web server.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections

from attester.celery import app, beat_schedule
from keys import heartbeat

log = logging.getLogger(__name__)


def run_schedule_in_process(stop: threading.Event, first_delay: float = 5.0) -> None:
    """Send each periodic task when it is due, eagerly, in this process."""
    # A worker imports the task modules when it starts; this process must too.
    app.loader.import_default_modules()
    schedule = beat_schedule()
    next_run = {name: time.monotonic() + first_delay for name in schedule}
    while not stop.wait(1):
        for name, entry in schedule.items():
            if time.monotonic() < next_run[name]:
                continue
            next_run[name] = time.monotonic() + float(entry["schedule"])  # type: ignore[arg-type]
            try:
                app.tasks[str(entry["task"])].apply(entry.get("args", ()))  # type: ignore[arg-type]
                heartbeat.beat_ran()
            except Exception:  # a failing job must not stop the scheduler
                log.exception("periodic job %s failed", name)
            finally:
                close_old_connections()
    connections.close_all()  # this thread's connections


class Command(BaseCommand):
    help = "Serve the keyserver (embedded default unless the environment says otherwise)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--no-schedule", action="store_true", help="do not run the periodic jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        db = settings.DATABASES["default"]
        self.stdout.write(f"Keyserver: {settings.SITE_URL}")
        self.stdout.write(f"Database:  {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME', '')}")
        if settings.EMAIL_BACKEND.endswith("filebased.EmailBackend"):
            self.stdout.write(f"Mail:      written as files to {settings.EMAIL_FILE_PATH}/")
        else:
            self.stdout.write(f"Mail:      SMTP {getattr(settings, 'EMAIL_HOST', '')}")
        worker = None
        stop = threading.Event()
        if settings.CELERY_TASK_ALWAYS_EAGER:
            self.stdout.write("Tasks:     in-process, periodic jobs in a thread")
            if not options["no_schedule"]:
                threading.Thread(target=run_schedule_in_process, args=(stop,), daemon=True).start()
        else:
            self.stdout.write(f"Tasks:     Celery worker with beat on {settings.CELERY_BROKER_URL}")
            command = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "attester",
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
            ]
            if not options["no_schedule"]:
                command += ["-B", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule")]
            worker = subprocess.Popen(command)
        try:
            call_command("runserver", f"{options['host']}:{settings.PORT}", use_reloader=False)
        finally:
            stop.set()
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
