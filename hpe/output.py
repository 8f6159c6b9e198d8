"""The one output layer: what every command that writes goes through.

A command declares its outputs (:class:`Out`: which argument, and what kind of target it names) and
:func:`claim` does, before any work:

- the target check: a file output that is a folder, a parent that is a file, a read-only location are refused in
  one line naming the path; missing parent folders are created (``--json new/sub/t.json`` works);
- the lock: one process at a time per output (``flock``; a killed process's lock is released by the OS), the same
  lock run folders use, so two ``hpe predict`` into one ``--out`` cannot both report success over mixed files;
- the sweep of stale temporary files of dead processes (before any free-space check: a killed run's own leftover
  must not make its rerun refuse for lack of space).

A refused or failed command leaves no folder it created behind.  A folder output that a rerun replaces as a
whole (``hpe predict --out``, ``hpe fusepred --out``) is written through :func:`replacing`: the new files go to
a staging folder and replace the previous run's files only when all are complete, so no overlay of an earlier
run is left beside fewer predictions.  Disk full during a write is :mod:`hpe.atomic`'s ``WriteError``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hpe import DataError
from hpe.atomic import remove_path, free_bytes, sweep_stale, temp_path, write_json

LOCK = ".lock"  # a folder's lock file, inside it while a process writes it (run folders, prediction folders)
MANIFEST = ".hpe-outputs.json"  # what the last complete run of a command wrote into a replaced folder
KINDS = ("file", "prefix", "folder", "shared", "keep", "dataset")
# file:    one file (export --out, evaluate --json, prep OUT); locked beside it as .NAME.lock
# prefix:  PREFIX.png/.pdf/.csv/... (figure --out); locked beside as .NAME.lock
# folder:  a folder owned by one process and replaced as a whole by a rerun (predict, fusepred)
# shared:  a folder that several workers share on purpose (search --out); each trial folder is locked
# keep:    a folder owned by one process whose verified files a rerun keeps (baselines fetch --dest, run folders)
# dataset: a folder replaced whole by a new one (synth ROOT); locked beside it


@dataclass(frozen=True)
class Out:
    arg: str     # the argparse destination holding the path
    kind: str
    holds: tuple[str, ...] = ()  # file outputs: the formats (FORMATS) an existing file may have to be replaced

    def __post_init__(self):
        assert self.kind in KINDS, self.kind
        assert self.kind != "file" or self.holds, f"file output {self.arg} must declare the formats it replaces"
        assert set(self.holds) <= set(FORMATS), self.holds


# What an existing file holds, by its first bytes: a file output replaces only a file of its own format (or an empty
# one), so `hpe export --out data.h5` or `hpe evaluate --json notes.txt` cannot destroy a user's file.
FORMATS = {"hdf5": "an HDF5 file", "zip": "a zip archive (TorchScript or a torch checkpoint)", "onnx": "an ONNX model",
           "png": "a PNG image", "pdf": "a PDF", "gzip": "gzip data", "json": "JSON", "text": "text",
           "binary": "binary data"}
_MAGIC = {b"\x89HDF\r\n\x1a\n": "hdf5", b"PK\x03\x04": "zip", b"\x89PNG\r\n\x1a\n": "png", b"%PDF": "pdf",
          b"\x1f\x8b": "gzip"}


def file_format(path: Path) -> str:
    """The format (a FORMATS key, or 'empty') of an existing file, from its first 4 KiB."""
    import codecs
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "empty"
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    try:  # incremental: a multi-byte character cut at 4 KiB is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):  # no control bytes
        return "json" if text.lstrip()[:1] in ("{", "[") else "text"
    return "onnx" if head[0] == 0x08 else "binary"  # ONNX's ModelProto starts with field 1 (ir_version)


def check_replaceable(path: Path, holds: tuple[str, ...], command: str) -> None:
    """Refuse replacing an existing file of another format than the command writes (``holds``); 'text' covers
    JSON too."""
    path = Path(path)
    if not holds or not path.is_file():
        return
    try:
        found = file_format(path)
    except OSError as exc:
        raise DataError(f"cannot read {path} to check what it holds: {exc.strerror or exc}") from None
    if found == "empty" or found in holds or (found == "json" and "text" in holds):
        return
    raise DataError(f"output {path} exists and holds {FORMATS[found]}, not {' or '.join(FORMATS[h] for h in holds)}: "
                    f"hpe {command} would replace it; choose another name (or remove the file first)")


# What the prefix commands append (figures: .png .pdf .csv .json; tables also .md .tex).
PREFIX_SUFFIXES = (".png", ".pdf", ".csv", ".json", ".md", ".tex")


def as_prefix(path: Path) -> Path:
    """A prefix output given as one of its own files (``--out fig.png``): the prefix (``fig``), so the outputs are
    fig.png, fig.pdf, ... rather than fig.png.png, fig.png.pdf."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in PREFIX_SUFFIXES else path


def _parents_ok(path: Path) -> None:
    for p in [path.parent, *path.parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise DataError(f"cannot write {path}: {p} is a file, not a folder")
            return


def check(path: Path, kind: str) -> None:
    """Refuse, in one line naming the path, a target that cannot be written (nothing is created here)."""
    path = Path(path)
    if kind in ("file", "prefix"):
        if path.is_dir():
            raise DataError(f"output {path} is a folder; give a file name{' prefix' if kind == 'prefix' else ''} "
                            f"(e.g. {path / 'NAME'})")
    elif path.exists() and not path.is_dir():
        raise DataError(f"output folder {path} is a file; give a folder (a new name is created)")
    _parents_ok(path)


def check_writable(path: Path, need_bytes: int = 0) -> None:
    """A file output that must also fit: :func:`check`, parents created, stale temporaries swept, then the space
    (``need_bytes``) checked."""
    path = Path(path)
    check(path, "file")
    _make_parents(path, [])
    _probe(path.parent, path)
    sweep_stale(path.parent)
    if need_bytes:
        free = free_bytes(path.parent)
        if free < need_bytes:
            raise DataError(f"not enough disk space for {path}: it needs about {_size(need_bytes)}, "
                            f"{path.parent} has {_size(free)} free")


def _size(n: int) -> str:
    """Bytes for a message, in the unit that shows them (0.00 GiB said nothing)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends: making a folder or a lock file and noting it for the clean-up
    is one step.  (A SIGTERM between the two left an empty --out folder or a stray lock file.)  The caller enters
    the clean-up's try before this block, so a signal handled at its end is raised where the clean-up runs.

    The handlers are swapped, not the signal mask: a process-directed signal may land on any of torch's threads,
    and Python then runs the main thread's handler whatever that thread's mask says."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only; a worker thread's steps are its caller's to undo
        return
    pending: list[tuple[int, object]] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: pending.append((signum, frame))) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            signum, frame = pending[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)  # hpe's handlers raise: the clean-up of the enclosing try runs
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def _make_parents(path: Path, created: list[Path], itself: bool = False) -> None:
    """Create the missing parent folders of ``path`` (and ``path`` itself: ``itself``), noting them in ``created``
    (the caller's clean-up already holds the list)."""
    missing = [p for p in [*([path] if itself else []), path.parent, *path.parent.parents] if not p.exists()]
    for p in reversed(missing):
        with _signals_held():
            try:
                p.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise DataError(f"cannot create the folder {p}" + ("" if p == path else f" for {path}")
                                + f": {exc.strerror} (choose a writable location)") from None
            created.append(p)


def _probe(folder: Path, path: Path) -> None:
    """Write and remove an empty temporary file: a read-only location is refused before any work."""
    probe = temp_path(path if path.parent == folder else folder / "probe")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc} (choose a writable location)") from None


# --- locks -------------------------------------------------------------------------------------------------
_held: dict[str, object] = {}  # lock file -> open handle: a lock is re-entrant within one process


@contextlib.contextmanager
def locked(lock: Path, what: Path, remove: bool = False) -> Iterator[None]:
    """Hold ``lock`` (``flock``) while writing ``what``: a second process is refused at once, naming the holder's
    pid.  ``remove``: delete the lock file afterwards (a lock beside a file output), checking that the locked
    file is still the one at that name, so a process that opened it just before the removal cannot also win."""
    key = str(lock.resolve())
    if key in _held:
        yield
        return
    fh = None
    try:
        with _signals_held():  # a signal between creating the lock file and holding it would leave the file
            fh = _lock_file(lock, what)
            _held[key] = fh
        yield
    finally:
        if fh is not None:
            _held.pop(key, None)
            if remove:
                with contextlib.suppress(OSError):
                    lock.unlink()
            fh.close()


def _lock_file(lock: Path, what: Path):
    """Open and ``flock`` ``lock`` and write this process's pid into it; refused at once if another holds it."""
    import fcntl
    while True:
        try:
            fh = open(lock, "a+")
        except OSError as exc:
            raise DataError(f"cannot write {what}: {exc.strerror or exc} (choose a writable location)") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()  # empty for the instant between the holder's lock and its pid write
            fh.close()
            raise DataError(f"another hpe process{f' (pid {holder})' if holder else ''} is writing {what}: wait for "
                            f"it to finish, or choose another output") from None
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # removed by its previous holder between our open and our lock: take the new file
    try:  # the holder's pid, for a second process's message; a full disk leaves it unnamed, the lock still holds
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
    except OSError:
        with contextlib.suppress(OSError):
            fh.truncate(0)
    return fh


def beside_lock(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def own_folder(folder: Path) -> Iterator[Path]:
    """Create (if needed) and lock ``folder``, sweep its stale temporaries; a folder this call created is removed
    again if it still holds nothing (but this command's mark) when the work ends or fails."""
    folder = Path(folder)
    check(folder, "folder")
    created: list[Path] = []
    try:
        _make_parents(folder, created, itself=True)
        with locked(folder / LOCK, folder, remove=True):
            sweep_stale(folder)
            yield folder
    finally:  # failed, or ended without writing anything (a fetch whose every download failed)
        _remove_if_empty(created)


def _remove_if_empty(created: list[Path]) -> None:
    """Remove the folders this process created, innermost first, if they hold nothing.  Our own lock is already
    released (and its file removed) by then; a lock file still there is another process's, which won the folder
    between our mkdir and our lock: its folder stays (removing it made the winner's writes fail)."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            if os.listdir(p) == [MANIFEST] and not _manifest_of(p)[1]:
                (p / MANIFEST).unlink()  # only our own mark of a folder we made: nothing was written
            p.rmdir()  # fails, and keeps the folder, unless it is empty


def check_apart(outputs: list[tuple[Path, str]], inputs: list[Path]) -> None:
    """Refuse, before any work, outputs that would overwrite what the command reads or each other: an output that
    is one of its inputs (``evaluate --pred P --json P``, ``fusepred --out`` a run it fuses), replaces a file
    anywhere inside an input folder (``export --run R --out R/result.json``, ``prep ROOT ROOT/train/depth_1_0000001.png``),
    or is given twice (``--json X --csv X``)."""
    seen: dict[Path, Path] = {}
    expanded = [(Path(f"{path}{suffix}"), kind) for path, kind in outputs if kind == "prefix"
                for suffix in sorted(PREFIX_SUFFIXES)]  # the files a prefix names (fig -> fig.png, fig.pdf, ...)
    for path, _ in list(outputs) + expanded:
        real = Path(os.path.realpath(path))
        if real in seen:
            raise DataError(f"{path} is given as two outputs: give each output its own path")
        seen[real] = path
        for inp in inputs:
            src = Path(os.path.realpath(inp))
            if real == src or (src.is_dir() and real.is_relative_to(src) and real.exists()):
                raise DataError(f"output {path} would overwrite the input {inp}: choose an output outside what the "
                                f"command reads")


@contextlib.contextmanager
def claim(targets: list[tuple[Path, str]], command: str = "",
          holds: dict[Path, tuple[str, ...]] | None = None) -> Iterator[None]:
    """What a command does before any work, for each of its outputs (path, kind): check, create parents, lock,
    sweep, and for a folder (kinds folder, keep, shared) refuse one that holds another command's outputs and mark
    it as ``command``'s; an existing file of another format than ``holds`` names for its path is refused
    (:func:`check_replaceable`).  Undone (created folders removed, locks released) if the command fails."""
    for path, kind in targets:
        check(path, kind)
        check_replaceable(path, (holds or {}).get(Path(path), ()), command)
    with contextlib.ExitStack() as stack:
        for path, kind in targets:
            path = Path(path)
            if kind in ("folder", "keep"):
                stack.enter_context(own_folder(path))
                if command:
                    stack.enter_context(taken(path, command))
                continue
            created: list[Path] = []
            stack.push(_undo_on_error(created))  # runs after the lock below is released
            _make_parents(path, created)
            _probe(path.parent, path)
            if kind == "shared":
                try:  # workers sharing a search folder start together: only the one that made it notes it
                    path.mkdir()
                    created.append(path)
                except FileExistsError:
                    pass
                sweep_stale(path)
                if command:
                    stack.enter_context(taken(path, command))
            else:
                stack.enter_context(locked(beside_lock(path), path, remove=True))
            sweep_stale(path.parent)
        yield


def _undo_on_error(created: list[Path]):
    def undo(exc_type, exc, tb):
        if exc_type is not None:
            _remove_if_empty(created)
        return False
    return undo


# --- a folder replaced as a whole ----------------------------------------------------------------------------
@contextlib.contextmanager
def replacing(folder: Path, command: str) -> Iterator[Path]:
    """Yield a staging folder for ``command``'s complete output; on success its files replace the previous run's
    (listed in the folder's manifest) as a whole; on failure the staging folder goes and the previous outputs
    stay as they were.  A folder holding another command's outputs is refused (:func:`take_folder`); the user's
    own files are left alone."""
    folder = Path(folder)
    with own_folder(folder), taken(folder, command):
        _, listed = _manifest_of(folder)
        stage = temp_path(folder / "stage")
        remove_path(stage)
        try:
            stage.mkdir()  # inside the try: a signal right after it still removes the staging folder
            yield stage
            new = sorted(p.name for p in stage.iterdir())
            for name in listed:
                if name not in new:
                    remove_path(folder / name)
            for name in new:
                remove_path(folder / name)
                os.replace(stage / name, folder / name)
            write_json(folder / MANIFEST, {"command": command, "files": new})
        finally:
            remove_path(stage)


DATASET_SIDECAR = "hpe_synthetic.json"  # hpe.synthetic.SIDECAR: what `hpe synth` writes into a dataset root


def folder_owner(folder: Path) -> str:
    """The hpe command whose outputs ``folder`` holds: the one its manifest names; for folders written before
    manifests, ``train`` for a run folder and ``search`` for a search folder; ``synth`` for a synthetic dataset
    root and ``dataset`` for an NYU-layout root (train/ or test/ with joint_data.mat); '' when none."""
    folder = Path(folder)
    if (folder / MANIFEST).exists():
        return _manifest_of(folder)[0]
    if (folder / DATASET_SIDECAR).exists():
        return "synth"
    if any((folder / split / "joint_data.mat").exists() for split in ("train", "test")):
        return "dataset"
    if (folder / "config.json").exists() and any((folder / f).exists() for f in ("checkpoint.pt", "result.json")):
        return "train"
    if any((folder / f).exists() for f in ("study.db", "trials.csv")):
        return "search"
    return ""


def take_folder(folder: Path, command: str) -> None:
    """Refuse a folder that holds another command's outputs (they would mix: predictions beside a run, a search
    beside predictions, a FusePred over a Depth-Net run); mark a folder nobody owns as ``command``'s."""
    folder = Path(folder)
    by = folder_owner(folder)
    if by and by != command:
        held = "a dataset (train/, test/ with joint_data.mat)" if by == "dataset" else f"the outputs of hpe {by}"
        raise DataError(f"{folder} holds {held}: hpe {command}'s outputs would mix with them; choose a new or empty "
                        f"output folder")
    if not (folder / MANIFEST).exists():
        write_json(folder / MANIFEST, {"command": command, "files": []})


def _contents(folder: Path) -> set[tuple[str, int, int]]:
    """What a folder holds, as (name, size, mtime) of each entry, leaving out hpe's own mark, lock and temporaries."""
    found = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name not in (MANIFEST, LOCK) and ".tmp-" not in entry.name:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    found.add((entry.name, st.st_size, st.st_mtime_ns))
    return found


@contextlib.contextmanager
def taken(folder: Path, command: str) -> Iterator[None]:
    """:func:`take_folder` for the length of the work.  A mark this call made is removed again at the end if the
    folder then holds nothing new (the command failed before writing, or wrote nothing): a user's folder is left
    as it was, not claimed by a command that put nothing in it.  A folder with new files keeps the mark (an
    interrupted run's checkpoints are still the command's)."""
    folder = Path(folder)
    marked = not (folder / MANIFEST).exists()
    before = _contents(folder) if marked else set()
    take_folder(folder, command)
    try:
        yield
    finally:
        if marked and _contents(folder) <= before and not _manifest_of(folder)[1]:
            with contextlib.suppress(OSError):
                (folder / MANIFEST).unlink()


def _manifest_of(folder: Path) -> tuple[str, list[str]]:
    """The command that last completed into ``folder`` and the files it wrote (none: no manifest)."""
    try:
        doc = json.loads((folder / MANIFEST).read_text())
        names, command = doc["files"], str(doc.get("command", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", []
    return command, [n for n in names if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")]


def io_error_line(exc: OSError) -> str:
    """One line for an OSError that reached the command line (a file that cannot be read or written)."""
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}the disk is full; free space or choose another location, then run again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{exc.strerror}: choose a location you can write (or read)"
    return f"{where}{exc.strerror or exc}"

