"""Drop the coverage data files that processes killed by the tests left (`make coverage` runs this before combining).

A process killed with SIGKILL (the kill -9 resume and search worker tests do it on purpose) cannot finish its data
file: it is left empty or half-written, `coverage combine` then warns and skips it, and the file stays behind.  Each
such file is removed here and counted in one line.
"""
from __future__ import annotations

import glob
import os

from coverage import CoverageData


def readable(path: str) -> bool:
    if not os.path.getsize(path):
        return False
    try:
        data = CoverageData(basename=path)
        data.read()
        data.measured_files()
    except Exception:  # coverage's own errors, sqlite3.DatabaseError, OSError: not a finished data file
        return False
    return True


def main() -> int:
    bad = [f for f in sorted(glob.glob(".coverage.*")) if not readable(f)]
    for f in bad:
        os.remove(f)
    if bad:
        print(f"coverage: dropped {len(bad)} unfinished data file(s) of processes the tests killed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
