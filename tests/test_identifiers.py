"""Identifiers parsed at the edge: the shortcut for plain domains agrees with IDNA."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.errors import InvalidEmail
from keys.identifiers import normalize_email, parse_search

ASCII_DOMAINS = st.text(alphabet="abcXYZ019-._", min_size=1, max_size=20)


def _reference(domain: str) -> str | None:
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


@settings(max_examples=3000, deadline=None)
@given(ASCII_DOMAINS)
def test_a_plain_domain_normalises_as_idna_would(domain):
    try:
        got = normalize_email(f"someone@{domain}").split("@")[1]
    except InvalidEmail:
        got = None
    reference = _reference(domain)
    if reference is None or "." not in reference.strip(".") or reference.endswith("."):
        assert got is None
    else:
        assert got == reference


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Example.ORG", "alice@example.org"),
        ("bob@xn--mnchen-3ya.de", "bob@xn--mnchen-3ya.de"),
        ("carol@münchen.de", "carol@xn--mnchen-3ya.de"),
        ("Dave <dave+tag@EXAMPLE.net>", "dave+tag@example.net"),
    ],
)
def test_searches_name_one_normal_address(raw, expected):
    assert parse_search(raw).value == expected


@pytest.mark.parametrize("raw", ["x@ab--cd.org", "x@-a.org", "x@a-.org", "x@a_b.org", "x@xn--zz.org"])
def test_domains_idna_refuses_stay_refused(raw):
    with pytest.raises(InvalidEmail):
        normalize_email(raw)
