"""The one outbound HTTP helper every upstream call goes through.

- A total deadline for the whole exchange (connect, TLS, headers, body), not
  only per-socket timeouts: an upstream that drips a byte a second is cut.
- A response size cap.
- A user agent.
- A guard against server-side request forgery: the host is resolved once,
  every address it resolves to must be public (no loopback, link-local,
  private, multicast or reserved ranges) unless configured, and the
  connection goes to that very address (no second lookup an attacker's DNS
  could answer differently), with TLS still verified against the host name.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

USER_AGENT = "openpgp-keyserver/0.1 (+federation)"


class OutboundError(Exception):
    """A call that did not produce a usable answer; `permanent` if retrying won't help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        # Upstream bytes end up in messages: keep them printable (and NUL-free
        # for PostgreSQL).
        message = "".join(c if c.isprintable() else "?" for c in message)
        super().__init__(message)
        self.permanent = permanent


class ForbiddenTarget(OutboundError):
    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.FEDERATION_ALLOWED_NETWORKS]


def check_address(ip: str) -> None:
    """Refuse non-public addresses unless an allowed network holds them."""
    address = ipaddress.ip_address(ip)
    if any(address in network for network in _allowed_networks()):
        return
    if not address.is_global or address.is_multicast:
        raise ForbiddenTarget(f"refusing to connect to the non-public address {ip}")


def resolve(host: str, port: int) -> str:
    """Resolve once and check every address; return the one to connect to."""
    mapped = settings.FEDERATION_HOST_MAP.get(host.lower())
    if mapped:
        check_address(mapped)
        return str(mapped)
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        check_address(str(literal))
        return str(literal)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundError(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OutboundError(f"cannot resolve {host}")
    for ip in addresses:
        check_address(ip)
    return addresses[0]


def _connect(scheme: str, host: str, ip: str, port: int, timeout: float) -> urllib3.connection.HTTPConnection:
    """A connection to the checked address; for https the certificate is
    still verified against the host name."""
    if scheme == "https":
        return urllib3.connection.HTTPSConnection(
            ip,
            port,
            timeout=timeout,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.FEDERATION_CA_BUNDLE or None,
        )
    return urllib3.connection.HTTPConnection(ip, port, timeout=timeout)


def _read_body(response: Any, host: str, limit: int) -> bytes:
    body = bytearray()
    while chunk := response.read1(16384):
        body += chunk
        if len(body) > limit:
            raise OutboundError(f"answer from {host} larger than {limit} bytes", permanent=True)
    return bytes(body)


def get(
    url: str,
    *,
    timeout: float,
    max_bytes: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """GET `url` within `timeout` seconds in total, at most `max_bytes` of body."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenTarget(f"unsupported URL: {url[:100]}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    limit = max_bytes or settings.FEDERATION_MAX_RESPONSE_BYTES
    started = time.monotonic()
    deadline = started + timeout
    connection = _connect(parts.scheme, host, resolve(host, port), port, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = {
        "Host": parts.netloc.rsplit("@", 1)[-1],
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        **(headers or {}),
    }
    # Per-socket timeouts restart with every byte; this watchdog ends the
    # whole exchange at the deadline, whatever the upstream drips.
    watchdog = threading.Timer(timeout, _cut, args=(connection,))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("GET", path, headers=request_headers, preload_content=False, decode_content=False)
        response = connection.getresponse()
        body = _read_body(response, host, limit)
        if time.monotonic() >= deadline:
            raise OutboundError(f"no complete answer from {host} within {timeout:g} s")
        answer_headers = {k.lower(): v for k, v in response.headers.items()}
        return Response(response.status, body, answer_headers, time.monotonic() - started)
    except OutboundError:
        raise
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
        if time.monotonic() >= deadline - 0.05:
            raise OutboundError(f"no complete answer from {host} within {timeout:g} s") from None
        raise OutboundError(f"{host}: {exc.__class__.__name__}: {str(exc)[:150]}") from None
    finally:
        watchdog.cancel()
        connection.close()


def _cut(connection: urllib3.connection.HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
