"""Process pools for frame-by-frame work (``hpe synth``, ``hpe prep``, the scale run's decode bound): one place
for how a worker starts, so every pool gets the same signals and memory behaviour."""
from __future__ import annotations

import ctypes
import os
import signal
from multiprocessing import get_context
from multiprocessing.pool import Pool

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def worker_pool(workers: int, initializer=None, initargs: tuple = ()) -> Pool:
    """``workers`` processes (forked where the OS can) that start with :func:`start_worker`, then ``initializer``."""
    ctx = get_context("fork") if hasattr(os, "fork") else get_context("spawn")
    return ctx.Pool(workers, _start, (os.getpid(), initializer, initargs))


def _start(parent: int, initializer, initargs: tuple) -> None:
    start_worker(parent)
    if initializer is not None:
        initializer(*initargs)


def start_worker(parent: int | None = None) -> None:
    """Leave Ctrl-C and SIGTERM to the parent, which cleans up (no traceback per worker), keep freed memory, and end
    with the parent (``parent``: its pid): a parent killed with SIGKILL left its workers rendering on, each
    printing a BrokenPipeError traceback when it handed in a frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent is not None:
        die_with_parent(parent)
    keep_freed_memory()


def die_with_parent(parent: int) -> None:
    """Linux: the kernel sends this process SIGKILL when its parent ends (prctl PR_SET_PDEATHSIG); elsewhere,
    nothing.  A parent that ended before the call is caught by its pid."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, TypeError):
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent was gone before the kernel could be told
        os._exit(1)


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
