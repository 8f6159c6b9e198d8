"""A run folder: one writer at a time, its files, its checkpoints and where its numbers came from.

Files: ``config.json`` (resolved config, data fingerprint, provenance), ``log.csv`` (one row per epoch),
``checkpoint.pt`` (weights, optimizer, RNG and loop state), ``best.pt`` (best weights and what ``hpe predict``
needs to preprocess new frames), ``result.json``, ``val_predictions.npz``, ``test_predictions.npz`` and
``test_predictions_uvd.txt``.  Every file is written atomically (:mod:`hpe.atomic`).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from hpe import DataError, __version__
from hpe.atomic import torch_save, write_json, write_text
from hpe.output import own_folder

LOG_FIELDS = ("epoch", "trained", "train_loss", "train_mse", "val_loss", "val_mse", "lr", "seconds",
              "images_per_s", "val_seconds")
TRAINING_FILES = ("checkpoint.pt", "best.pt", "best.prev.pt", "log.csv", "result.json", "config.json",
                  "val_predictions.npz", "test_predictions.npz", "test_predictions_uvd.txt")


class RunDir:
    def __init__(self, out: Path):
        self.dir = Path(out)
        self.ckpt, self.best = self.dir / "checkpoint.pt", self.dir / "best.pt"
        self.best_prev = self.dir / "best.prev.pt"
        self.log, self.config, self.result = self.dir / "log.csv", self.dir / "config.json", self.dir / "result.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator["RunDir"]:
        """Hold the folder's lock (:func:`hpe.output.own_folder`, the lock of every output folder): a second writer
        is refused at once; a lock left by a killed process is released by the OS, so it never blocks a resume."""
        with own_folder(self.dir):
            yield self

    def clear(self) -> None:
        """Remove a previous run's files (the lock stays)."""
        for name in TRAINING_FILES:
            (self.dir / name).unlink(missing_ok=True)

    def write_log(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
        write_text(self.log, buf.getvalue())

    def save(self, model, opt, device, extra: dict, new_best: dict | None, best_info: dict) -> None:
        """Write best.pt (if the best changed) and then checkpoint.pt, each atomically.

        The previous best.pt is kept as best.prev.pt until the new checkpoint is in place, so a kill between the
        two writes still leaves the best weights that the surviving checkpoint refers to (see :meth:`load_best`).
        """
        if new_best is not None:
            if self.best.exists():
                os.replace(self.best, self.best_prev)
            torch_save({"model": {k: v.cpu() for k, v in new_best.items()}, **best_info}, self.best)
        torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None, **extra},
                   self.ckpt)
        self.best_prev.unlink(missing_ok=True)

    def load_checkpoint(self) -> dict:
        try:
            return torch.load(self.ckpt, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise DataError(f"cannot read {self.ckpt}: {exc}; delete {self.dir} to start over") from None

    def load_best(self, best_epoch: int) -> dict | None:
        """The best weights that a checkpoint with ``best_epoch`` refers to (None before the first finished epoch)."""
        if best_epoch == 0:
            return None
        for path in (self.best, self.best_prev):
            if path.exists():
                saved = torch.load(path, map_location="cpu", weights_only=False)
                if saved["epoch"] == best_epoch:
                    return saved["model"]
        raise DataError(f"{self.dir}: checkpoint.pt refers to the best weights of epoch {best_epoch}, but neither "
                        f"best.pt nor best.prev.pt holds them; delete {self.dir} to start over")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def provenance(device: torch.device | None = None) -> dict:
    """Where a run's numbers come from: hpe version, git commit and dirty flag (from a checkout), Python, torch,
    CUDA, the device, the command line and the start time."""
    src = Path(__file__).resolve().parent.parent
    out = {"hpe_version": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "platform": platform.platform(), "command": " ".join(sys.argv),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if (src / ".git").exists():
        commit = _git(["rev-parse", "HEAD"], src)
        if commit:
            status = _git(["status", "--porcelain", "--untracked-files=no"], src)
            out.update(git_commit=commit, git_dirty=bool(status))
    if device is not None:
        out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    return out


def load_result(run_dir: Path) -> dict:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise DataError(f"no finished run in {run_dir} (missing result.json); train it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); train the run again") from None


# --- the run-folder contract: what every command that reads a run checks -------------------------------------
FINISHED = ("done", "stopped")
ALLOW = "pass --allow-unfinished to use it anyway (its outputs then say so)"


@dataclass
class RunInfo:
    dir: Path
    status: str            # done | stopped | not-learned | diverged | unfinished
    reason: str
    config: dict           # config.json's "config"
    fingerprint: str | None  # of the data it was trained on

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def warning(self) -> str | None:
        """What outputs made from an unfinished run carry (None for a finished run)."""
        return None if self.finished else f"run {self.dir} is {self.status}: {self.reason}"


def open_run(run_dir: Path, role: str = "--run", allow_unfinished: bool = False, data: Path | None = None,
             **fits) -> RunInfo:
    """Check a run folder before a command uses it, refusing in one line: no such folder; not finished (no
    ``result.json``), not learned or diverged (unless ``allow_unfinished``); trained on other data than ``data``
    (the fingerprint in ``config.json``); or a config that does not fit the ``role`` (``fits``: key=value(s) the
    run's config must have, e.g. ``target="pose"``, ``net="net6"``)."""
    run_dir = Path(run_dir)
    who = f"{role}{run_dir}" if role.endswith("=") else f"{role} {run_dir}"
    if not run_dir.is_dir():
        raise DataError(f"{who}: no such run folder" + (" (it is a file)" if run_dir.exists() else ""))
    try:
        doc = json.loads((run_dir / "config.json").read_text())
        config, fp = doc["config"], doc.get("data", {}).get("fingerprint")
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{who} is not a run folder (no readable config.json): give a folder that `hpe train` "
                        f"wrote") from None
    if (run_dir / "result.json").is_file():
        result = load_result(run_dir)
        status, reason = str(result.get("status")), str(result.get("reason", ""))
        if status in FINISHED and result.get("warnings"):  # e.g. FusePred built from runs used unfinished
            status, reason = "built-from-unfinished", "; ".join(map(str, result["warnings"]))
    else:
        status, reason = "unfinished", "no result.json: it was stopped or is still training"
    if status not in FINISHED and not allow_unfinished:
        hint = {"unfinished": f"finish it with `hpe train --resume --out {run_dir}` or",
                "not-learned": "train it longer or with other settings, or",
                "diverged": "train it again with a lower learning rate, or"}.get(status, "")
        raise DataError(f"{who} is {status} ({reason}): {hint} {ALLOW}".replace("  ", " "))
    for key, wanted in fits.items():
        allowed = wanted if isinstance(wanted, tuple) else (wanted,)
        if config.get(key) not in allowed:
            raise DataError(f"{who} has {key} = {config.get(key)!r}, but this role needs "
                            f"{' or '.join(map(repr, allowed))}: give a run trained for it")
    info = RunInfo(run_dir, status, reason, config, fp)
    if data is not None:
        check_data(info, data, role)
    return info


def check_data(info: RunInfo, data: Path, role: str = "--run") -> None:
    """Refuse using a run with a prepared file other than the one it was trained on (by content fingerprint)."""
    from hpe.dataset import fingerprint, open_prepared
    fp = fingerprint(open_prepared(data))
    if fp != info.fingerprint:
        raise DataError(f"{role} {info.dir} was trained on {info.config.get('data')} (fingerprint {info.fingerprint}), "
                        f"but {data} holds other data (fingerprint {fp}): give the file it was trained on")


def write_config(run: RunDir, doc: dict) -> None:
    write_json(run.config, doc)
