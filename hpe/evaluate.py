"""``hpe evaluate``: compare any number of prediction files (published format) against the NYU ground truth."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.io import atomic_write_json, atomic_write_text
from hpe.metrics import joint_errors, read_ground_truth, read_tompson, read_uvd_txt, summarise, test_subjects
from hpe.nyu import EVAL_NAMES

REPORT_THRESHOLDS = (10, 20, 30, 40, 50, 60, 70, 80)


def evaluate_uvd(pred_uvd: np.ndarray, gt_xyz: np.ndarray, subject1_frames: int = 2440) -> tuple[dict, np.ndarray]:
    if pred_uvd.shape != gt_xyz.shape:
        raise DataError(f"{pred_uvd.shape[0]} predicted frames x {pred_uvd.shape[1]} joints, but the ground truth "
                        f"has {gt_xyz.shape[0]} x {gt_xyz.shape[1]}")
    err = joint_errors(NYU_CAMERA.uvd_to_xyz(pred_uvd), gt_xyz)
    return summarise(err, test_subjects(len(err), subject1_frames)), err


def format_table(results: dict[str, dict]) -> str:
    names = list(results)
    w = max(12, *(len(n) for n in names)) + 1
    lines = [f"{'':8}" + "".join(f"{n:>{w}}" for n in names)]
    lines.append(f"{'mean mm':8}" + "".join(f"{results[n]['mean_mm']:>{w}.3f}" for n in names))
    for s in sorted({s for r in results.values() for s in r.get("per_subject_mm", {})}):
        lines.append(f"{'subj ' + str(s):8}" + "".join(f"{results[n]['per_subject_mm'].get(s, float('nan')):>{w}.3f}"
                                                         for n in names))
    for j in EVAL_NAMES:
        lines.append(f"{j:8}" + "".join(f"{results[n]['per_joint_mm'][j]:>{w}.3f}" for n in names))
    for t in REPORT_THRESHOLDS:
        lines.append(f"{'<=' + str(t) + 'mm':8}" + "".join(f"{100 * results[n]['success_rate'][t]:>{w - 1}.1f}%"
                                                           for n in names))
    return "\n".join(lines)


def to_csv(results: dict[str, dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "mean_mm", "subject1_mm", "subject2_mm"] + [f"{j}_mm" for j in EVAL_NAMES]
               + [f"success_{t}mm" for t in REPORT_THRESHOLDS])
    for name, r in results.items():
        ps = r.get("per_subject_mm", {})
        w.writerow([name, f"{r['mean_mm']:.4f}", f"{ps.get(1, float('nan')):.4f}", f"{ps.get(2, float('nan')):.4f}"]
                   + [f"{r['per_joint_mm'][j]:.4f}" for j in EVAL_NAMES]
                   + [f"{r['success_rate'][t]:.4f}" for t in REPORT_THRESHOLDS])
    return buf.getvalue()


def evaluate_files(preds: list[Path], gt: Path, names: list[str] | None = None, json_path: Path | None = None,
                   csv_path: Path | None = None, subject1_frames: int = 2440, tompson: Path | None = None,
                   depth_dir: Path | None = None, quiet: bool = False) -> dict[str, dict]:
    """Evaluate prediction files; print the table; write JSON / CSV if asked.  Returns {name: summary}."""
    names = list(names or [])
    if names and len(names) != len(preds):
        raise ValueError(f"{len(names)} --name labels for {len(preds)} --pred files")
    gt_uvd, gt_xyz = read_ground_truth(gt)
    results = {}
    for i, path in enumerate(preds):
        results[names[i] if names else Path(path).stem] = evaluate_uvd(read_uvd_txt(path), gt_xyz, subject1_frames)[0]
    if tompson is not None:
        if depth_dir is None:
            raise ValueError("--tompson needs --depth-dir (the NYU test depth images)")
        results["Tompson"] = evaluate_uvd(read_tompson(tompson, depth_dir, gt_uvd), gt_xyz, subject1_frames)[0]
    if not results:
        raise ValueError("nothing to evaluate: give --pred FILE (and/or --tompson)")
    if not quiet:
        print(format_table(results))
    if json_path:
        atomic_write_json(json_path, results)
    if csv_path:
        atomic_write_text(csv_path, to_csv(results))
    return results
