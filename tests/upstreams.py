"""Misbehaving and well-behaved HTTP upstreams on 127.0.0.1, for federation tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from .conftest import free_port


class RawServer:
    """A TCP server whose per-connection behaviour is a function of the socket."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.behaviour = behaviour
        self.running = True
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(5)
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def silent(conn: socket.socket) -> None:
    """Accepts the connection and never answers."""
    _read_request(conn)
    time.sleep(30)


def garbage(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"\x00\xff this is not HTTP at all \r\n\r\n")


def too_many(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\nRetry-After: 60\r\n\r\nslow")


def drip(conn: socket.socket) -> None:
    """Answers one byte a second, forever."""
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(60):
        conn.sendall(b"x")
        time.sleep(1)


def drip_closing(conn: socket.socket) -> None:
    """Like drip, as an HTTP/1.0 answer ending with the connection (the
    client library then hands the socket to the response)."""
    _read_request(conn)
    conn.sendall(b"HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(60):
        conn.sendall(b"x")
        time.sleep(1)


def drip_headers(conn: socket.socket) -> None:
    _read_request(conn)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 60:
        conn.sendall(bytes([byte]))
        time.sleep(1)


def huge(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    block = b"A" * 65536
    for _ in range(2000):
        conn.sendall(block)


def answer(status: int, body: bytes, content_type: str = "text/plain") -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        _read_request(conn)
        head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body)

    return behaviour


class Scripted:
    """An HTTP server answering GET paths from a dict the test can change."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: list[str] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                scripted.hits.append(self.path)
                status, body = scripted.routes.get(self.path.split("?")[0], (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
