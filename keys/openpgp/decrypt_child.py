"""Decrypt one message in a process of its own (run by keys.openpgp.wks).

Usage: python decrypt_child.py SECRET MESSAGE OUTPUT. The parent limits this
process's file size (RLIMIT_FSIZE) and memory (RLIMIT_AS), so a compressed
message that unpacks to gigabytes stops at the limit instead of filling the
server's memory or disk. Only pysequoia is imported: no Django.
"""

from __future__ import annotations

import signal
import sys
import warnings


def main(secret: str, message: str, output: str) -> int:
    # Writing past RLIMIT_FSIZE fails with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import pysequoia

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with open(secret, "rb") as file:
                tsk = pysequoia.Tsk.from_bytes(file.read())
        pysequoia.decrypt_file(message, output, decryptor=tsk.decryptor(None))
    except Exception as exc:  # the library raises RuntimeError/ValueError/TypeError alike
        print(str(exc).split("\n", 1)[0][:200], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
