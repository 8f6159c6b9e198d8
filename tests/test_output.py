"""The one output layer (hpe/output.py, hpe/atomic.py): target checks before any work, one process per output,
stale temporaries swept before the space check, a failed write (disk full, I/O error) as one line with nothing
half-written kept, a rerun replacing a folder's outputs as a whole; for every command through the CLI."""
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hpe import DataError
from hpe.atomic import WriteError, atomic_h5, torch_save, write_bytes_from, write_json
from hpe.cli import main
from hpe.output import Out, check_writable, claim, own_folder, replacing

REPO = Path(__file__).resolve().parents[1]
FEEDBACK = str(REPO / "hpe" / "reference" / "nyu" / "ICCV15_NYU_Feedback.txt.gz")


def _temps(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if ".tmp-" in p.name or p.name.endswith(".lock")]


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_missing_parent_folders_of_a_file_output_are_created(tmp_path, capsys):
    out = tmp_path / "new" / "sub" / "t.json"
    assert main(["evaluate", "--pred", FEEDBACK, "--json", str(out), "--csv", str(tmp_path / "c" / "t.csv")]) == 0
    assert json.loads(out.read_text())["methods"]["ICCV15_NYU_Feedback"]["mean_mm"] > 15
    assert (tmp_path / "c" / "t.csv").is_file() and not _temps(tmp_path)  # no lock or temp left behind


@pytest.mark.parametrize("make, message", [
    (lambda t: (t / "dir").mkdir(), "output {t}/dir is a folder; give a file name"),
    (lambda t: (t / "file").write_text(""), "cannot write {t}/file/x.json: {t}/file is a file, not a folder"),
])
def test_file_targets_are_refused_before_work(tmp_path, capsys, make, message):
    make(tmp_path)
    target = tmp_path / "dir" if "folder;" in message else tmp_path / "file" / "x.json"
    assert main(["evaluate", "--pred", FEEDBACK, "--json", str(target)]) == 2
    err = capsys.readouterr().err
    assert message.format(t=tmp_path) in err and len(err.strip().splitlines()) == 1


def test_read_only_location_is_refused(tmp_path, capsys):
    assert main(["evaluate", "--pred", FEEDBACK, "--json", "/proc/hpe/x.json"]) == 2
    assert "cannot create the folder /proc/hpe" in capsys.readouterr().err


def test_a_refused_command_leaves_no_folder_it_created(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "preds"
    assert main(["predict", "--run", str(tmp_path / "none"), "--out", str(out), FEEDBACK]) == 2
    assert "run folder" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def _holding(context: str) -> subprocess.Popen:
    """A process that enters ``context`` (Python, with pathlib's Path and hpe.output's names at hand), says so, and
    holds it for 30 s."""
    code = ("import time; from pathlib import Path; from hpe.output import *\n"
            f"with {context}:\n    print('held', flush=True); time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_one_process_per_output_and_the_lock_is_released(tmp_path):
    out = tmp_path / "o"
    p = _holding(f"own_folder(Path({str(out)!r}))")
    try:
        with pytest.raises(DataError, match=f"another hpe process \\(pid {p.pid}\\) is writing {out}"):
            with own_folder(out):
                pass
        with pytest.raises(DataError, match="another hpe process"):
            with claim([(out, "folder")]):
                pass
    finally:
        p.kill()
        p.wait()
    with own_folder(out):  # a killed holder's lock is released by the OS
        with own_folder(out):  # and re-entrant within one process
            pass
    assert list(out.iterdir()) == []


def test_file_locks_are_exclusive_and_vanish(tmp_path):
    target = tmp_path / "x.json"
    with claim([(target, "file")]):
        lock = tmp_path / ".x.json.lock"
        assert lock.is_file()
        code = (f"from pathlib import Path; from hpe.output import locked\n"
                f"with locked(Path({str(lock)!r}), Path('x')): pass")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        assert "another hpe process" in r.stderr
    assert not lock.exists()


def test_stale_temporaries_are_swept_before_the_free_space_check(tmp_path, monkeypatch):
    """A killed prep's own 4 MB temporary must not make its rerun refuse for lack of space."""
    import hpe.atomic
    stale = tmp_path / f".out.h5.tmp-{_dead_pid()}.h5"
    stale.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(hpe.atomic, "free_bytes", lambda p: 5000 if stale.exists() else 10**9)
    import hpe.output
    monkeypatch.setattr(hpe.output, "free_bytes", hpe.atomic.free_bytes)
    check_writable(tmp_path / "out.h5", need_bytes=8000)
    assert not stale.exists()


def test_a_rerun_replaces_a_folders_outputs_as_a_whole(tmp_path):
    out = tmp_path / "o"
    with replacing(out, "predict") as stage:
        for i in range(3):
            (stage / f"overlay{i}.png").write_text("old")
        (stage / "overlays").mkdir()
        (stage / "predictions.json").write_text("old")
    (out / "mine.txt").write_text("the user's own file")
    with pytest.raises(RuntimeError):  # a failed rerun keeps the previous outputs as they were
        with replacing(out, "predict") as stage:
            (stage / "predictions.json").write_text("half")
            raise RuntimeError("killed")
    assert (out / "predictions.json").read_text() == "old" and (out / "overlay2.png").exists()
    with replacing(out, "predict") as stage:
        (stage / "predictions.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [".hpe-outputs.json", "mine.txt", "predictions.json"]
    assert (out / "predictions.json").read_text() == "new"
    with pytest.raises(DataError, match="holds the outputs of hpe predict: hpe fusepred's outputs would mix"):
        with replacing(out, "fusepred"):
            pass
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "result.json").write_text("{}")
    with pytest.raises(DataError, match="holds the outputs of hpe train: hpe predict's outputs would mix"):
        with replacing(tmp_path / "run", "predict"):
            pass


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_every_writer_turns_a_full_disk_into_one_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import torch
    target = tmp_path / "x.json"
    write_json(target, {"complete": True})
    monkeypatch.setattr(Path, "write_text", lambda self, text: (self.open("w").write(text[:3]), _enospc()))
    with pytest.raises(WriteError, match=f"cannot write {target}: the disk is full; nothing half-written was kept"):
        write_json(target, {"complete": False})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"complete": True} and not _temps(tmp_path)

    def torch_full(obj, f, *a, **k):  # what torch raises when the disk fills during torch.save
        Path(f).write_bytes(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 662")
    monkeypatch.setattr(torch, "save", torch_full)
    with pytest.raises(WriteError, match="ckpt.pt: the disk is full"):
        torch_save({}, tmp_path / "ckpt.pt")
    monkeypatch.undo()
    monkeypatch.setattr(Path, "write_bytes", _enospc)  # TorchScript goes through memory, then a plain write
    with pytest.raises(WriteError, match="model.pt: the disk is full"):
        write_bytes_from(tmp_path / "model.pt", lambda buf: buf.write(b"scripted"))
    monkeypatch.undo()
    with pytest.raises(WriteError, match="x.h5: the disk is full"):
        with atomic_h5(tmp_path / "x.h5") as h5:
            h5.create_dataset("d", data=np.zeros(10))
            raise RuntimeError("Can't write data (file write failed: errno = 28, error message = 'No space left "
                               "on device')")
    assert not _temps(tmp_path) and not (tmp_path / "x.h5").exists()


def test_claim_checks_every_declared_output(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(DataError, match="output folder .*f is a file"):
        with claim([(tmp_path / "f", "folder")]):
            pass
    with pytest.raises(DataError, match="is a folder; give a file name prefix"):
        with claim([(tmp_path, "prefix")]):
            pass
    assert Out("out", "prefix").kind == "prefix"
    with pytest.raises(AssertionError):
        Out("out", "nonsense")


def test_every_writing_command_declares_its_outputs():
    """A writing command that forgets to declare an output would skip the checks: every --out/--json/--csv/--dest
    of every command is declared (train's run folder is claimed by the run folder itself)."""
    from tests.test_cli import _subparsers

    from hpe.cli import build_parser
    writing = {"--out", "--json", "--csv", "--dest"}
    for name, sub in _subparsers(build_parser()):
        declared = {o.arg for o in sub.get_default("outputs") or []}
        for action in sub._actions:
            if set(action.option_strings) & writing and name != "train":
                assert action.dest in declared, f"hpe {name} {action.option_strings} is not declared as an output"
    assert {o.arg for o in build_parser().parse_args(["prep", "r", "o.h5"]).outputs} == {"out"}
    assert {o.arg for o in build_parser().parse_args(["synth", "r"]).outputs} == {"root"}


# --- a real full disk: a small tmpfs (needs root to mount; skipped elsewhere) ---------------------------------------
@pytest.fixture
def full_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _lying(argv: list[str]) -> list[str]:
    """Run the CLI with the free-space check before the work fooled, so the disk fills during the work itself."""
    code = ("import sys, hpe.output; hpe.output.free_bytes = lambda p: 10**12; "
            "from hpe.cli import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *argv]


def test_disk_full_during_prep_is_one_line_and_no_temp(full_disk, synthetic_root):
    r = subprocess.run(_lying(["prep", str(synthetic_root), str(full_disk / "x.h5"), "--workers", "1", "--quiet",
                               "--size", "128"]), capture_output=True, text=True, env={**os.environ,
                                                                                       "PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.startswith("hpe prep: error: cannot write") and "the disk is full" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
    assert list(full_disk.iterdir()) == []


def test_disk_full_during_export_and_figures_is_one_line(full_disk, tiny_runs, hpe_cli):
    """In this process: a writer that aborted the interpreter (TorchScript once did) would take the test worker
    with it, which fails the run as surely."""
    filler = full_disk / "filler"
    filler.write_bytes(b"\0" * (3 * 2**20 - 48 * 1024))  # leave 48 kB: less than any of these outputs
    run = str(tiny_runs / "done")
    for argv in (["export", "--run", run, "--format", "torchscript", "--out", str(full_disk / "m.pt")],
                 ["export", "--run", run, "--format", "onnx", "--out", str(full_disk / "m.onnx")],
                 ["figure", "frame", "--out", str(full_disk / "fig")]):
        code, _, err = hpe_cli(*argv)
        assert code == 2 and "the disk is full" in err, err[-3000:]
        assert len(err.strip().splitlines()) == 1, err[-3000:]
        assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_an_output_never_overwrites_an_input_or_another_output(tiny_runs, tmp_path, capsys):
    """Found by a careless user: evaluate's --json over its own --pred, --json and --csv on one path, export over
    the run's result.json, fusepred into the Depth-Net run it fuses; each is one line and nothing is written."""
    from hpe.cli import main
    run = tiny_runs / "done"
    pred = tmp_path / "p.txt"
    pred.write_text((run / "test_predictions_uvd.txt").read_text())
    before = {p: p.read_bytes() for p in [pred, run / "result.json"]}
    cases = [["evaluate", "--pred", str(pred), "--json", str(pred)],
             ["evaluate", "--pred", str(pred), "--json", str(tmp_path / "x"), "--csv", str(tmp_path / "x")],
             ["export", "--run", str(run), "--out", str(run / "result.json")]]
    # Deeper inside an input folder too (a careless user's find: prep wrote its HDF5 over one of its input PNGs).
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    png = root / "train" / "depth_1_0000001.png"
    png.write_bytes(b"frame")
    before[png] = b"frame"
    cases.append(["prep", str(root), str(png)])
    cases.append(["figure", "frame", "--out", str(png.with_suffix("")), "--depth", str(png)])  # prefix.png = input
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("would overwrite the input" in err[0] or "two outputs" in err[0]), err
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "x").exists()


def test_a_fusion_of_unfinished_runs_stays_marked_when_read_as_a_run(tiny_runs, tmp_path, capsys):
    """FusePred built with --allow-unfinished records its inputs' warnings; reading it as a run later is refused
    without --allow-unfinished, and with it the warning is carried on (it was silently 'done')."""
    from hpe.cli import main
    from hpe.run import open_run
    exp = Path(__file__).resolve().parents[1] / "experiments" / "fig4.7" / "fusepred.toml"
    out = tmp_path / "fp"
    assert main(["fusepred", str(exp), "--depth-run", str(tiny_runs / "unfinished"), "--rgb-run",
                 str(tiny_runs / "rgb"), "--out", str(out), "--allow-unfinished", "--training", "independent"]) == 0
    capsys.readouterr()
    with pytest.raises(DataError, match="built-from-unfinished"):
        open_run(out, "--pred")
    assert "unfinished" in open_run(out, "--pred", allow_unfinished=True).warning


def test_a_refused_writer_leaves_the_winners_folder_alone(tmp_path):
    """Found by a careless user: two `hpe train` into one new folder at once; the one that created the folder lost
    the lock, and its clean-up removed the folder (and the lock file) under the winner, which then failed too."""
    out = tmp_path / "run"
    with own_folder(out):
        # what the loser does: it created the folder, then is refused at the lock and cleans up
        from hpe.output import _remove_if_empty
        _remove_if_empty([out])
        assert out.is_dir() and (out / ".lock").exists()
        (out / "config.json").write_text("{}")  # the winner can still write
    assert (out / "config.json").exists()


def test_a_signal_while_a_folder_or_lock_file_is_made_waits_until_it_is_noted(tmp_path):
    """SIGTERM between making --out (or its lock file) and noting it for the clean-up left an empty --out or a stray
    .lock behind (test_sigterm_during_a_command_is_one_line, 1 run in 25 under load): the signal is held until the
    step is complete, then raised where the clean-up runs."""
    import signal
    import time

    from hpe.output import _signals_held, own_folder

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with _signals_held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler would run here without the hold
                steps.append("completed")
        assert steps == ["completed"]
        import hpe.output
        real = hpe.output._lock_file

        def signalled(lock, what):  # the signal arrives the instant the lock file exists
            fh = real(lock, what)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            return fh
        hpe.output._lock_file = signalled
        try:
            with pytest.raises(KeyboardInterrupt):
                with own_folder(tmp_path / "out"):
                    steps.append("worked")
        finally:
            hpe.output._lock_file = real
        assert steps == ["completed"] and not (tmp_path / "out").exists()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_prefix_given_as_one_of_its_files_is_the_prefix(tmp_path, hpe_cli):
    """Found by a careless user: `figure ... --out q.png` wrote q.png.png and q.png.pdf."""
    code, _, err = hpe_cli("figure", "frame", "--out", tmp_path / "f.png")
    assert code == 0, err
    assert "note: --out" in err and "writing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.csv", "f.pdf", "f.png"]


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    """A careless user's find: `hpe scale table --readme R` turned R from 600 into 644; every atomic writer keeps
    the mode of the file it replaces, and a new file gets the usual one."""
    from hpe.atomic import write_text
    readme = tmp_path / "README.rst"
    readme.write_text("old\n")
    readme.chmod(0o600)
    write_text(readme, "new\n")
    assert readme.read_text() == "new\n" and readme.stat().st_mode & 0o777 == 0o600
    write_text(tmp_path / "fresh.txt", "x")
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_interrupt_python_dropped_still_stops_the_command(tmp_path, monkeypatch, capsys):
    """A careless user's find: SIGINT/SIGTERM during `hpe scale tile` was often printed as "Exception ignored in
    WeakValueDictionary" (it struck inside h5py's weakref callback) and the command finished with exit 0.  Such a
    dropped interrupt is kept: the output is not committed and the command ends as interrupted."""
    import sys
    import types

    import hpe.cli
    from hpe.cli import main

    def cmd_that_is_interrupted_in_a_finaliser(a):
        sys.unraisablehook(types.SimpleNamespace(exc_type=KeyboardInterrupt, exc_value=KeyboardInterrupt(),
                                                 exc_traceback=None, err_msg="Exception ignored in", object=None))
        from hpe.atomic import write_text
        write_text(a.results, "{}")  # what the command would then have written
        return 0
    monkeypatch.setattr(hpe.cli, "_cmd_scale_table", cmd_that_is_interrupted_in_a_finaliser)
    out = tmp_path / "r.json"
    assert main(["scale", "table", str(out)]) == 130
    assert "interrupted; nothing half-written was kept" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary
    monkeypatch.undo()
    assert main(["scale", "table", str(tmp_path / "missing.json")]) == 2  # the next command is not interrupted


def test_a_folder_the_command_put_nothing_in_is_not_left_claimed(tmp_path):
    """A failed fetch into the user's own folder left .hpe-outputs.json there, claiming it for a command that wrote
    nothing (a later predict into it was refused); a mark over new files stays (an interrupted run's checkpoints)."""
    from hpe.output import MANIFEST, folder_owner, taken
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(RuntimeError):
        with taken(mine, "baselines fetch"):
            assert folder_owner(mine) == "baselines fetch"
            raise RuntimeError("the download failed")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with taken(mine, "baselines fetch"):
        pass  # ended without writing anything
    assert not (mine / MANIFEST).exists()
    with pytest.raises(KeyboardInterrupt):
        with taken(mine, "train"):
            (mine / "checkpoint.pt").write_bytes(b"x")
            raise KeyboardInterrupt
    assert folder_owner(mine) == "train"  # the interrupted run's folder stays its own


@pytest.mark.parametrize("content, found", [
    (b"\x89HDF\r\n\x1a\n" + bytes(8), "hdf5"), (b"PK\x03\x04rest", "zip"), (b"\x89PNG\r\n\x1a\nrest", "png"),
    (b"%PDF-1.4", "pdf"), (b"\x1f\x8b\x08", "gzip"), (b'  {"a": 1}', "json"), (b"[1, 2]", "json"),
    (b"1.0 2.0 3.0\n", "text"), ("é".encode() * 2048 + b"\xc3", "text"), (b"\x08\x07\x12\x04", "onnx"),
    (b"\x00\x01\x02", "binary"), (b"", "empty")])
def test_an_existing_files_format_is_told_from_its_first_bytes(tmp_path, content, found):
    from hpe.output import check_replaceable, file_format
    path = tmp_path / "f"
    path.write_bytes(content)
    assert file_format(path) == found
    if found not in ("empty", "hdf5"):
        with pytest.raises(DataError, match=r"exists and holds .*, not an HDF5 file: hpe prep would replace it"):
            check_replaceable(path, ("hdf5",), "prep")
    else:
        check_replaceable(path, ("hdf5",), "prep")


def test_a_lock_file_left_by_a_killed_process_is_swept_and_a_held_one_is_not(tmp_path):
    """kill -9 of `hpe synth ROOT` left .ROOT.lock beside the dataset for good; the next command in that folder
    removes a lock file nobody holds, never one a live process holds."""
    from hpe.atomic import sweep_stale
    p = _holding(f"claim([(Path({str(tmp_path / 'ds')!r}), 'dataset')])")
    try:
        assert sweep_stale(tmp_path) == [] and (tmp_path / ".ds.lock").is_file()  # held: kept
    finally:
        p.kill()
        p.wait()
    assert (tmp_path / ".ds.lock").is_file()  # SIGKILL: no clean-up ran
    assert sweep_stale(tmp_path) == [tmp_path / ".ds.lock"] and not (tmp_path / ".ds.lock").exists()


def test_workers_end_with_their_parent(tmp_path):
    """A parent killed with SIGKILL left its pool's workers running, each printing a BrokenPipeError traceback
    when it handed in its next result: the kernel now ends them with the parent, silently."""
    code = ("import os, time\nfrom hpe.workers import worker_pool\n"
            "def slow(i):\n    time.sleep(0.2)\n    return os.getpid()\n"
            "pool = worker_pool(2)\nprint(' '.join(map(str, {pid for pid in pool.map(slow, range(4))})), flush=True)\n"
            "pool.map(slow, range(1000))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    workers = [int(pid) for pid in p.stdout.readline().split()]
    assert workers
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)
    assert "Traceback" not in p.stderr.read()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie has ended
    except FileNotFoundError:
        return False
