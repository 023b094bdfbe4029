"""The outbound helper against misbehaving upstreams: bounded time, clear outcome."""

from __future__ import annotations

import time

import pytest

from federation import http as outbound

from . import upstreams


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def test_a_normal_answer(serve_raw):
    server = serve_raw(upstreams.answer(200, b"hello"))
    response = outbound.get(server.url + "/x", timeout=2)
    assert (response.status, response.body) == (200, b"hello")


@pytest.mark.parametrize(
    "behaviour", [upstreams.silent, upstreams.drip, upstreams.drip_closing, upstreams.drip_headers]
)
def test_a_slow_upstream_is_cut_at_the_total_deadline(serve_raw, behaviour):
    server = serve_raw(behaviour)
    started = time.monotonic()
    with pytest.raises(outbound.OutboundError, match="within 2 s"):
        outbound.get(server.url, timeout=2)
    assert time.monotonic() - started < 3


def test_garbage_is_a_clear_error(serve_raw):
    server = serve_raw(upstreams.garbage)
    with pytest.raises(outbound.OutboundError):
        outbound.get(server.url, timeout=2)


def test_a_429_is_returned_to_the_caller(serve_raw):
    server = serve_raw(upstreams.too_many)
    assert outbound.get(server.url, timeout=2).status == 429


def test_an_oversized_answer_is_cut(serve_raw, settings):
    server = serve_raw(upstreams.huge)
    with pytest.raises(outbound.OutboundError, match="larger than"):
        outbound.get(server.url, timeout=5, max_bytes=100_000)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://[::1]:9/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.0.1/",
        "http://localhost:9/",
        "http://0.0.0.0/",
        # IPv6 forms that carry a non-public IPv4 address: compatible, mapped,
        # NAT64 (well-known and local-use prefixes), 6to4, Teredo.
        "http://[::127.0.0.1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://[::ffff:10.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[64:ff9b:1::c0a8:1]/",
        "http://[2002:7f00:1::1]/",
        "http://[2002:0a00:0001::1]/",
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",
    ],
)
def test_private_targets_are_refused_unless_allowed(settings, url):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    with pytest.raises(outbound.ForbiddenTarget):
        outbound.get(url, timeout=1)


@pytest.mark.parametrize("ip", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2a00:1450:4001::1"])
def test_embedded_public_ipv4_and_plain_public_ipv6_pass_the_guard(settings, ip):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    outbound.check_address(ip)


def test_a_name_resolving_to_a_private_address_is_refused(settings):
    settings.FEDERATION_ALLOWED_NETWORKS = []
    settings.FEDERATION_HOST_MAP = {"keys.internal.example": "10.0.0.7"}
    with pytest.raises(outbound.ForbiddenTarget):
        outbound.get("http://keys.internal.example/", timeout=1)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "ftp://example.org/"])
def test_other_schemes_are_refused(url):
    with pytest.raises(outbound.ForbiddenTarget):
        outbound.get(url, timeout=1)
