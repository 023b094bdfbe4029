"""The LDAP source: an organisation's directory, with python-ldap.

Two layouts (Source.options["layout"]):

- "keyserver" (default): the OpenPGP LDAP keyserver schema GnuPG's dirmngr
  uses. `cn=PGPServerInfo` (under each naming context of the root DSE, or
  under options["base_dn"] and then its parent, as dirmngr does) names the
  key space in `pgpBaseKeySpaceDN`; each key is a `pgpKeyInfo` entry below it
  with the armored key block in `pgpKey` (what `gpg --send-keys ldap://...`
  writes; the legacy PGP.com servers used `pgpKeyV2`, also read), the long
  key id in `pgpCertID`, subkey ids in `pgpSubKeyID`, fingerprints in
  `gpgFingerprint`/`gpgSubFingerprint` and addresses in `gpgMailbox` (the
  last three only with the v2 schema; `pgpUserID` always).
- "directory": a plain directory: the entries found by options["filter"]
  (default `(mail={email})`) under options["base_dn"] carry the key in
  options["attribute"] (default `pgpKey`), armored or binary. Addresses only.

Options: layout, base_dn, bind_dn, bind_password (anonymous without them),
starttls (bool), ca_file (CA bundle for ldaps:// and StartTLS; default
settings.FEDERATION_CA_BUNDLE, else the system's), size_limit (entries per
search, default 20), filter and attribute (directory layout).

Every call: the host is checked by the outbound SSRF guard first; one
deadline (the source's timeout) covers connecting, TLS, binding and every
search, each operation getting what is left of it; at most size_limit
entries and FEDERATION_MAX_RESPONSE_BYTES of values are read (entries are
read one by one, the search abandoned past either cap). Without TLS the
connection goes to the address the guard checked (no second DNS lookup);
with TLS it goes to the host name, which the certificate is verified against.

Importing this module needs python-ldap (kept at the top: federation.sources
falls back to a stand-in that reports the source as unavailable).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

import ldap
import ldap.dn
import ldap.filter
from django.conf import settings

from keys.identifiers import Query

from .. import http
from .base import SourceError, Upstream

KEY_ATTRIBUTES = ("pgpKey", "pgpKeyV2")
DEFAULT_SIZE_LIMIT = 20
MAX_SIZE_LIMIT = 1000

# Errors that asking again later will not fix: the configuration is wrong.
_PERMANENT: dict[type[ldap.LDAPError], str] = {
    ldap.INVALID_CREDENTIALS: "the directory refused the bind credentials",
    ldap.INAPPROPRIATE_AUTH: "the directory refused the bind credentials",
    ldap.CONFIDENTIALITY_REQUIRED: "the directory requires TLS (set starttls or use ldaps://)",
    ldap.STRONG_AUTH_REQUIRED: "the directory requires stronger authentication",
    ldap.INSUFFICIENT_ACCESS: "the bind user may not read the directory",
    ldap.INVALID_DN_SYNTAX: "invalid base DN",
    ldap.FILTER_ERROR: "invalid search filter",
    ldap.UNDEFINED_TYPE: "the directory does not know the attribute",
    ldap.SIZELIMIT_EXCEEDED: "too many entries match",
}


class LdapUpstream(Upstream):
    def fetch(self, query: Query) -> list[bytes]:
        options: dict[str, Any] = self.row.options or {}
        layout = options.get("layout", "keyserver")
        if layout not in ("keyserver", "directory"):
            raise SourceError(f"{self.name}: unknown layout {str(layout)[:40]!r}", permanent=True)
        if layout == "directory" and query.kind != "email":
            return []
        session = _Session(self.name, self.row.url, float(self.row.timeout), options)
        try:
            session.open()
            if layout == "directory":
                return _unique(self._directory(session, query, options))
            return _unique(self._keyserver(session, query, options))
        except ldap.NO_SUCH_OBJECT:
            return []
        except ldap.LDAPError as exc:
            raise session.error(exc) from None
        finally:
            session.close()

    # -- keyserver layout -------------------------------------------------------

    def _keyserver(self, session: _Session, query: Query, options: dict[str, Any]) -> list[bytes]:
        base = self._key_space(session, options)
        value = ldap.filter.escape_filter_chars(query.value)
        if query.kind == "email":
            search = f"(|(gpgMailbox={value})(pgpUserID=*<{value}>*)(pgpUserID={value}))"
        elif query.kind == "keyid":
            search = f"(|(pgpCertID={value})(pgpSubKeyID={value}))"
        else:
            # Servers without the v2 schema have no gpgFingerprint: the long
            # key id finds the candidate; the import checks the fingerprint.
            keyid = value[-16:] if len(value) == 40 else value[:16]
            search = (
                f"(|(gpgFingerprint={value})(gpgSubFingerprint={value})"
                f"(pgpCertID={keyid})(pgpSubKeyID={keyid}))"
            )
        entries = session.search(
            base,
            ldap.SCOPE_SUBTREE,
            f"(&(objectClass=pgpKeyInfo){search})",
            [*KEY_ATTRIBUTES, "pgpDisabled"],
        )
        blocks: list[bytes] = []
        for _dn, attrs in entries:
            if _first(attrs, "pgpDisabled").strip() not in (b"", b"0"):
                continue
            for name in KEY_ATTRIBUTES:
                blocks.extend(_values(attrs, name))
        return blocks

    def _key_space(self, session: _Session, options: dict[str, Any]) -> str:
        if options.get("base_dn"):
            given = str(options["base_dn"])
            bases = [given]
            parts = ldap.dn.str2dn(given)
            if len(parts) > 1:
                bases.append(ldap.dn.dn2str(parts[1:]))
        else:
            bases = session.naming_contexts()
        for base in bases:
            try:
                found = session.search(
                    f"cn=PGPServerInfo,{base}", ldap.SCOPE_BASE, "(objectClass=*)", ["pgpBaseKeySpaceDN"]
                )
            except ldap.NO_SUCH_OBJECT:
                continue
            for _dn, attrs in found:
                space = _first(attrs, "pgpBaseKeySpaceDN")
                if space:
                    return _text(space)
        raise SourceError(
            f"{self.name}: no cn=PGPServerInfo entry: not an OpenPGP LDAP keyserver", permanent=True
        )

    # -- directory layout -------------------------------------------------------

    def _directory(self, session: _Session, query: Query, options: dict[str, Any]) -> list[bytes]:
        template = str(options.get("filter") or "(mail={email})")
        if "{email}" not in template:
            raise SourceError(f"{self.name}: the filter option must contain {{email}}", permanent=True)
        base = str(options.get("base_dn") or next(iter(session.naming_contexts()), ""))
        attribute = str(options.get("attribute") or "pgpKey")
        search = template.replace("{email}", ldap.filter.escape_filter_chars(query.value))
        entries = session.search(base, ldap.SCOPE_SUBTREE, search, [attribute])
        return [value for _dn, attrs in entries for value in _values(attrs, attribute)]


class _Session:
    """One connection under one deadline."""

    def __init__(self, name: str, url: str, timeout: float, options: dict[str, Any]) -> None:
        self.name = name
        self.url = url
        self.timeout = max(timeout, 0.1)
        self.options = options
        self.deadline = time.monotonic() + self.timeout
        self.conn: Any = None
        try:
            size_limit = int(options.get("size_limit", DEFAULT_SIZE_LIMIT))
        except (TypeError, ValueError):
            raise SourceError(f"{name}: size_limit must be a number", permanent=True) from None
        self.size_limit = min(max(size_limit, 1), MAX_SIZE_LIMIT)
        self.max_bytes = int(settings.FEDERATION_MAX_RESPONSE_BYTES)

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ldap.TIMEOUT({"desc": "Timed out"})
        return left

    def _target(self) -> tuple[str, str, int, bool]:
        """(scheme, host to connect to, port, TLS) after the SSRF guard."""
        try:
            parts = urlsplit(self.url)
            port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        except ValueError:
            raise SourceError(f"{self.name}: invalid URL", permanent=True) from None
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise SourceError(f"{self.name}: not an ldap:// or ldaps:// URL", permanent=True)
        host = parts.hostname
        try:
            ip = http.resolve(host, port)  # SSRF guard: public targets only, unless allowed
        except http.OutboundError as exc:
            raise SourceError(f"{self.name}: {exc}", permanent=exc.permanent) from None
        tls = parts.scheme == "ldaps" or bool(self.options.get("starttls"))
        # With TLS the certificate is checked against the name; without it,
        # connect to the very address the guard checked.
        target = host if tls else ip
        return parts.scheme, f"[{target}]" if ":" in target else target, port, tls

    def open(self) -> None:
        scheme, target, port, tls = self._target()
        self.conn = ldap.initialize(f"{scheme}://{target}:{port}")
        self.conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        self.conn.set_option(ldap.OPT_REFERRALS, 0)  # never follow a referral elsewhere
        self.conn.set_option(ldap.OPT_NETWORK_TIMEOUT, self.left())
        self.conn.set_option(ldap.OPT_TIMEOUT, self.left())
        if tls:
            self.conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            ca_file = self.options.get("ca_file") or settings.FEDERATION_CA_BUNDLE
            if ca_file:
                self.conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca_file))
            self.conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if self.options.get("starttls") and scheme == "ldap":
            self.conn.start_tls_s()
        self.conn.set_option(ldap.OPT_TIMEOUT, self.left())
        self.conn.simple_bind_s(
            str(self.options.get("bind_dn") or ""), str(self.options.get("bind_password") or "")
        )

    def search(self, base: str, scope: int, filterstr: str, attributes: list[str]) -> list[tuple[str, dict]]:
        """Entries one by one, within the deadline and the caps."""
        msgid = self.conn.search_ext(
            base, scope, filterstr, attributes, timeout=self.left(), sizelimit=self.size_limit
        )
        entries: list[tuple[str, dict]] = []
        size = 0
        try:
            while True:
                kind, data, _msgid, _controls = self.conn.result3(msgid, all=0, timeout=self.left())
                if kind == ldap.RES_SEARCH_RESULT:
                    return entries
                if kind != ldap.RES_SEARCH_ENTRY:
                    continue  # search references: never followed
                for dn, attrs in data:
                    entries.append((dn, attrs))
                    size += sum(len(v) for values in attrs.values() for v in values)
                if len(entries) > self.size_limit:
                    raise ldap.SIZELIMIT_EXCEEDED({"desc": "Size limit exceeded"})
                if size > self.max_bytes:
                    raise SourceError(
                        f"{self.name}: answer larger than {self.max_bytes} bytes", permanent=True
                    )
        except BaseException:
            with contextlib.suppress(ldap.LDAPError):
                self.conn.abandon_ext(msgid)
            raise

    def naming_contexts(self) -> list[str]:
        root = self.search("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
        return [_text(v) for _dn, attrs in root for v in _values(attrs, "namingContexts")]

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(ldap.LDAPError):
                self.conn.unbind_ext_s()
            self.conn = None

    def error(self, exc: ldap.LDAPError) -> SourceError:
        """A printable SourceError; permanent when only a configuration change helps."""
        for cls, text in _PERMANENT.items():
            if isinstance(exc, cls):
                return SourceError(f"{self.name}: {text} ({_describe(exc)})", permanent=True)
        if isinstance(exc, ldap.TIMEOUT | ldap.TIMELIMIT_EXCEEDED):
            return SourceError(f"{self.name}: no answer within {self.timeout:g} s")
        if isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR):
            return SourceError(f"{self.name}: cannot reach the directory ({_describe(exc)})")
        return SourceError(f"{self.name}: {_describe(exc)}")


def _values(attrs: dict[str, list[bytes]], name: str) -> list[bytes]:
    """An attribute's values, whatever case and options (;binary) the server used."""
    wanted = name.lower()
    return [v for key, values in attrs.items() if key.split(";")[0].lower() == wanted for v in values]


def _first(attrs: dict[str, list[bytes]], name: str) -> bytes:
    values = _values(attrs, name)
    return values[0] if values else b""


def _unique(blocks: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(b for b in blocks if b.strip()))


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = str(info.get("desc") or exc.__class__.__name__) if info else str(exc) or exc.__class__.__name__
    extra = str(info.get("info") or "") if info else ""
    message = f"{text}: {extra}" if extra else text
    return "".join(c if c.isprintable() else "?" for c in message)[:200]
