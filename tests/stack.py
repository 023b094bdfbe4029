"""The production stack in processes of its own, for fault tests and the
outage benchmark: a PostgreSQL cluster and a Redis on free ports (never the
shared ones), gunicorn, a Celery worker with its beat, and an SMTP sink.
Each part can be stopped and started again while the others run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from .conftest import SmtpSink, free_port

ROOT = Path(__file__).resolve().parent.parent


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found: apt-get install postgresql")
    return str(found[-1])


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def wait_for(check, timeout: float, what: str) -> float:
    """Poll `check` until it is true; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout} s")


class OwnPostgres:
    """A throwaway cluster (trust auth, no fsync) on a free port."""

    def __init__(self) -> None:
        self._place("ks-pg-")
        subprocess.run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        self.start()
        subprocess.run(
            _as_postgres(
                [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "keyserver"]
            ),
            check=True,
            capture_output=True,
        )

    def _place(self, prefix: str) -> None:
        """A directory postgres may write, and a free port."""
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.dir, 0o777)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/keyserver"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-w", *args]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        self._ctl("-o", options, "-l", str(self.dir / "log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    """A Redis as docker-compose runs it: nothing persisted, a restart empties it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: (
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout
                == b"PONG\n"
            ),
            10,
            "redis",
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def remove(self) -> None:
        self.stop()


class Stack:
    """gunicorn and a Celery worker (with beat) on their own PostgreSQL,
    Redis and SMTP sink."""

    def __init__(self, var: Path, *, workers: int = 2, **extra_env: str) -> None:
        self.var = var
        self.pg = OwnPostgres()
        self.redis = OwnRedis()
        self.smtp = SmtpSink()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "attester.settings",
                "VAR_DIR": str(var),
                "DATABASE_URL": self.pg.url,
                "REDIS_URL": self.redis.url,
                "CELERY_BROKER_URL": self.redis.url,
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "EMAIL_URL": f"smtp://127.0.0.1:{self.smtp.port}",
                "SITE_URL": self.url,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECRET_KEY": "outage-tests-" + "x" * 40,
                "OUTBOX_SWEEP_SECONDS": "2",
                "CONN_MAX_AGE": "60",
                "FEDERATION_ALLOWED_NETWORKS": "127.0.0.0/8",
                "WKD_DOMAINS": "example.org",
                **extra_env,
            }
        )
        self.manage("migrate", "--noinput")
        self.manage("createcachetable")
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.workers = workers
        self.start_web()
        self.start_worker()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        # The child keeps its own copy of the file descriptor.
        with open(self.var / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_web(self) -> None:
        self.web = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "attester.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "--timeout",
                "30",
                "--graceful-timeout",
                "5",
            ],
        )
        wait_for(lambda: requests.get(f"{self.url}/healthz", timeout=1).ok, 30, "gunicorn")

    def start_worker(self) -> None:
        self.worker = self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "attester",
                "worker",
                "--pool=solo",
                "-B",
                "-s",
                str(self.var / "beat-schedule"),
                "--without-mingle",
                "--without-gossip",
                "-l",
                "info",
            ],
        )
        wait_for(lambda: b"ready" in (self.var / "worker.log").read_bytes(), 60, "celery worker")

    def stop_worker(self) -> None:
        self._stop(self.worker)
        self.worker = None
        # The next start waits for its own "ready".
        (self.var / "worker.log").rename(self.var / f"worker-{time.monotonic_ns()}.log")

    @staticmethod
    def _stop(proc: subprocess.Popen | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def close(self) -> None:
        self._stop(self.web)
        self._stop(self.worker)
        self.smtp.stop()
        self.redis.remove()
        self.pg.remove()

    # -- what the tests ask ---------------------------------------------------

    def upload_and_request(self, armored: str, *addresses: str) -> requests.Response:
        upload = requests.post(f"{self.url}/vks/v1/upload", json={"keytext": armored}, timeout=30)
        upload.raise_for_status()
        return requests.post(
            f"{self.url}/vks/v1/request-verify",
            json={"token": upload.json()["token"], "addresses": list(addresses)},
            timeout=30,
        )

    def query(self, sql: str) -> list[tuple]:
        """Rows of a statement on the stack's own database."""
        import psycopg

        with psycopg.connect(self.pg.url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
            return conn.execute(sql).fetchall()

    def outbox(self) -> dict[str, int]:
        """Outbox rows by state."""
        return dict(self.query("SELECT state, count(*) FROM keys_outboxmail GROUP BY state"))

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.var.glob("*.log")))
