"""A real nginx in front of the test's live server, configured as `make serve` does it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from keys.management.commands.serve import nginx_values, render

from .conftest import free_port


class Front:
    def __init__(self, run_dir: Path, app_address: str) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RuntimeError("nginx is not installed (apt-get install nginx-light libnginx-mod-http-lua)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.run_dir = run_dir
        conf = render(
            run_dir, nginx_values(run_dir, listen=f"127.0.0.1:{self.port}", app=app_address, workers="1")
        )
        self.proc = subprocess.Popen(
            [nginx, "-p", str(run_dir), "-c", str(conf), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return
            except requests.ConnectionError:
                if self.proc.poll() is not None:
                    error = self.proc.stderr.read().decode() if self.proc.stderr else "nginx died"
                    raise RuntimeError(error) from None
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()

    def error_log(self) -> str:
        path = self.run_dir / "nginx-error.log"
        return path.read_text() if path.exists() else ""


def readable_dir(prefix: str) -> Path:
    """A directory nginx's workers (not root) can read: pytest's own are private."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path
