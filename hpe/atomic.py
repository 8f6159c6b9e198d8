"""The one atomic writer: every file hpe writes goes to a temporary name beside it, then ``os.replace``.

A reader therefore never sees a half-written file, and a killed process leaves at most a temporary file
named ``.NAME.tmp-PID.EXT``; :func:`sweep_stale` removes those whose process no longer runs.  Folders (a
generated dataset) get the same treatment with :func:`atomic_dir`.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

_TEMP = re.compile(r"^\..+\.tmp-(?P<pid>\d+)(\.[A-Za-z0-9]+)?$")


def temp_path(path: Path) -> Path:
    """``.NAME.tmp-PID.EXT`` beside ``path``; the extension stays last because some writers (matplotlib,
    numpy) choose the format from it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any error (or interrupt) it is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``path`` (an existing ``path`` is replaced only with
    ``replace``, and removed only once the new one is in place)."""
    path = Path(path)
    tmp = temp_path(path)
    _remove(tmp)
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
        _remove(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def torch_save(obj, path: Path) -> None:
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
            _remove(entry)
            gone.append(entry)
    return gone


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_writable(path: Path, need_bytes: int = 0) -> None:
    """Fail early, in one line, if ``path`` cannot be written: it is a folder, its parent is a file or read-only,
    or the disk has less than ``need_bytes`` free.  Creates the parent folder if it is missing."""
    from hpe import DataError
    path = Path(path)
    if path.is_dir():
        raise DataError(f"output {path} is a folder; give a file name, e.g. {path / 'out.h5'}")
    parent = path.parent
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise DataError(f"cannot write {path}: {p} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path)  # the name the real write will use; swept if we are killed in between
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc} (choose a writable folder)") from None
    if need_bytes:
        free = shutil.disk_usage(parent).free
        if free < need_bytes:
            raise DataError(f"not enough disk space for {path}: it needs about {need_bytes / 2**30:.2f} GiB, "
                            f"{parent} has {free / 2**30:.2f} GiB free")
