"""Process pools for frame-by-frame work (``hpe synth``, ``hpe prep``, the scale run's decode bound): one place
for how a worker starts, so every pool gets the same signals and memory behaviour."""
from __future__ import annotations

import ctypes
import os
import signal
from multiprocessing import get_context
from multiprocessing.pool import Pool

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)


def worker_pool(workers: int, initializer=None, initargs: tuple = ()) -> Pool:
    """``workers`` processes (forked where the OS can) that start with :func:`start_worker`, then ``initializer``."""
    ctx = get_context("fork") if hasattr(os, "fork") else get_context("spawn")
    return ctx.Pool(workers, _start, (initializer, initargs))


def _start(initializer, initargs: tuple) -> None:
    start_worker()
    if initializer is not None:
        initializer(*initargs)


def start_worker() -> None:
    """Leave Ctrl-C and SIGTERM to the parent, which cleans up (no traceback per worker), and keep freed memory."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    keep_freed_memory()


def keep_freed_memory() -> None:
    """Keep freed arrays in the worker for the next frame (glibc only; elsewhere nothing changes).

    A frame's arrays are 0.1-1 MB each (a decoded 640x480 PNG is 0.9 MB); glibc maps such blocks fresh and returns
    them, or trims its heap, on free, so every frame faulted its memory in again page by page: measured, a third
    of the renderer's time and 1,344 page faults (6 ms) a frame of PNG decoding.  A worker's heap peaks at a few
    tens of MB."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no mallopt in it
        return
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value
