"""The one outbound HTTP helper every upstream call goes through.

- A total deadline for the whole exchange (connect, TLS, headers, body), not
  only per-socket timeouts: an upstream that drips a byte a second is cut.
- A response size cap.
- A user agent.
- A guard against server-side request forgery: the host is resolved once,
  every address it resolves to must be public (no loopback, link-local,
  private, multicast or reserved ranges, nor such an IPv4 address inside an
  IPv6 one: mapped, compatible, NAT64, 6to4) unless configured, and the
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


# IPv6 prefixes whose addresses carry an IPv4 address a gateway may forward
# to: NAT64 (RFC 6052 well-known, RFC 8215 local use) and IPv4-compatible.
# Python's is_global judges them by the IPv6 prefix alone, so ::127.0.0.1 or
# 64:ff9b::7f00:1 would pass; they are judged by the IPv4 address inside.
_NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64,
    6to4), if any. (Teredo's 2001::/32 is not global in the first place.)"""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _NAT64) or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not address.is_global or address.is_multicast:
        return False
    inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return inner is None or _public(inner)


def check_address(ip: str) -> None:
    """Refuse non-public addresses unless an allowed network holds them."""
    address = ipaddress.ip_address(ip)
    if any(address in network for network in _allowed_networks()):
        return
    if not _public(address):
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
    # The socket is remembered once connected: http.client hands it over to
    # the response (and forgets it) when the answer ends with the connection.
    sockets: list[socket.socket] = []
    watchdog = threading.Timer(timeout, _cut, args=(connection, sockets))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("GET", path, headers=request_headers, preload_content=False, decode_content=False)
        if connection.sock is not None:
            sockets.append(connection.sock)
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


def _cut(connection: urllib3.connection.HTTPConnection, sockets: list[socket.socket]) -> None:
    for sock in [*sockets, getattr(connection, "sock", None)]:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
