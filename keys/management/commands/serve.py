"""`make serve`: the production stack on this machine.

nginx in front (deploy/nginx: published answers from files, buffering,
body cap, lookup rate limit, static assets), granian behind it, and the
follower that keeps this node's file tree equal to the database. The
database is DATABASE_URL (PostgreSQL in production). Prints the URL, stops
every part on Ctrl-C.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from string import Template
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import translation

from keys import metrics
from keys.errors import NotFound

DEPLOY = Path(settings.BASE_DIR) / "deploy" / "nginx"
TEMPLATES = ("nginx.conf.template", "keyserver-routes.conf", "keyserver-headers.conf", "keyserver.lua")


def server_names(hosts: list[str]) -> str:
    """ALLOWED_HOSTS as nginx server names (".example.org" means the same)."""
    names = ["_" if h == "*" else h for h in dict.fromkeys(hosts) if h]
    return " ".join(names) or "_"


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def messages() -> str:
    """keyserver_messages.lua: the application's 404 of a final miss in every
    protocol and language, byte for byte (keys.views.http.error_response)."""
    bodies: dict[str, dict[str, str]] = {"hkp": {}, "vks": {}, "attester": {}}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            message = str(NotFound.default_message)
        bodies["hkp"][code] = message + "\n"
        bodies["vks"][code] = json.dumps({"error": message})
        bodies["attester"][code] = json.dumps({"error": {"code": 404, "message": message}})
    lines = ["-- Written by manage.py serve from the translation catalogue.", "return {"]
    lines.append("  languages = {" + ", ".join(_lua(code) for code, _ in settings.LANGUAGES) + "},")
    lines.append(f"  default = {_lua(settings.LANGUAGE_CODE)},")
    lines.append(f"  cookie = {_lua(settings.LANGUAGE_COOKIE_NAME)},")
    json_type = "application/json"
    types = {"hkp": "text/plain; charset=utf-8", "vks": json_type, "attester": json_type}
    lines.append("  types = {" + ", ".join(f"{k} = {_lua(v)}" for k, v in types.items()) + "},")
    for protocol, by_language in bodies.items():
        entries = ", ".join(f"{code} = {_lua(body)}" for code, body in by_language.items())
        lines.append(f"  {protocol} = {{{entries}}},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(run_dir: Path, values: dict[str, str]) -> Path:
    """Write the nginx configuration into run_dir; the main file's path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATES:
        text = Template((DEPLOY / name).read_text()).safe_substitute(values)
        (run_dir / name.removesuffix(".template")).write_text(text)
    (run_dir / "keyserver_messages.lua").write_text(messages())
    return run_dir / "nginx.conf"


def nginx_values(run_dir: Path, *, listen: str, app: str, workers: str = "auto") -> dict[str, str]:
    exempt = "".join(f"        {net} 1;\n" for net in settings.SERVE_LOOKUP_RATE_EXEMPT)
    return {
        "WORKERS": workers,
        "RUN_DIR": str(run_dir),
        "CONF_DIR": str(run_dir),
        "ACCESS_LOG": "off",
        "LISTEN": listen,
        "SERVER_NAMES": server_names(settings.ALLOWED_HOSTS),
        "PUBLISH_DIR": str(settings.PUBLISH_DIR),
        "STATIC_ROOT": str(settings.STATIC_ROOT),
        "APP_ADDRESS": app,
        "WKD_ANY_HOST": "1" if settings.WKD_ADVANCED_ANY_HOST else "0",
        "LOOKUP_RATE": settings.SERVE_LOOKUP_RATE,
        "LOOKUP_RATE_EXEMPT": exempt.rstrip("\n"),
    }


class Command(BaseCommand):
    help = "Serve the production stack: nginx in front of granian, with this node's file tree."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--app-port", type=int, default=0, help="gunicorn's port (default: port + 1)")
        parser.add_argument("--workers", type=int, default=settings.SERVE_WORKERS)
        parser.add_argument(
            "--front-only",
            action="store_true",
            help="run only nginx, in front of an application elsewhere (--app-address): a container",
        )
        parser.add_argument(
            "--app-address", default="", help="host:port of the application (with --front-only)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise CommandError("nginx is not installed: apt-get install nginx-light libnginx-mod-http-lua")
        run_dir = Path(settings.VAR_DIR) / "serve"
        app_port = options["app_port"] or options["port"] + 1
        app = options["app_address"] or f"127.0.0.1:{app_port}"
        conf = render(run_dir, nginx_values(run_dir, listen=f"{options['host']}:{options['port']}", app=app))
        subprocess.run([nginx, "-t", "-q", "-p", str(run_dir), "-c", str(conf)], check=True)
        call_command("collectstatic", "--noinput", verbosity=0)
        if options["front_only"]:
            front = [nginx, "-p", str(run_dir), "-c", str(conf), "-g", "daemon off;"]
            self.stdout.write(f"Front server on {options['host']}:{options['port']}, for {app}")
            self.stdout.flush()
            self._wait([subprocess.Popen(front)])
            return
        parts = self._start(nginx, run_dir, conf, app, options["workers"])
        self.stdout.write(
            f"Keyserver: http://{options['host']}:{options['port']} (nginx; the application on {app})"
        )
        self.stdout.write(f"Files:     {settings.PUBLISH_DIR} (followed); logs in {run_dir}")
        self.stdout.flush()
        self._wait(parts)

    def _start(self, nginx: str, run_dir: Path, conf: Path, app: str, workers: int) -> list[subprocess.Popen]:
        python = sys.executable
        host, port = app.rsplit(":", 1)
        metrics.clear_files(settings.PROMETHEUS_MULTIPROC_DIR)
        # granian (WSGI): measured against gunicorn's sync workers, the same
        # lookup costs a third less CPU (docs/performance.md).
        granian = [
            python, "-m", "granian", "--interface", "wsgi",
            "--host", host, "--port", port,
            "--workers", str(workers), "--blocking-threads", "1",
            "--no-ws", "--log-level", "warning",
            "attester.wsgi:application",
        ]  # fmt: skip
        follower = [python, "manage.py", "materialize", "--follow", "--quiet"]
        base = str(settings.BASE_DIR)
        return [
            subprocess.Popen(
                granian, cwd=base, stdout=open(run_dir / "app.log", "ab"), stderr=subprocess.STDOUT
            ),
            subprocess.Popen(follower, cwd=base, stdout=open(run_dir / "follow.log", "ab")),
            subprocess.Popen([nginx, "-p", str(run_dir), "-c", str(conf), "-g", "daemon off;"]),
        ]

    def _wait(self, parts: list[subprocess.Popen]) -> None:
        stopping = False

        def stop(_signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(p.poll() is None for p in parts):
                time.sleep(0.2)
        finally:
            for part in parts:
                if part.poll() is None:
                    part.send_signal(signal.SIGTERM if part is not parts[-1] else signal.SIGQUIT)
            for part in parts:
                try:
                    part.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    part.kill()
            self.stdout.write("stopped")
        failed = [p for p in parts if p.returncode not in (0, -signal.SIGTERM, -signal.SIGQUIT, None)]
        if failed and not stopping:
            raise CommandError(f"a part of the stack stopped: {failed[0].args!r}")
