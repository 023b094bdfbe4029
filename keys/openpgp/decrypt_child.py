"""Decrypt one message in a process of its own (run by keys.openpgp.wks).

Usage: python decrypt_child.py LIMIT MEMORY MESSAGE OUTPUT, the secret key
(a binary TSK) on standard input. Before anything else, before the OpenPGP
library is even imported, this process caps its own file size
(RLIMIT_FSIZE, LIMIT + 1 bytes) and memory (RLIMIT_AS, MEMORY bytes), so a
compressed message that unpacks to gigabytes stops at the limit instead of
filling the server's memory or disk. (The parent sets no limits itself: a
preexec_fn is unsafe in a process with threads, like the SMTP listener.)
Only pysequoia is imported: no Django.
"""

from __future__ import annotations

import resource
import signal
import sys


def limit(size: int, memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1, size + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # Writing past RLIMIT_FSIZE fails with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def main(secret: bytes, message: str, output: str) -> int:
    import warnings

    import pysequoia

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tsk = pysequoia.Tsk.from_bytes(secret)
        pysequoia.decrypt_file(message, output, decryptor=tsk.decryptor(None))
    except Exception as exc:  # the library raises RuntimeError/ValueError/TypeError alike
        print(str(exc).split("\n", 1)[0][:200], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    limit(int(sys.argv[1]), int(sys.argv[2]))
    sys.exit(main(sys.stdin.buffer.read(), sys.argv[3], sys.argv[4]))
