"""Evaluation (thesis 4.4.2) and readers for published predictions and the NYU ground truth.

* per-joint error: Euclidean distance in mm between predicted and ground-truth xyz, averaged over frames;
* success rate: fraction of frames whose MAXIMUM joint error is <= T mm, T = 0..80;
* normalised MSE (table 4.3): mean squared error over all 3J normalised outputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpe import DataError
from hpe.camera import NYU_CAMERA, Camera
from hpe.nyu import EVAL_JOINTS, EVAL_NAMES, PALM_SLOT, TEST_SUBJECT1_FRAMES, read_depth

THRESHOLDS = np.arange(0, 81)


def joint_errors(pred_xyz: np.ndarray, gt_xyz: np.ndarray) -> np.ndarray:
    """(N, J) Euclidean errors in mm."""
    pred_xyz, gt_xyz = np.asarray(pred_xyz, np.float64), np.asarray(gt_xyz, np.float64)
    if pred_xyz.shape != gt_xyz.shape:
        raise DataError(f"prediction shape {pred_xyz.shape} does not match ground truth {gt_xyz.shape}")
    if not np.isfinite(pred_xyz).all():
        bad = int(np.argmax(~np.isfinite(pred_xyz).all(axis=(1, 2))))
        raise DataError(f"predictions hold NaN/inf values (first at frame {bad + 1})")
    return np.linalg.norm(pred_xyz - gt_xyz, axis=-1)


def success_rate(errors: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Fraction of frames whose maximum joint error is <= each threshold."""
    worst = errors.max(axis=1)
    return (worst[None, :] <= np.asarray(thresholds, np.float64)[:, None]).mean(axis=1)


def normalised_mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Table 4.3's error: mean of squared differences over all frames and 3J normalised outputs."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))


def summarise(errors: np.ndarray, subjects: np.ndarray | None = None, names=EVAL_NAMES) -> dict:
    """The evaluation table: overall mean, per joint, per subject, success rate at 10..80 mm and 0..80 mm."""
    out = {"frames": int(errors.shape[0]), "mean_mm": float(errors.mean()),
           "per_joint_mm": {n: float(e) for n, e in zip(names, errors.mean(axis=0))},
           "success_rate": {int(t): float(s) for t, s in zip(THRESHOLDS, success_rate(errors))}}
    if subjects is not None:
        out["per_subject_mm"] = {int(s): float(errors[subjects == s].mean()) for s in np.unique(subjects)}
    return out


def test_subjects(n: int, subject1_frames: int = TEST_SUBJECT1_FRAMES) -> np.ndarray:
    return np.where(np.arange(1, n + 1) > subject1_frames, 2, 1)


# --- readers ----------------------------------------------------------------------------------------------
def read_uvd_txt(path: Path, joints: int = 14) -> np.ndarray:
    """A published prediction / label file: one line per frame, joints x (u, v, d), any whitespace, CRLF ok."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing prediction file: {path}")
    rows = []
    with open(path, "r", encoding="ascii", errors="replace") as fh:
        for i, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 * joints:
                raise DataError(f"{path}:{i}: expected {3 * joints} numbers, got {len(parts)}")
            try:
                row = [float(p) for p in parts]
            except ValueError:
                raise DataError(f"{path}:{i}: not a number in {line.strip()[:60]!r}") from None
            if not np.isfinite(row).all():
                raise DataError(f"{path}:{i}: NaN/inf value")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no predictions")
    return np.asarray(rows, np.float64).reshape(-1, joints, 3)


def write_uvd_txt(path: Path, uvd: np.ndarray) -> None:
    """Write predictions in the published format (14 x u v d a line), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    flat = np.asarray(uvd, np.float64).reshape(len(uvd), -1)
    np.savetxt(tmp, flat, fmt="%.4f", delimiter=" ")
    tmp.replace(path)


def read_ground_truth(path: Path, camera: Camera = NYU_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Test ground truth as (uvd, xyz), 14 evaluation joints, from ``joint_data.mat`` or the label text file."""
    path = Path(path)
    if path.suffix == ".mat":
        from hpe.nyu import load_joint_data
        jd = load_joint_data(path)
        return jd.uvd[:, EVAL_JOINTS], jd.xyz[:, EVAL_JOINTS]
    uvd = read_uvd_txt(path)
    return uvd, camera.uvd_to_xyz(uvd)


def read_tompson(mat_path: Path, depth_dir: Path, gt_uvd: np.ndarray, camera: Camera = NYU_CAMERA,
                 max_offset_mm: float = 150.0) -> np.ndarray:
    """Tompson et al.'s 2D predictions lifted to 3D (DeepPrior's protocol, thesis 4.4.7): d = depth[int(v), int(u)];
    where that lies more than 150 mm from the ground-truth palm-centre depth, the joint's ground-truth depth is
    used.  Needs the test depth images ``depth_dir/depth_1_%07d.png``.  Returns uvd (N, 14, 3)."""
    from scipy.io import loadmat

    try:
        uvconf = np.asarray(loadmat(mat_path)["pred_joint_uvconf"], np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read Tompson predictions from {mat_path}: {exc}") from None
    uv = uvconf[0][:, EVAL_JOINTS, :2]
    n = min(len(uv), len(gt_uvd))
    out = np.zeros((n, len(EVAL_JOINTS), 3))
    for i in range(n):
        depth = read_depth(Path(depth_dir) / f"depth_1_{i + 1:07d}.png", i + 1)
        u = np.clip(uv[i, :, 0].astype(int), 0, depth.shape[1] - 1)
        v = np.clip(uv[i, :, 1].astype(int), 0, depth.shape[0] - 1)
        d = depth[v, u].astype(np.float64)
        far = np.abs(d - gt_uvd[i, PALM_SLOT, 2]) > max_offset_mm
        d[far] = gt_uvd[i, far, 2]
        out[i, :, :2] = uv[i]
        out[i, :, 2] = d
    return out
