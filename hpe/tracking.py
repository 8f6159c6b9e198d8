"""Experiment tracking: the per-epoch scalars of ``log.csv`` also written for TensorBoard (``--tensorboard DIR``
or the config key ``tensorboard``), with ``torch.utils.tensorboard``; an optional dependency,
``pip install 'hpe[tensorboard]'``.

Each run writes into ``DIR/<parent>/<run>`` (the last two parts of its folder: ``fig4.7/depthnet``,
``search/trial-0003``), so runs, table rows and search trials share one TensorBoard folder side by side.
Scalars are indexed by epochs trained (``log.csv``'s ``trained``); a resumed run drops what its killed
predecessor logged after its checkpoint (``purge_step``), so every curve has each epoch once.
"""
from __future__ import annotations

from pathlib import Path

from hpe import DataError

# log.csv column -> TensorBoard tag.  The schedule's epoch counter (``epoch``) is logged too: the author's loop
# rewinds it, so it is a curve of its own, not the step.
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_mse": "mse/train", "val_mse": "mse/val",
           "lr": "lr", "images_per_s": "speed/images_per_s", "seconds": "time/epoch_s", "epoch": "schedule/epoch"}


def run_logdir(root: str | Path, out: str | Path) -> Path:
    """Where a run's events go: ``root`` / the last two parts of the run folder."""
    parts = Path(out).resolve().parts
    return Path(root).joinpath(*parts[-2:])


class Tracker:
    """Writes one epoch row (a dict with log.csv's columns) at a time; ``close`` flushes."""

    def __init__(self, root: str | Path, out: str | Path, resume_after: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise DataError("--tensorboard needs TensorBoard: pip install 'hpe[tensorboard]' (or pip install "
                            "tensorboard)") from None
        self.dir = run_logdir(root, out)
        try:
            self.writer = SummaryWriter(str(self.dir), purge_step=resume_after + 1 if resume_after else None)
        except OSError as exc:
            raise DataError(f"--tensorboard {root}: cannot write {self.dir} ({exc})") from None

    def epoch(self, row: dict) -> None:
        for key, tag in SCALARS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), int(row["trained"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(root: str | None, out: str | Path, resume_after: int = 0) -> Tracker | None:
    return None if not root else Tracker(root, out, resume_after)
