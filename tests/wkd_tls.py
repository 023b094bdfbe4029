"""Real WKD clients against the test server, changing nothing on the machine.

gpg and sq fetch WKD only over HTTPS on port 443 from <domain> and
openpgpkey.<domain>, and dirmngr 2.2 trusts only the system CA bundle. So:
a throwaway CA and a leaf certificate for the names; a TLS front on
127.0.0.1:443 that forwards to the server (Host header unchanged); and the
client run under `unshare -m` with bind-mounted copies of /etc/hosts, the CA
bundle and /etc/resolv.conf, which vanish with the namespace.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """(CA certificate, leaf certificate, leaf key) for `names`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("keyserver test CA"))
        .issuer_name(_name("keyserver test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, leaf_path, key_path = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, leaf_path, key_path


class TlsFront:
    """TLS on 127.0.0.1:443, forwarding the bytes to the test server.

    `requests` counts TLS connections; `heads` keeps (request line, Host)
    of the first request on each, so a test can tell which WKD method a
    client used. Port 443 is shared by every test that runs a real WKD
    client: with `wait`, a busy port is retried for that many seconds.
    """

    def __init__(self, leaf: Path, key: Path, backend_port: int, port: int = 443, wait: float = 0.0) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(leaf, key)
        self.backend_port = backend_port
        self.sock = _bind(port, wait)
        self.sock.listen(16)
        self.running = True
        self.requests = 0
        self.heads: list[tuple[str, str]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.running:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return
        self.requests += 1
        backend = socket.create_connection(("127.0.0.1", self.backend_port))

        def pipe(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (source, sink):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(backend, tls), daemon=True).start()
        with contextlib.suppress(OSError):
            if first := tls.recv(65536):
                self.heads.append(_head(first))
                backend.sendall(first)
        pipe(tls, backend)
        tls.close()
        backend.close()

    def close(self) -> None:
        self.running = False
        # close() alone does not wake a thread blocked in accept(): the port
        # would stay taken.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _bind(port: int, wait: float) -> socket.socket:
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _head(data: bytes) -> tuple[str, str]:
    """(request line, Host) of the start of an HTTP request."""
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    host = next((v.strip() for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "host"), "")
    return lines[0], host


def run_in_namespace(names: list[str], ca: Path, commands: list[list[str]], workdir: Path) -> str:
    """Run `commands` under `unshare -m` with private hosts, CA bundle and resolver.

    The copies are bind-mounted inside a private mount namespace, so they
    vanish with it; GNUPGHOME and HOME are a fresh directory, removed after
    (a dirmngr started outside would have read the real files). Returns
    stdout and stderr together.
    """
    hosts = workdir / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names))
    bundle = workdir / "ca-certificates.crt"
    bundle.write_bytes(SYSTEM_BUNDLE.read_bytes() + b"\n" + ca.read_bytes())
    resolv = workdir / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    # Short, under /tmp: the gpg-agent and dirmngr sockets must fit.
    home = tempfile.mkdtemp(dir="/tmp", prefix="wkd.")
    try:
        script = " && ".join(
            [
                f"mount --bind {hosts} /etc/hosts",
                f"mount --bind {bundle} {SYSTEM_BUNDLE}",
                f"mount --bind {resolv} /etc/resolv.conf",
                f"export GNUPGHOME={home} HOME={home}",
            ]
        )
        body = "; ".join(shlex.join(c) for c in commands)
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"{script} && {{ {body}; }}; gpgconf --kill all"],
            capture_output=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
