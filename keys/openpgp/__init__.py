"""The one OpenPGP seam: the only package that imports the OpenPGP library.

It turns untrusted bytes into plain Python values and builds the
certificates the keyserver stores and publishes. Sequoia (pysequoia)
verifies; this package decides what to keep. It reads no settings: the
limits of an upload are passed in as `Limits`.

- `packets`: armor, packet framing and the fields we read ourselves;
- `reading`: uploads scanned, verified and merged (`scan`, `clean`, `parse`,
  `merge`, `add_revocation`, `load`, `load_stored`, `contains`);
- `certs`: the verified certificate as values (`CertInfo`) and the forms
  derived from it (`publishable`).
"""

from .certs import (
    CertInfo,
    Component,
    SubkeyInfo,
    UserIdInfo,
    can_encrypt,
    encryption_expires,
    publishable,
    uid_address,
)
from .packets import (
    KEY_REVOCATION,
    SIG,
    UID,
    Packet,
    Signature,
    armor,
    dearmor,
    is_armored,
    iter_certificates,
    iter_packets,
    parse_signature,
)
from .reading import (
    DEFAULT_LIMITS,
    Candidate,
    Limits,
    Revocation,
    Scan,
    Upload,
    add_revocation,
    clean,
    contains,
    encrypt,
    key_revocations,
    load,
    load_stored,
    merge,
    parse,
    scan,
)

__all__ = [
    "DEFAULT_LIMITS",
    "KEY_REVOCATION",
    "SIG",
    "UID",
    "Candidate",
    "CertInfo",
    "Component",
    "Limits",
    "Packet",
    "Revocation",
    "Scan",
    "Signature",
    "SubkeyInfo",
    "Upload",
    "UserIdInfo",
    "add_revocation",
    "armor",
    "can_encrypt",
    "clean",
    "contains",
    "dearmor",
    "encrypt",
    "encryption_expires",
    "is_armored",
    "iter_certificates",
    "iter_packets",
    "key_revocations",
    "load",
    "load_stored",
    "merge",
    "parse",
    "parse_signature",
    "publishable",
    "scan",
    "uid_address",
]
