"""HKP lookups side by side with SKS: `make bench-hkp`.

One run, on this machine, with the same keys everywhere (bench/dataset.py:
Debian's keyrings plus generated keys):

- SKS 1.1.6 from Debian (`sks`), built from the dump, bound to loopback;
- this server as `make serve` runs it (nginx in front, files for published
  answers, granian behind), its keys loaded with import_dump and every
  address published as the organisation's directory would (org_directory);
- the application directly (granian, no nginx);
- nginx serving one armored key as a static file (the ceiling).

wrk (2 threads; 8 and 32 connections; with keep-alive and with a new
connection per request, as dirmngr and SKS speak) asks each one the same
requests, spread over many keys. The table gives req/s, p50, p99, errors,
the server CPU per request (every server process, from /proc) and the
ratios to SKS and to the ceiling; it is written to var/bench/vs-sks.md.

Environment: BENCH_SECONDS (default 15 per run), BENCH_KEYS (9972),
BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/keyserver_bench_hkp).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdb import fresh_database  # noqa: E402
from dataset import build  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
DATABASE = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keyserver_bench_hkp")
WORK = ROOT / "var" / "bench" / "hkp"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


# -- the servers ---------------------------------------------------------------------


def start_sks(dump: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """SKS from the dump, in a base directory of its own (paths under it, as Debian's sks wants)."""
    base = Path(tempfile.mkdtemp(prefix="sks.", dir="/tmp"))
    for sub in ("etc/sks", "var/log/sks", "var/lib/sks", "var/run/sks", "dump"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = f"hostname: localhost\nhkp_address: 127.0.0.1\nhkp_port: {port}\n"
    conf += f"recon_address: 127.0.0.1\nrecon_port: {free_port()}\n"
    (base / "etc/sks/sksconf").write_text(conf)
    (base / "etc/sks/membership").write_text("")
    shutil.copy(dump, base / "dump" / "keys.pgp")
    null = subprocess.DEVNULL

    def sks(*args: str, check: bool = True) -> None:
        subprocess.run(["sks", *args, "-basedir", str(base)], check=check, stdout=null, stderr=null)

    sks("build", str(base / "dump/keys.pgp"), "-n", "10", "-cache", "100")
    for _ in range(2):  # the first cleandb of a new database crashes; the second works
        sks("cleandb", check=False)
    sks("pbuild", "-cache", "20", "-ptree_cache", "70")
    proc = subprocess.Popen(
        ["sks", "db", "-basedir", str(base)], stdout=null, stderr=null, start_new_session=True
    )
    wait_http(f"http://127.0.0.1:{port}/pks/lookup?op=stats")
    return proc, base


def django_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "attester.settings",
            "DATABASE_URL": DATABASE,
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
            "VAR_DIR": str(WORK / "var"),
            "WKD_DOMAINS": "bench.example",
            "SERVE_LOOKUP_RATE_EXEMPT": "127.0.0.1",
            "RATE_UPLOAD_PER_CLIENT": "1000000000/60",
            "SITE_URL": "http://127.0.0.1",
        }
    )
    return env


def load_keys(dump: Path, env: dict[str, str]) -> None:
    """Import the dump and publish every address as the organisation's directory does."""
    fresh_database(DATABASE)
    manage = [PYTHON, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "createcachetable"], cwd=ROOT, env=env, check=True)
    started = time.monotonic()
    out = subprocess.run(
        [*manage, "import_dump", str(dump), "--quiet", "--state", str(WORK / "import.json")],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    print(f"import_dump: {out.splitlines()[0]} ({time.monotonic() - started:.0f} s)")
    publish = (
        "from keys.models import Binding\n"
        "from keys.services import publication\n"
        "from keys.services.locking import locked_key\n"
        "from keys.services.published_files import deferred\n"
        "with deferred():\n"
        "    for b in Binding.objects.filter(state='unpublished').only('id', 'key_id'):\n"
        "        with locked_key(b.key_id) as key:\n"
        "            binding = key.bindings.get(pk=b.pk)\n"
        "            publication.publish(key, binding, 'org_directory', actor='bench')\n"
    )
    subprocess.run([*manage, "shell", "-c", publish], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [*manage, "materialize", "--quiet"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )


def start_ours(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port), "--app-port", str(port + 1)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/healthz")
    wait_http(f"http://127.0.0.1:{port + 1}/healthz")
    return proc


def start_ceiling(port: int, armored: bytes) -> tuple[subprocess.Popen, Path]:
    """nginx serving one armored key under /pks/lookup: what a static file costs."""
    base = Path(tempfile.mkdtemp(prefix="ceiling.", dir="/tmp"))
    os.chmod(base, 0o755)  # noqa: S103 (nginx's workers read it)
    (base / "key.asc").write_bytes(armored)
    conf = f"""worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {base}/body; proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi; uwsgi_temp_path {base}/uwsgi; scgi_temp_path {base}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /pks/lookup {{ default_type application/pgp-keys; alias {base}/key.asc; }}
    }}
}}
"""
    (base / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(["nginx", "-p", str(base), "-c", str(base / "nginx.conf"), "-g", "daemon off;"],
                            start_new_session=True)  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/pks/lookup")
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    with_group = proc.pid
    try:
        os.killpg(with_group, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(with_group, signal.SIGKILL)


# -- load and CPU ---------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found[int(pid)] = (parent, cmd)
    return found


def server_pids(roots: list[int], patterns: list[str], only: str = "") -> list[int]:
    """The processes under `roots` (whose command matches `only`, if given),
    and every process matching one of `patterns` (database backends, Redis)."""
    table = _processes()
    tree = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, (parent, _cmd) in table.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    chosen = {pid for pid in tree if pid in table and (not only or re.search(only, table[pid][1]))}
    chosen |= {pid for pid, (_p, cmd) in table.items() if any(re.search(p, cmd) for p in patterns)}
    return sorted(chosen)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    rps: float
    p50: str
    p99: str
    errors: int
    cpu_us: float


def wrk_script(paths: list[str], close: bool, post_bodies: list[str] | None = None) -> Path:
    lines = ["local paths = {" + ",".join(json.dumps(p) for p in paths) + "}"]
    if post_bodies:
        lines.append("local bodies = {" + ",".join(json.dumps(b) for b in post_bodies) + "}")
    lines.append("request = function()")
    lines.append("  local headers = {}")
    if close:
        lines.append('  headers["Connection"] = "close"')
    if post_bodies:
        lines.append('  headers["Content-Type"] = "application/x-www-form-urlencoded"')
        lines.append('  return wrk.format("POST", paths[1], headers, bodies[math.random(#bodies)])')
    else:
        lines.append('  return wrk.format("GET", paths[math.random(#paths)], headers)')
    lines.append("end")
    script = Path(tempfile.mkstemp(suffix=".lua", dir="/tmp")[1])
    script.write_text("\n".join(lines) + "\n")
    return script


def run_wrk(base: str, script: Path, connections: int, pids: Callable[[], list[int]], misses: bool) -> Result:
    """One wrk run; errors are socket errors, and answers other than 2xx
    (other than 404 where misses are asked for)."""
    before = {pid: cpu_seconds([pid]) for pid in pids()}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{SECONDS}s", "--latency", "-s", str(script), base],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # Per process, so a database backend replaced during the run neither
    # counts twice nor subtracts.
    used = sum(cpu_seconds([pid]) - before.get(pid, 0.0) for pid in pids())
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, flags=re.MULTILINE))
    return Result(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50=latency.get("50", "?"),
        p99=latency.get("99", "?"),
        errors=errors + (int(non2xx.group(1)) if non2xx and not misses else 0),
        cpu_us=used / max(requests, 1) * 1e6,
    )


# -- the requests ------------------------------------------------------------------------


def sample(env: dict[str, str]) -> dict[str, list[str]]:
    """Fingerprints, addresses and WKD paths of published keys, and absent addresses."""
    code = (
        "import json, random\n"
        "from keys.models import Binding\n"
        "rows = list(Binding.objects.filter(state='published').values_list('key__fingerprint', 'address', 'domain', 'wkd_hash')[:100000])\n"
        "random.seed(7); random.shuffle(rows)\n"
        "print(json.dumps(rows[:2000]))\n"
    )  # fmt: skip
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    rows = json.loads(out.strip().splitlines()[-1])
    random.seed(11)
    return {
        "fingerprints": [r[0] for r in rows],
        "addresses": [r[1] for r in rows],
        "wkd": [f"/.well-known/openpgpkey/{r[2]}/hu/{r[3]}" for r in rows if r[2] == "bench.example"],
        "absent": [f"nobody{random.randrange(10**9)}@bench.example" for _ in range(2000)],
    }


def requests_of(keys: dict[str, list[str]], dump: Path) -> dict[str, dict]:
    q = lambda a: quote(a, safe="@")  # noqa: E731
    stored = stored_bodies(dump)
    return {
        "HKP get by fingerprint": {"paths": [f"/pks/lookup?op=get&options=mr&search=0x{f}" for f in keys["fingerprints"]]},
        "HKP get by address": {"paths": [f"/pks/lookup?op=get&options=mr&search={q(a)}" for a in keys["addresses"]]},
        "HKP index by address (mr)": {"paths": [f"/pks/lookup?op=index&options=mr&fingerprint=on&search={q(a)}" for a in keys["addresses"]]},
        "HKP get of an absent key": {"paths": [f"/pks/lookup?op=get&options=mr&search={a}" for a in keys["absent"]], "misses": True},
        "POST /pks/add of a stored key": {"paths": ["/pks/add"], "bodies": stored},
        "VKS by-email": {"paths": [f"/vks/v1/by-email/{q(a)}" for a in keys["addresses"]], "ours_only": True},
        "WKD (advanced)": {"paths": keys["wkd"], "ours_only": True},
    }  # fmt: skip


def stored_bodies(dump: Path) -> list[str]:
    """Form bodies of 50 generated keys exactly as they are stored (an unchanged re-upload)."""
    from keys.openpgp import armor, iter_certificates

    bodies = []
    with dump.open("rb") as stream:
        for _start, _end, data in list(iter_certificates(stream))[-50:]:
            bodies.append("keytext=" + quote(armor(data), safe=""))
    return bodies


# -- the run -------------------------------------------------------------------------------


def main() -> None:
    if not shutil.which("wrk") or not shutil.which("sks"):
        sys.exit("needs Debian's wrk and sks: apt-get install wrk sks")
    WORK.mkdir(parents=True, exist_ok=True)
    dump = build()
    env = django_env()
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "VAR_DIR")})
    load_keys(dump, env)
    keys = sample(env)
    sks_port, ours_port, ceiling_port = free_port(), free_port(), free_port()
    sks, sks_base = start_sks(dump, sks_port)
    ours = start_ours(env, ours_port)
    armored = subprocess.run(["curl", "-s", f"http://127.0.0.1:{ours_port}/pks/lookup?op=get&options=mr&search=0x{keys['fingerprints'][0]}"],
                             capture_output=True, check=True).stdout  # fmt: skip
    ceiling, ceiling_base = start_ceiling(ceiling_port, armored)
    database = DATABASE.rsplit("/", 1)[1]
    backends = [f"postgres: .*{database}", "redis-server"]
    targets: dict[str, tuple[str, Callable[[], list[int]]]] = {
        "SKS": (f"http://127.0.0.1:{sks_port}", lambda: server_pids([sks.pid], [])),
        "make serve": (f"http://127.0.0.1:{ours_port}", lambda: server_pids([ours.pid], backends)),
        "application": (
            f"http://127.0.0.1:{ours_port + 1}",
            lambda: server_pids([ours.pid], backends, only="granian"),
        ),
        "ceiling": (f"http://127.0.0.1:{ceiling_port}", lambda: server_pids([ceiling.pid], [])),
    }
    rows = []
    try:
        for name, spec in requests_of(keys, dump).items():
            for close in (False, True):
                for connections in (8, 32):
                    measured: dict[str, Result] = {}
                    for target, (base, pids) in targets.items():
                        if target == "SKS" and spec.get("ours_only"):
                            continue
                        if target == "ceiling" and name != "HKP get by fingerprint":
                            continue
                        script = wrk_script(spec["paths"], close, spec.get("bodies"))
                        misses = bool(spec.get("misses"))
                        measured[target] = run_wrk(base, script, connections, pids, misses)
                        script.unlink()
                    rows.append((name, "close" if close else "keep-alive", connections, measured))
                    print(format_row(rows[-1]), flush=True)
    finally:
        for proc in (ceiling, ours, sks):
            stop(proc)
        shutil.rmtree(sks_base, ignore_errors=True)
        shutil.rmtree(ceiling_base, ignore_errors=True)
    write_table(rows)


def format_row(row: tuple) -> str:
    name, mode, connections, measured = row
    parts = [f"{name} · {mode} · c={connections}"]
    for target, r in measured.items():
        parts.append(
            f"{target}: {r.rps:,.0f}/s p50 {r.p50} p99 {r.p99} err {r.errors} cpu {r.cpu_us:,.0f} µs"
        )
    return " | ".join(parts)


def write_table(rows: list[tuple]) -> None:
    header = (
        "| request | conn. | c | SKS req/s | serve req/s | app req/s | ceiling req/s | serve/SKS | serve/ceiling "
        "| SKS p99 | serve p50 / p99 | errors (SKS/serve/app) | CPU µs/req (SKS/serve/app/ceiling) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for name, mode, connections, m in rows:
        sks, serve, app, ceil = m.get("SKS"), m["make serve"], m["application"], m.get("ceiling")

        def value(result: Result | None, attr: str, fmt: str = "{:,.0f}") -> str:
            return "–" if result is None else fmt.format(getattr(result, attr))

        ratio_sks = f"{serve.rps / sks.rps:.1f}×" if sks else "–"
        ratio_ceiling = f"{serve.rps / ceil.rps:.2f}" if ceil else "–"
        errors = f"{value(sks, 'errors')}/{serve.errors}/{app.errors}"
        cpu = f"{value(sks, 'cpu_us')}/{serve.cpu_us:,.0f}/{app.cpu_us:,.0f}/{value(ceil, 'cpu_us')}"
        lines.append(
            f"| {name} | {mode} | {connections} | {value(sks, 'rps')} | {serve.rps:,.0f} | {app.rps:,.0f} "
            f"| {value(ceil, 'rps')} | {ratio_sks} | {ratio_ceiling} | {value(sks, 'p99', '{}')} "
            f"| {serve.p50} / {serve.p99} | {errors} | {cpu} |"
        )
    table = header + "\n".join(lines) + "\n"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"Measured {stamp}, {SECONDS} s per run, {os.cpu_count()} cores shared by wrk and the servers.\n\n{table}"
    (ROOT / "var" / "bench" / "vs-sks.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
