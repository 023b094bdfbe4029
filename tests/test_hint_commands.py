"""Every gpg and sq command the pages print works, exactly as printed.

The pages (/, /about/api, and the "Address published" page after a real
confirmation) are rendered by a live server; each command in a <pre> or
<code> block that starts with `gpg ` or `sq ` is run with real GnuPG (a
fresh GNUPGHOME, --batch) or real sq against that server. Only the
placeholders the page marks with <var> are replaced: FINGERPRINT, FILE and
the example address, by a published key's values.
"""

from __future__ import annotations

import html
import itertools
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from keys.models import Key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gpg, pytest.mark.sq]

ADDRESS = "hinta@example.org"
BLOCK = re.compile(r"<(pre|code)\b[^>]*>(.*?)</\1>", re.S)
VAR = re.compile(r"<var>(.*?)</var>")
SENDERS = itertools.count()


@pytest.fixture
def server(live_server, settings, smtp):
    port = urlparse(live_server.url).port
    settings.SITE_URL = f"http://127.0.0.1:{port}"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return {"url": settings.SITE_URL, "hkp": f"hkp://127.0.0.1:{port}", "smtp": smtp}


def commands(page: str) -> list[tuple[str, list[str]]]:
    """(the command with its placeholders marked {NAME}, the placeholders) of
    each gpg or sq line in the page's <pre> and <code> blocks."""
    found = []
    for _tag, block in BLOCK.findall(page):
        for line in block.splitlines():
            names = VAR.findall(line)
            text = html.unescape(VAR.sub(lambda m: "{" + m.group(1) + "}", line)).strip()
            if text.startswith(("gpg ", "sq ")):
                found.append((text, [html.unescape(n) for n in names]))
    return found


def fill(command: str, names: list[str], values: dict[str, str]) -> list[str]:
    for name in names:
        command = command.replace("{" + name + "}", values[name])
    assert "{" not in command, command
    return shlex.split(command)


def sq(argv: list[str], home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, timeout=60, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}
    )


def sends(argv: list[str]) -> bool:
    return "--send-keys" in argv or (argv[0] == "sq" and "send" in argv)


def run_send(argv: list[str], names: list[str], command: str, gpg_factory, tmp_path: Path) -> None:
    """A send command, with a new key made for it: the server must store the key."""
    owner = gpg_factory()
    fpr = owner.generate(f"Sender <send-{next(SENDERS)}@example.org>")
    exported = tmp_path / f"{fpr}.asc"
    exported.write_bytes(owner.run("--export", "--armor", fpr).stdout)
    argv = fill(command, names, {"FINGERPRINT": fpr, "FILE": str(exported)})
    done = owner.run(*argv[1:], check=False) if argv[0] == "gpg" else sq(argv, tmp_path)
    assert done.returncode == 0, (command, done.stderr.decode())
    assert Key.objects.filter(fingerprint=fpr).exists(), command


def run_lookup(argv: list[str], fpr: str, command: str, gpg_factory, tmp_path: Path) -> None:
    """A lookup in an empty home: exit 0 and the published key imported or printed."""
    if argv[0] == "sq":
        done = sq(argv, tmp_path)
        assert done.returncode == 0, (command, done.stderr.decode())
        checker = gpg_factory()
        checker.run("--import", input=done.stdout)
        assert f"fpr:::::::::{fpr}:" in checker.colons(fpr), command
        return
    reader = gpg_factory()
    if "--search-keys" in argv:
        # It lists what it found and asks which to import: the person answers 1.
        done = reader.run("--command-fd", "0", *argv[1:], input=b"1\n", check=False)
        assert f"key {fpr[-16:]}" in done.stdout.decode(), (command, done.stdout.decode())
    else:
        done = reader.run(*argv[1:], check=False)
    assert done.returncode == 0, (command, done.stderr.decode())
    assert f"fpr:::::::::{fpr}:" in reader.colons(fpr), command


def test_every_printed_gpg_and_sq_command_works(server, gpg_factory, tmp_path):
    assert shutil.which("sq"), "sq is not installed (apt-get install sq)"
    shown: dict[str, list[tuple[str, list[str]]]] = {}
    for path in ("/", "/about/api"):
        answer = requests.get(server["url"] + path, timeout=10)
        assert answer.status_code == 200
        shown[path] = commands(answer.text)

    # The published key: sent with gpg, confirmed by its mail (as test_gpg_e2e.confirm, keeping the page).
    owner = gpg_factory(server["hkp"])
    fpr = owner.generate(f"Hinta <{ADDRESS}>")
    owner.run("--send-keys", fpr)
    link = server["smtp"].link(ADDRESS)
    session = requests.Session()
    page = session.get(link, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    verified = session.post(link, data={"csrfmiddlewaretoken": token.group(1)}, timeout=10)
    assert verified.status_code == 200 and "Address published" in verified.text
    shown["verified"] = commands(verified.text)

    values = {"FINGERPRINT": fpr, "alice@example.org": ADDRESS}
    ran: list[str] = []
    for where, found in shown.items():
        assert found, f"no command on {where}"
        for command, names in found:
            if "wkd" in command:
                # Asks the address's domain over HTTPS, not this server: tests/test_wkd.py.
                assert where == "/about/api" and server["hkp"] not in command, command
                continue
            assert server["hkp"] in command, (where, command)
            argv = shlex.split(command)
            if sends(argv):
                run_send(argv, names, command, gpg_factory, tmp_path)
            else:
                run_lookup(fill(command, names, values), fpr, command, gpg_factory, tmp_path)
            ran.append(f"{where}: {command}")
    tools = {line.split(": ", 1)[1].split()[0] for line in ran}
    assert tools == {"gpg", "sq"}, ran
    assert any("--locate-keys" in line and ADDRESS in line for line in ran), ran
