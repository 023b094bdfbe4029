"""`make run`: serve the keyserver on 127.0.0.1:PORT and say where mail goes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the keyserver (embedded default unless the environment says otherwise)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        db = settings.DATABASES["default"]
        self.stdout.write(f"Keyserver: {settings.SITE_URL}")
        self.stdout.write(f"Database:  {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME', '')}")
        if settings.EMAIL_BACKEND.endswith("filebased.EmailBackend"):
            self.stdout.write(f"Mail:      written as files to {settings.EMAIL_FILE_PATH}/")
        else:
            self.stdout.write(f"Mail:      SMTP {getattr(settings, 'EMAIL_HOST', '')}")
        worker = None
        if settings.CELERY_TASK_ALWAYS_EAGER:
            self.stdout.write("Tasks:     in-process")
        else:
            # A broker is configured: run one worker beside the web server so
            # that mail still goes out under `make run`.
            self.stdout.write(f"Tasks:     Celery worker on {settings.CELERY_BROKER_URL}")
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "attester",
                    "worker",
                    "--loglevel=INFO",
                    "--concurrency=2",
                ]
            )
        try:
            call_command("runserver", f"{options['host']}:{settings.PORT}", use_reloader=False)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
