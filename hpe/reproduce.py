"""The pieces behind the ``reproduce-*`` make targets: table 4.3, figures 4.7-4.11, score fusion, fusion sweep."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.io import atomic_write_json
from hpe.metrics import joint_errors, read_ground_truth, read_tompson, read_uvd_txt, summarise, test_subjects, write_uvd_txt
from hpe.plots import figure_compare, figure_qualitative, figure_table, with_ext
from hpe.train import load_result

# Table 4.3 as published (normalised MSE), printed beside ours for reference.
THESIS_TABLE43 = {"net1": (0.00366, 0.00447), "net2": (0.00359, 0.00419), "net3": (0.00353, 0.00411),
                  "net4": (0.00341, 0.00364), "net5": (0.00235, 0.00325), "net6": (0.00183, 0.00242),
                  "net7": (0.00384, 0.00434), "net8": (0.00415, 0.00462), "net9": (0.00393, 0.00439)}


def ground_truth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uvd, xyz, subject) of the test set from a label .txt, a joint_data.mat or a prepared .h5."""
    path = Path(path)
    if path.suffix == ".h5":
        with h5py.File(path, "r") as h5:
            g = h5["test"]
            return g["joints_uvd"][:].astype(np.float64), g["joints_xyz"][:].astype(np.float64), g["subject"][:]
    uvd, xyz = read_ground_truth(path)
    return uvd, xyz, test_subjects(len(uvd))


def run_predictions(run_dir: Path) -> np.ndarray:
    path = Path(run_dir) / "test_predictions_uvd.txt"
    if not path.is_file():
        raise DataError(f"no test predictions in {run_dir} (missing {path.name}); train the run first")
    return read_uvd_txt(path)


def table43(runs: dict[str, Path], prefix: Path) -> list[list]:
    rows = []
    for name, run in runs.items():
        r = load_result(run)
        thesis = THESIS_TABLE43.get(name, (float("nan"), float("nan")))
        rows.append([name.capitalize(), f"{r['train_mse']:.5f}", f"{r['best_val_mse']:.5f}",
                     f"{thesis[0]:.5f}", f"{thesis[1]:.5f}"])
    figure_table(rows, ["ConvNet", "Training error", "Validation error", "thesis train", "thesis val"], prefix,
                 "Table 4.3: normalised MSE (ours | thesis, real NYU)")
    return rows


def compare(methods: dict[str, Path], gt: Path, prefix: Path, title: str, tompson: Path | None = None,
            depth_dir: Path | None = None, notes: list[str] | None = None) -> dict[str, dict]:
    """Errors of prediction files (or run folders) against one ground truth; figure + CSV + JSON summary."""
    gt_uvd, gt_xyz, subjects = ground_truth(gt)
    errors = {}
    for name, src in methods.items():
        src = Path(src)
        uvd = run_predictions(src) if src.is_dir() else read_uvd_txt(src)
        if uvd.shape != gt_uvd.shape:
            raise DataError(f"{src}: {uvd.shape[0]} frames do not match the ground truth's {gt_uvd.shape[0]} ({gt})")
        errors[name] = joint_errors(NYU_CAMERA.uvd_to_xyz(uvd), gt_xyz)
    if tompson is not None and depth_dir is not None:
        errors["Tompson et al."] = joint_errors(NYU_CAMERA.uvd_to_xyz(read_tompson(tompson, depth_dir, gt_uvd)), gt_xyz)
    figure_compare(errors, prefix, title, notes)
    summary = {n: summarise(e, subjects) for n, e in errors.items()}
    atomic_write_json(with_ext(prefix, "json"), {"methods": summary, "notes": notes or []})
    return summary


def fuse_predictions(depth_run: Path, rgb_run: Path, out: Path, weights: str = "fixed") -> dict:
    """FusePred-Net (score fusion): w * Depth-Net + (1 - w) * RGB-Net per output.
    fixed: w = 0.5 (thesis); error: w_j = e_rgb_j / (e_depth_j + e_rgb_j) from each net's validation error per
    joint; learned: per-output least squares on the validation split, clipped to [0, 1]."""
    load = lambda run, split: np.load(Path(run) / f"{split}_predictions.npz")  # noqa: E731
    for run in (depth_run, rgb_run):
        if not (Path(run) / "test_predictions.npz").is_file():
            raise DataError(f"no predictions in {run}; train it first")
    dv, rv, dt, rt = load(depth_run, "val"), load(rgb_run, "val"), load(depth_run, "test"), load(rgb_run, "test")
    a, b, y = dv["normalised"], rv["normalised"], dv["target"]
    if weights == "fixed":
        w = np.full(a.shape[1:], 0.5)
    elif weights == "error":
        ea, eb = np.linalg.norm(a - y, axis=-1).mean(0), np.linalg.norm(b - y, axis=-1).mean(0)
        w = np.repeat((eb / (ea + eb))[:, None], 3, axis=1)
    elif weights == "learned":
        d = (a - b).reshape(len(a), -1)
        w = np.clip(((y - b).reshape(len(a), -1) * d).sum(0) / np.maximum((d * d).sum(0), 1e-12), 0, 1)
        w = w.reshape(a.shape[1:])
    else:
        raise ValueError(f"unknown score-fusion weights '{weights}' (choose from fixed, error, learned)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fused_xyz = w * dt["xyz"] + (1 - w) * rt["xyz"]  # the map back to mm is affine, so fusing in mm is the same
    uvd = NYU_CAMERA.xyz_to_uvd(fused_xyz)
    write_uvd_txt(out / "test_predictions_uvd.txt", uvd)
    np.savez(out / "weights.npz", w=w)
    fused_val = w * a + (1 - w) * b
    result = {"status": "done", "weights": weights, "depth_run": str(depth_run), "rgb_run": str(rgb_run),
              "best_val_mse": float(np.mean((fused_val - y) ** 2)), "train_mse": float("nan"),
              "mean_weight_depth": float(w.mean())}
    atomic_write_json(out / "result.json", result)
    return result


def qualitative(run_dir: Path, data: Path, prefix: Path, frames_per_subject: int = 4) -> list[Path]:
    """Figures 4.10 (subject 1) and 4.11 (subject 2) from a run's test predictions."""
    p = np.load(Path(run_dir) / "test_predictions.npz")
    paths = []
    with h5py.File(data, "r") as h5:
        g = h5["test"]
        subjects = g["subject"][:]
        for subject, fig in ((1, "4.10"), (2, "4.11")):
            idx = np.nonzero(subjects[: len(p["xyz"])] == subject)[0]
            if len(idx) == 0:
                continue
            pick = idx[np.linspace(0, len(idx) - 1, min(frames_per_subject, len(idx))).astype(int)]
            paths += figure_qualitative(g["depth"][pick].astype(np.float32), g["joints"][pick], p["normalised"][pick],
                                        g["transform"][pick], g["joints_uvd"][pick], p["uvd"][pick],
                                        g["centre_xyz"][pick], g["cube"][pick],
                                        Path(f"{prefix}-fig{fig}-subject{subject}"),
                                        f"Figure {fig}: test subject {subject} (blue: ground truth, red: prediction)")
    return paths


def print_summary(summary_json: Path) -> None:
    doc = json.loads(Path(summary_json).read_text())
    for name, s in doc["methods"].items():
        subj = ", ".join(f"subject {k}: {v:.2f} mm" for k, v in s.get("per_subject_mm", {}).items())
        print(f"  {name:28s} mean {s['mean_mm']:7.2f} mm ({subj}); within 20 mm: {100 * s['success_rate']['20']:.1f}%")
    for note in doc.get("notes", []):
        print(f"  note: {note}")
