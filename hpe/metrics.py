"""Evaluation metrics (thesis 4.4.2).

* per-joint error: Euclidean distance in mm between predicted and ground-truth xyz, averaged over frames;
* success rate: fraction of frames whose MAXIMUM joint error is <= T mm, T = 0..80 (the thesis's); the
  evaluation kit also offers the frame's MEAN joint error and the fraction of single JOINTS within T;
* normalised MSE (table 4.3): mean squared error over all 3J normalised outputs, i.e. per coordinate.
"""
from __future__ import annotations

import numpy as np

from hpe import DataError
from hpe.nyu import EVAL_NAMES

THRESHOLDS = np.arange(0, 81)
SUCCESS_KINDS = ("max", "mean", "joint")


def joint_errors(pred_xyz: np.ndarray, gt_xyz: np.ndarray) -> np.ndarray:
    """(N, J) Euclidean errors in mm."""
    pred_xyz, gt_xyz = np.asarray(pred_xyz, np.float64), np.asarray(gt_xyz, np.float64)
    if pred_xyz.shape != gt_xyz.shape:
        raise DataError(f"prediction shape {pred_xyz.shape} does not match ground truth {gt_xyz.shape}")
    if not np.isfinite(pred_xyz).all():
        bad = int(np.argmax(~np.isfinite(pred_xyz).all(axis=(1, 2))))
        raise DataError(f"predictions hold NaN/inf values (first at frame {bad + 1})")
    return np.linalg.norm(pred_xyz - gt_xyz, axis=-1)


def success_rate(errors: np.ndarray, thresholds: np.ndarray = THRESHOLDS, kind: str = "max") -> np.ndarray:
    """Fraction within each threshold of: each frame's maximum joint error (``max``, the thesis's metric), each
    frame's mean joint error (``mean``), or every single joint error (``joint``)."""
    if kind not in SUCCESS_KINDS:
        raise ValueError(f"unknown success-rate kind '{kind}' (choose from {', '.join(SUCCESS_KINDS)})")
    per = {"max": errors.max(axis=1), "mean": errors.mean(axis=1), "joint": errors.ravel()}[kind]
    return (per[None, :] <= np.asarray(thresholds, np.float64)[:, None]).mean(axis=1)


def normalised_mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Table 4.3's error: mean of squared differences over all frames and 3J normalised outputs."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))


def summarise(errors: np.ndarray, subjects: np.ndarray | None = None, names=EVAL_NAMES, kind: str = "max") -> dict:
    """The evaluation table: overall mean, per joint, per subject, success rate at 0..80 mm."""
    out = {"frames": int(errors.shape[0]), "mean_mm": float(errors.mean()),
           "per_joint_mm": {n: float(e) for n, e in zip(names, errors.mean(axis=0))},
           "success": kind,
           "success_rate": {int(t): float(s) for t, s in zip(THRESHOLDS, success_rate(errors, kind=kind))}}
    if subjects is not None:
        out["per_subject_mm"] = {int(s): float(errors[subjects == s].mean()) for s in np.unique(subjects)}
    return out
