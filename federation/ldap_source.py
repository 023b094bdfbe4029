"""The LDAP source: an organisation's directory, with python-ldap.

Two layouts (Source.options["layout"]):

- "keyserver" (default): the OpenPGP LDAP keyserver schema GnuPG's dirmngr
  uses. `cn=PGPServerInfo` (under the naming context, or options["base_dn"])
  names the key space in `pgpBaseKeySpaceDN`; each key is a `pgpKeyInfo`
  entry with the key block in `pgpKey` (or the legacy `pgpKeyV2`), the long
  key id in `pgpCertID`, fingerprints in `gpgFingerprint`/`gpgSubFingerprint`
  and addresses in `gpgMailbox` (user IDs in `pgpUserID` on older servers).
- "directory": a plain directory: the user entry found by options["filter"]
  (default `(mail={email})`) under options["base_dn"] carries the key in
  options["attribute"] (default `pgpKey`), armored or binary.

Options: bind_dn, bind_password, starttls (bool), base_dn, size_limit.
Importing this module needs python-ldap; without it federation.sources uses
a stand-in that reports the source as unavailable.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ldap
import ldap.filter

from keys.identifiers import Query

from . import outbound
from .sources import SourceError, Upstream

KEY_ATTRIBUTES = ("pgpKey", "pgpKeyV2")


class LdapUpstream(Upstream):
    def fetch(self, query: Query) -> list[bytes]:
        options: dict[str, Any] = self.row.options or {}
        layout = options.get("layout", "keyserver")
        if layout == "directory" and query.kind != "email":
            return []
        conn = self._connect(options)
        try:
            if layout == "directory":
                return self._directory(conn, query, options)
            return self._keyserver(conn, query, options)
        except ldap.NO_SUCH_OBJECT:
            return []
        except (ldap.TIMEOUT, ldap.TIMELIMIT_EXCEEDED):
            raise SourceError(f"{self.name}: no answer within {self.row.timeout:g} s") from None
        except ldap.SIZELIMIT_EXCEEDED:
            raise SourceError(f"{self.name}: too many entries match", permanent=True) from None
        except ldap.LDAPError as exc:
            raise SourceError(f"{self.name}: {_describe(exc)}") from None
        finally:
            conn.unbind_s()

    # -- connection -------------------------------------------------------------

    def _connect(self, options: dict[str, Any]) -> Any:
        parts = urlsplit(self.row.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise SourceError(f"{self.name}: not an ldap:// or ldaps:// URL", permanent=True)
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        try:
            outbound.resolve(parts.hostname, port)  # SSRF guard: public targets only, unless allowed
        except outbound.OutboundError as exc:
            raise SourceError(str(exc), permanent=exc.permanent) from None
        timeout = float(self.row.timeout)
        try:
            conn = ldap.initialize(f"{parts.scheme}://{parts.netloc}")
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
            conn.set_option(ldap.OPT_TIMEOUT, timeout)
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
            conn.set_option(ldap.OPT_SIZELIMIT, int(options.get("size_limit", 20)))
            if options.get("starttls"):
                conn.start_tls_s()
            conn.simple_bind_s(options.get("bind_dn", ""), options.get("bind_password", ""))
        except ldap.INVALID_CREDENTIALS:
            raise SourceError(
                f"{self.name}: the directory refused the bind credentials", permanent=True
            ) from None
        except (ldap.SERVER_DOWN, ldap.TIMEOUT) as exc:
            raise SourceError(f"{self.name}: cannot reach the directory ({_describe(exc)})") from None
        except ldap.LDAPError as exc:
            raise SourceError(f"{self.name}: {_describe(exc)}") from None
        return conn

    def _search(self, conn: Any, base: str, scope: int, search: str, attributes: list[str]) -> list[tuple]:
        return conn.search_ext_s(
            base,
            scope,
            search,
            attributes,
            timeout=float(self.row.timeout),
            sizelimit=int((self.row.options or {}).get("size_limit", 20)),
        )

    # -- layouts ------------------------------------------------------------------

    def _key_space(self, conn: Any, options: dict[str, Any]) -> str:
        bases = [options["base_dn"]] if options.get("base_dn") else self._naming_contexts(conn)
        for base in bases:
            try:
                found = self._search(
                    conn,
                    f"cn=PGPServerInfo,{base}",
                    ldap.SCOPE_BASE,
                    "(objectClass=*)",
                    ["pgpBaseKeySpaceDN"],
                )
            except ldap.NO_SUCH_OBJECT:
                continue
            for _dn, attrs in found:
                values = attrs.get("pgpBaseKeySpaceDN")
                if values:
                    return str(values[0].decode())
        raise SourceError(
            f"{self.name}: no cn=PGPServerInfo entry: not an OpenPGP LDAP keyserver", permanent=True
        )

    def _naming_contexts(self, conn: Any) -> list[str]:
        root = self._search(conn, "", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
        return [v.decode() for _dn, attrs in root for v in attrs.get("namingContexts", [])]

    def _keyserver(self, conn: Any, query: Query, options: dict[str, Any]) -> list[bytes]:
        base = self._key_space(conn, options)
        value = ldap.filter.escape_filter_chars(query.value)
        if query.kind == "email":
            search = f"(|(gpgMailbox={value})(pgpUserID=*<{value}>*)(pgpUserID={value}))"
        elif query.kind == "keyid":
            search = f"(|(pgpCertID={value})(pgpSubKeyID={value}))"
        else:
            # Older servers have no gpgFingerprint: the long key id finds the
            # candidate, and the full fingerprint is checked on import.
            keyid = value[-16:] if len(value) == 40 else value[:16]
            search = f"(|(gpgFingerprint={value})(gpgSubFingerprint={value})(pgpCertID={keyid}))"
        entries = self._search(
            conn,
            base,
            ldap.SCOPE_ONELEVEL,
            f"(&(objectClass=pgpKeyInfo){search})",
            [*KEY_ATTRIBUTES, "pgpDisabled"],
        )
        blocks = []
        for _dn, attrs in entries:
            if attrs.get("pgpDisabled", [b"0"])[0] not in (b"0", b""):
                continue
            for name in KEY_ATTRIBUTES:
                blocks.extend(attrs.get(name, []))
        return blocks

    def _directory(self, conn: Any, query: Query, options: dict[str, Any]) -> list[bytes]:
        base = options.get("base_dn") or (self._naming_contexts(conn) or [""])[0]
        attribute = options.get("attribute", "pgpKey")
        template = options.get("filter", "(mail={email})")
        search = template.replace("{email}", ldap.filter.escape_filter_chars(query.value))
        entries = self._search(conn, base, ldap.SCOPE_SUBTREE, search, [attribute])
        return [value for _dn, attrs in entries for value in attrs.get(attribute, [])]


def _describe(exc: BaseException) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = info.get("desc", exc.__class__.__name__) if isinstance(info, dict) else str(exc)
    extra = info.get("info", "") if isinstance(info, dict) else ""
    message = f"{text}: {extra}" if extra else str(text)
    return "".join(c if c.isprintable() else "?" for c in message)[:200]
