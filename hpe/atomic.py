"""The one atomic writer: every file hpe writes goes to a temporary name beside it, then ``os.replace``.

A reader therefore never sees a half-written file, and a killed process leaves at most a temporary file
named ``.NAME.tmp-PID.EXT``; :func:`sweep_stale` removes those whose process no longer runs.  Folders (a
generated dataset) get the same treatment with :func:`atomic_dir`.  A write that fails for lack of space or an
I/O error (whatever the writer: Python, torch, h5py, matplotlib) ends as one :class:`WriteError` naming the
file, with the temporary removed and the previous complete file untouched.  Checks before any work, locks and
whole-folder replacement are :mod:`hpe.output`.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from hpe import DataError

_TEMP = re.compile(r"^\..+\.tmp-(?P<pid>\d+)(\.[A-Za-z0-9]+)?$")


def temp_path(path: Path) -> Path:
    """``.NAME.tmp-PID.EXT`` beside ``path``; the extension stays last because some writers (matplotlib,
    numpy) choose the format from it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


class WriteError(DataError):
    """A write failed for lack of space or an I/O error; the message names the file."""


# errno values that mean "the write itself failed", whoever reports them (an OSError, or a C library's message).
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)
_FULL_MARKERS = ("errno = 28", "no space left", "disk quota", "file write failed", "unexpected pos")


def write_failure(exc: BaseException, folder: Path) -> str | None:
    """Why a writer's exception is a failed write (disk full, I/O error), or None if it is something else.
    torch reports a full disk as RuntimeError('... unexpected pos ...'), h5py as RuntimeError('... errno = 28
    ...'), so messages count too; so does a folder with (almost) no free space left."""
    if isinstance(exc, WriteError):
        return None
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
    if isinstance(exc, (OSError, RuntimeError)):
        text = str(exc).lower()
        if any(m in text for m in _FULL_MARKERS):
            return "the disk is full" if "28" in text or "space" in text or "pos" in text else "an I/O error"
        with contextlib.suppress(OSError):
            if free_bytes(folder) < 64 * 1024:
                return "the disk is full"
    return None


def free_bytes(folder: Path) -> int:
    """Free space in ``folder`` (one place, so that tests can pretend a disk is larger or fuller)."""
    return shutil.disk_usage(folder).free


def _raise_write_error(exc: BaseException, path: Path) -> None:
    why = write_failure(exc, path.parent)
    if why:
        raise WriteError(f"cannot write {path}: {why}; nothing half-written was kept (free space or choose "
                         f"another location, then run again)") from None


# An interrupt (Ctrl-C, SIGTERM) that strikes while Python runs a finaliser or a weakref callback (h5py closes its
# objects in them) is printed as "Exception ignored" and dropped, and the command would finish as if never told to
# stop.  catch_dropped_interrupts() keeps such an interrupt; the next commit of an output (or the command's end)
# raises it instead.
_dropped: list[BaseException] = []


@contextlib.contextmanager
def catch_dropped_interrupts() -> Iterator[None]:
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _dropped.append(unraisable.exc_value)
        else:
            previous(unraisable)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
        _dropped.clear()


def raise_dropped_interrupt() -> None:
    """Raise an interrupt that Python dropped since the last call, if any."""
    if _dropped:
        exc = _dropped[-1]
        _dropped.clear()
        raise exc


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (keeping the permissions of a file it
    replaces), on any error (or interrupt) it is removed.  A failed write (disk full, I/O error) becomes one
    :class:`WriteError`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        raise_dropped_interrupt()  # told to stop while writing: the output is not committed
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_path(tmp)
        _raise_write_error(exc, path)
        raise


H5_MARGIN = 4 * 2**20  # HDF5's chunk caches and metadata, written later than the data


def ensure_space(path: Path, nbytes: int) -> None:
    """Refuse a write of ``nbytes`` into ``path`` that the disk cannot take, before the writer starts it: HDF5 fails
    on a full disk inside its destructors (a flood of ignored errors, then a segfault), never as one exception."""
    if free_bytes(Path(path).parent) < nbytes + H5_MARGIN:
        raise WriteError(f"cannot write {path}: the disk is full; nothing half-written was kept (free space or "
                         f"choose another location, then run again)")


@contextlib.contextmanager
def atomic_h5(path: Path) -> Iterator:
    """An HDF5 file written atomically.  On a failure the temporary is truncated *before* h5py closes it: closing
    flushes metadata, which on a full disk fails again inside h5py's destructors (a flood of tracebacks, then a
    segfault); truncated, the flush lands in an empty file and the close is clean."""
    import h5py
    with atomic_path(path) as tmp:
        h5 = h5py.File(tmp, "w")
        try:
            yield h5
        except BaseException:
            with contextlib.suppress(OSError):
                os.truncate(tmp, 0)
            with contextlib.suppress(Exception):
                h5.close()
            raise
        h5.close()


@contextlib.contextmanager
def atomic_dir(path: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``path`` (an existing ``path`` is replaced only with
    ``replace``, and removed only once the new one is in place)."""
    path = Path(path)
    tmp = temp_path(path)
    remove_path(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path} appeared while it was being written; nothing was replaced")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_marked(path: Path, begin: str, end: str, body: str) -> None:
    """Rewrite what lies between the ``begin`` and ``end`` marker lines of a text file (a README's generated
    table) with ``body``, atomically; the rest of the file is kept as it is."""
    text = Path(path).read_text()
    if begin not in text or end not in text:
        raise DataError(f"{path} lacks the '{begin}' / '{end}' markers around its generated table")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(Path(path), f"{head}{begin}\n\n{body}\n\n{end}{tail}")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def torch_save(obj, path: Path) -> None:
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_bytes_from(path: Path, save) -> None:
    """``save(buffer)`` into memory, then the bytes to ``path`` atomically: for C++ writers (TorchScript) that
    abort the whole process on a full disk instead of raising."""
    buf = io.BytesIO()
    save(buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def savez(path: Path, **arrays) -> None:
    import numpy as np
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale(folder: Path) -> list[Path]:
    """Remove the temporary files (and folders) in ``folder`` whose writing process is gone; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name) or re.match(r"^\..+\.old-(?P<pid>\d+)$", entry.name)
        if m and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            remove_path(entry)
            gone.append(entry)
        elif _LOCK.match(entry.name) and _remove_if_unlocked(entry):
            gone.append(entry)
    return gone


_LOCK = re.compile(r"^\.(.+\.)?lock$")  # hpe's lock files: .lock in a folder it writes, .NAME.lock beside a file


def _remove_if_unlocked(lock: Path) -> bool:
    """Remove a lock file that no process holds (its holder was killed with SIGKILL: the OS released the lock, the
    file stayed).  A process that opened it just before the removal finds its inode gone and opens a new one
    (hpe.output._lock_file)."""
    import fcntl
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(lock).st_ino:
            return False
        os.unlink(lock)
        return True
    except OSError:  # held by a live process (or gone already)
        return False
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
