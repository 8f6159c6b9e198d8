"""Progress for long steps: a tqdm bar on a terminal, plain lines elsewhere.

Under Make, CI or ``| tee log`` stderr is not a terminal and tqdm (``disable=None``) stays silent, so a step of
minutes would print nothing.  There :class:`Lines` prints one line every ``every_s`` seconds instead (and one at
the end), which reads well in a log.
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Lines:
    """The part of tqdm's interface hpe uses (update, set_postfix, close, context manager), as timed lines."""

    def __init__(self, total: int, desc: str, unit: str, every_s: float = 10.0, file=None, final: bool = True):
        self.total, self.desc, self.unit, self.every_s, self.final = total, desc, unit, every_s, final
        self.file = file or sys.stderr
        self.n, self.t0 = 0, time.perf_counter()
        self.last = self.t0
        self.disable = False

    def _line(self) -> None:
        dt = time.perf_counter() - self.t0
        rate = self.n / dt if dt > 0 else 0.0
        left = f", ~{(self.total - self.n) / rate:.0f} s left" if rate > 0 and self.n < self.total else ""
        plural = self.unit + ("es" if self.unit.endswith(("ch", "sh", "s")) else "s")
        print(f"{self.desc}: {self.n}/{self.total} {plural} ({100 * self.n / max(self.total, 1):.0f} %, "
              f"{dt:.0f} s{left})", file=self.file, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._line()

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        if self.n and self.final:
            self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(total: int, desc: str, unit: str, enabled: bool = True, every_s: float = 10.0):
    """A tqdm bar on a terminal, :class:`Lines` otherwise, or a disabled bar when ``enabled`` is false."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.5)
    return Lines(total, desc, unit, every_s)
