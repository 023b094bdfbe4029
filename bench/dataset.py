"""The benchmarks' keys: Debian's keyrings plus generated keys, as one binary dump.

Written once to var/bench/ (BENCH_KEYS, default 9,972 keys in all) and reused:
`python bench/dataset.py` prints where it is. Debian's keyring package
(debian-keyring) brings about 1,170 real keys with many signatures; the rest
are generated with pysequoia (Ed25519, one address each, in bench.example).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYRINGS = [
    Path("/usr/share/keyrings") / name
    for name in (
        "debian-keyring.gpg",
        "debian-maintainers.gpg",
        "debian-nonupload.gpg",
        "debian-role-keys.gpg",
    )
]
TOTAL = int(os.environ.get("BENCH_KEYS", "9972"))


def dump_path() -> Path:
    return ROOT / "var" / "bench" / f"keys-{TOTAL}.pgp"


def generated_address(i: int) -> str:
    return f"user{i}@bench.example"


def build() -> Path:
    """The dump, built if it is not there yet."""
    path = dump_path()
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT))
    import pysequoia

    from keys.openpgp import iter_certificates

    path.parent.mkdir(parents=True, exist_ok=True)
    real = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for keyring in KEYRINGS:
            if not keyring.exists():
                continue
            with keyring.open("rb") as stream:
                for _start, _end, data in iter_certificates(stream):
                    out.write(data)
                    real += 1
        for i in range(max(TOTAL - real, 0)):
            out.write(bytes(pysequoia.Cert.generate(f"Bench User {i} <{generated_address(i)}>")))
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(build())
