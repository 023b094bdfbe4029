"""The one OpenPGP seam: the only package that imports the OpenPGP library.

It turns untrusted bytes into plain Python values and builds the
certificates the keyserver stores and publishes. Sequoia (pysequoia)
verifies; this package decides what to keep. It reads no settings: the
limits of an upload are passed in as `Limits`.

- `packets`: armor, packet framing and the fields we read ourselves;
- `reading`: uploads scanned, verified and merged (`scan`, `clean`, `parse`,
  `merge`, `add_revocation`, `load`, `load_stored`, `contains`);
- `certs`: the verified certificate as values (`CertInfo`) and the forms
  derived from it (`publishable`);
- `signing`: the server's own secret key (`generate_secret`, `certify`,
  `sign_detached`), for signed mail.
- `wks`: keys of the server's own and decryption, for the Web Key Service.
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
from .signing import SigningError, armor_secret, certify, public_part, sign_detached, signature_hash
from .signing import fingerprint as secret_fingerprint
from .signing import generate as generate_secret
from .wks import GeneratedKey, WksCryptoError, decrypt, generate

__all__ = [
    "DEFAULT_LIMITS",
    "KEY_REVOCATION",
    "SIG",
    "UID",
    "Candidate",
    "CertInfo",
    "Component",
    "GeneratedKey",
    "Limits",
    "Packet",
    "Revocation",
    "Scan",
    "Signature",
    "SigningError",
    "SubkeyInfo",
    "Upload",
    "UserIdInfo",
    "WksCryptoError",
    "add_revocation",
    "armor",
    "armor_secret",
    "can_encrypt",
    "certify",
    "clean",
    "contains",
    "dearmor",
    "decrypt",
    "encrypt",
    "encryption_expires",
    "generate",
    "generate_secret",
    "is_armored",
    "iter_certificates",
    "iter_packets",
    "key_revocations",
    "load",
    "load_stored",
    "merge",
    "parse",
    "parse_signature",
    "public_part",
    "publishable",
    "scan",
    "secret_fingerprint",
    "sign_detached",
    "signature_hash",
    "uid_address",
]
