"""The one evaluation path: prediction files, run folders and published baselines scored against one ground truth.

``hpe evaluate`` and the figure targets (``hpe figure compare``, ``make reproduce-fig4.*``, ``make
leaderboard``) all call :func:`collect` and :func:`summaries`.  A file is refused, in one line that suggests the
likely cause, when its numbers are implausible for the declared format (uvd or xyz): rows with zero or negative
depth, depths outside 100-3000 mm, u, v far outside the image, rows that fit far better shifted or reordered, two
joints that fit far better exchanged, or a mean error above 150 mm against the ground truth.  The checks are
vectorised (a sample of rows against every frame for the order), well under a second on NYU's 8,252 frames.
A run folder is checked by the run-folder contract (:func:`hpe.run.open_run`) before its predictions are read.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpe import DataError
from hpe.atomic import write_json, write_text
from hpe.baselines import TOMPSON, ground_truth_file, methods_in
from hpe.camera import NYU_CAMERA, Camera
from hpe.metrics import THRESHOLDS, joint_errors, summarise
from hpe.nyu import (
    EVAL_JOINTS,
    EVAL_NAMES,
    JOINT_ORDERS,
    TEST_SUBJECT1_FRAMES,
    read_ground_truth,
    read_joints_txt,
    read_tompson,
    subjects_of,
    to_kit_order,
)

REPORT_THRESHOLDS = (10, 20, 30, 40, 50, 60, 70, 80)
DEPTH_RANGE_MM = (100.0, 3000.0)
MAX_PLAUSIBLE_MEAN_MM = 150.0
PUBLISHED_TOLERANCE_MM = 0.001


@dataclass
class GroundTruth:
    uvd: np.ndarray
    xyz: np.ndarray
    subjects: np.ndarray
    source: str
    camera: Camera = NYU_CAMERA


def load_ground_truth(path: Path | None = None, subject1_frames: int | None = None) -> GroundTruth:
    """The NYU test labels bundled with hpe (``path`` None), a label file, a test ``joint_data.mat``, or a prepared
    ``.h5`` (its test split, for runs trained on it).  ``subject1_frames``: how many of the first frames are test
    subject 1 (default: a synthetic root's own count, from its sidecar; else NYU's 2,440)."""
    path = Path(path) if path is not None else ground_truth_file()
    if path.suffix == ".h5":
        if subject1_frames is not None:  # it would be silently ignored: the file's subjects are recorded per frame
            raise ValueError(f"--subject1-frames {subject1_frames} (subject1_frames= in Python): {path} is a prepared "
                             f"file, which records each test frame's subject; drop the option")
        from hpe.dataset import open_prepared, test_ground_truth
        cam = Camera(*np.asarray(open_prepared(path).attrs["camera"], np.float64))
        uvd, xyz, subjects = test_ground_truth(path)
        return GroundTruth(uvd, xyz, subjects, str(path), cam)
    uvd, xyz = read_ground_truth(path)
    if subject1_frames is None:  # a test joint_data.mat of a synthetic root has its own split (its sidecar)
        from hpe.synthetic import subject1_frames as sidecar_split  # not hpe.prep: it imports torch (2 s)
        subject1_frames = (sidecar_split(path.parent.parent) if path.name == "joint_data.mat"
                           else TEST_SUBJECT1_FRAMES)
    if not 1 <= subject1_frames <= len(uvd) - 1:
        raise ValueError(f"--subject1-frames {subject1_frames} (subject1_frames= in Python): {path} has {len(uvd)} "
                         f"frames, so subject 1 must have 1-{len(uvd) - 1} of them (NYU: {TEST_SUBJECT1_FRAMES})")
    return GroundTruth(uvd, xyz, subjects_of(np.arange(1, len(uvd) + 1), subject1_frames), str(path))


@dataclass
class Method:
    name: str
    xyz: np.ndarray
    source: str
    published_mm: float | None = None
    errors: np.ndarray = field(default=None, repr=False)
    warning: str | None = None  # an unfinished run used with --allow-unfinished


def _implausible(pred: np.ndarray, fmt: str, cam: Camera) -> str | None:
    """Why ``pred`` cannot be (N, 14, 3) joints in ``fmt``, or None."""
    lo, hi = DEPTH_RANGE_MM
    d = np.median(pred[..., 2])
    if fmt == "uvd":
        u, v = pred[..., 0], pred[..., 1]
        if (u < 0).mean() > 0.05 and (np.abs(pred[..., :2]) < 400).all():
            return "many u values are negative: it looks like an xyz file (pass --format xyz)"
        if d < 10:
            return f"the median depth is {d:.3g}: depths in metres? (hpe wants mm)"
        if ((u < -cam.width) | (u > 2 * cam.width) | (v < -cam.height) | (v > 2 * cam.height)).mean() > 0.01:
            return f"u, v lie far outside the {cam.width}x{cam.height} image: not uvd pixels (another format?)"
    elif d < 10:
        return f"the median z is {d:.3g}: coordinates in metres? (hpe wants mm)"
    out = ((pred[..., 2] < lo) | (pred[..., 2] > hi)).mean()
    if out > 0.01:
        return f"{100 * out:.1f}% of the depths lie outside {lo:.0f}-{hi:.0f} mm (wrong units or format?)"
    return None


def _impossible_rows(pred: np.ndarray, fmt: str) -> str | None:
    """Rows that cannot be a hand: zero or negative depth (NaN is refused by the reader)."""
    bad = np.nonzero((pred[..., 2] <= 0).any(axis=1))[0]
    if len(bad) == 0:
        return None
    return (f"{len(bad)} row(s) have zero or negative {'depth' if fmt == 'uvd' else 'z'} (first: line {bad[0] + 1}): "
            f"frames without a prediction? Every test frame needs one")


def _repeated_rows(pred: np.ndarray) -> str | None:
    """Many rows that repeat an earlier row exactly: a block pasted twice, or one pose for many frames.  Real
    predictions never repeat to the last digit (none of the bundled baselines or the ground truth has a repeat)."""
    flat = pred.reshape(len(pred), -1)
    _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    repeats = np.nonzero(first[inverse.ravel()] != np.arange(len(flat)))[0]
    if len(repeats) < max(10, 0.01 * len(flat)):
        return None
    i = repeats[0]
    j = first[inverse.ravel()[i]]
    return (f"{len(repeats)} rows repeat an earlier row exactly (first: line {i + 1} = line {j + 1}): a block "
            f"pasted twice, or one pose for many frames? Every line must be its own frame's prediction")


def _mean_error(pred_xyz: np.ndarray, gt_xyz: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pred_xyz - gt_xyz, axis=-1).mean(axis=-1)


def _shift_gain(xyz: np.ndarray, gt_xyz: np.ndarray, k: int) -> tuple[float, float]:
    """(mean error with line i scored against frame i + k, t statistic of the per-line change): a negative t far
    from 0 means the shift fits better line after line, not by chance (a poor net fits every frame alike)."""
    n = len(xyz)
    lines, frames = slice(max(0, -k), n - max(0, k)), slice(max(0, k), n - max(0, -k))
    shifted = _mean_error(xyz[lines], gt_xyz[frames])
    change = shifted - _mean_error(xyz[lines], gt_xyz[lines])
    return float(shifted.mean()), float(change.mean() / (change.std() / np.sqrt(len(change)) + 1e-12))


SHIFT_BETTER = 0.99  # a correct file always fits worse shifted (NYU's baselines: 2-6 % worse by one frame) ...
SHIFT_T = -8.0       # ... and a shifted one better on line after line (Feedback shifted by one: t ~ -30)
FAR_BETTER = 0.35    # shuffled NYU baselines fit other frames 10x better; a poor net fits none much better


def _misordered(xyz: np.ndarray, gt: GroundTruth, declared: float, sample: int = 256) -> str | None:
    """Rows that fit other frames better: shifted by a constant (a missing or extra line) or shuffled.  Shifts of
    up to 3 lines are scored directly; a fixed sample of rows matched against every frame (nearest in joint space)
    finds larger shifts and shuffles."""
    from scipy.spatial.distance import cdist
    n = len(xyz)
    idx = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(int))
    best = cdist(xyz[idx].reshape(len(idx), -1), gt.xyz.reshape(n, -1)).argmin(axis=1)
    offsets, counts = np.unique(best - idx, return_counts=True)
    shifts = {k for k in (-3, -2, -1, 1, 2, 3, int(offsets[counts.argmax()])) if 0 < abs(k) < n // 2}
    fits = [(err, k) for k in shifts for err, t in [_shift_gain(xyz, gt.xyz, k)]
            if err < (SHIFT_BETTER if abs(k) <= 3 else FAR_BETTER) * declared and t < SHIFT_T]
    if fits:
        err, k = min(fits)
        return (f"the rows fit better shifted by {k:+d} line(s) ({err:.1f} mm against {declared:.1f} mm as given; "
                f"line i matches frame i{k:+d}): a missing or extra line, or another test list?")
    own, other = _mean_error(xyz[idx], gt.xyz[idx]).mean(), _mean_error(xyz[idx], gt.xyz[best]).mean()
    if other < FAR_BETTER * own:
        return (f"the rows fit other frames far better ({other:.1f} mm against {own:.1f} mm as given): shuffled, "
                f"or in another frame order than the test list?")
    return None


def _swapped(xyz: np.ndarray, gt: GroundTruth, declared: float) -> str | None:
    """Two joints exchanged: the pair whose swap lowers their error most, if that is far better (for a correct
    file no swap lowers it at all)."""
    cross = np.linalg.norm(xyz[:, :, None] - gt.xyz[:, None], axis=-1).mean(axis=0)  # (14, 14): pred a vs gt b
    own = np.diag(cross)
    pair, swapped = own[:, None] + own[None, :], cross + cross.T
    ratio = np.where(np.eye(len(own), dtype=bool), np.inf, swapped / pair)
    a, b = np.unravel_index(ratio.argmin(), ratio.shape)
    if ratio[a, b] < 0.6:
        after = declared - (pair[a, b] - swapped[a, b]) / len(own)
        return (f"joints {EVAL_NAMES[a]} and {EVAL_NAMES[b]} look exchanged: mean error {declared:.1f} mm as given, "
                f"{after:.1f} mm with the two swapped (check the joint order; --joint-order gives it)")
    return None


def load_method(name: str, src: Path, gt: GroundTruth, fmt: str = "uvd", joint_order: tuple[int, ...] = EVAL_JOINTS,
                published_mm: float | None = None, allow_unfinished: bool = False, flag: str = "--pred") -> Method:
    """A run folder (its ``test_predictions_uvd.txt``) or a prediction file, checked and lifted to xyz; ``flag``
    is the option that named it, for the messages."""
    src = Path(src)
    warning, hint = None, ""
    if src.name == "test_predictions_uvd.txt" and (src.parent / "config.json").is_file():
        src = src.parent  # a run's own file: scored as the run, under its contract (not-learned stays refused)
    if src.is_dir():
        from hpe.run import check_data, open_run
        info = open_run(src, flag, allow_unfinished)
        if str(gt.source).endswith(".h5"):
            check_data(info, Path(gt.source), flag)
        warning = info.warning
        path = src / "test_predictions_uvd.txt"
        if not path.is_file():
            raise DataError(f"no test predictions in run folder {src} (missing {path.name}): " + (
                "it was trained with predict_test = false, as `hpe search` trains its trials; train its settings "
                "with `hpe train` to score them" if info.config.get("predict_test") is False
                else "finish the run first" if not info.finished
                else "the run finished without writing them (the file was removed?); train it again"))
        if info.config.get("data") and not str(gt.source).endswith(".h5"):
            hint = f": the run was trained on {info.config['data']}, give --gt with that file"
        src, fmt, joint_order = path, "uvd", EVAL_JOINTS
    raw = read_joints_txt(src, role="prediction")
    if raw.shape != gt.uvd.shape:
        raise DataError(f"{src}: {raw.shape[0]} frames do not match the ground truth's {gt.uvd.shape[0]} "
                        f"({gt.source}){hint}")
    pred = to_kit_order(raw, joint_order)
    problem = (_impossible_rows(pred, fmt) or _implausible(pred, fmt, gt.camera)
               or (None if published_mm is not None else _repeated_rows(pred)))  # the kit's files are as published
    if problem:
        raise DataError(f"{src} is not a plausible {fmt} prediction file: {problem}")
    lift = (lambda p: gt.camera.uvd_to_xyz(p)) if fmt == "uvd" else (lambda p: p)  # noqa: E731
    m = Method(name, lift(pred), str(src), published_mm, warning=warning)
    m.errors = joint_errors(m.xyz, gt.xyz)
    declared = m.errors.mean()
    for other, order in JOINT_ORDERS.items():  # a file in another known joint order fits far better read that way
        if order != joint_order:  # (read right, a file fits every other order far worse: no gate needed)
            alt = joint_errors(lift(to_kit_order(raw, order)), gt.xyz).mean()
            if alt < 0.6 * declared:
                raise DataError(f"{src}: mean error {declared:.1f} mm in the declared joint order, but {alt:.1f} mm "
                                f"read in the '{other}' order: pass --joint-order {other}")
    axes = "u and v" if fmt == "uvd" else "x and y"  # a file written (row, column) instead of (column, row)
    alt = joint_errors(lift(pred[..., [1, 0, 2]]), gt.xyz).mean()
    if alt < 0.6 * declared:
        raise DataError(f"{src}: {axes} look exchanged: mean error {declared:.1f} mm as given, {alt:.1f} mm with "
                        f"the first two numbers of every joint swapped (write each joint as {axes[0]} "
                        f"{axes[-1]} {'d' if fmt == 'uvd' else 'z'})")
    problem = _swapped(m.xyz, gt, declared) or _misordered(m.xyz, gt, declared)
    # A run scored against a file that is not its data: that is the likely cause, so the message names the data.
    if problem:
        raise DataError(f"{src} does not fit {gt.source} ({problem}){hint}" if hint
                        else f"{src} is not a prediction file of {gt.source} as given: {problem}")
    if declared > MAX_PLAUSIBLE_MEAN_MM:
        raise DataError(f"{src}: mean error {declared:.1f} mm against {gt.source}" + (hint or (
            " is implausible for a hand pose method: another joint order (--joint-order), another test set or "
            "frame order, or the wrong --format?")))
    return m


def tompson_method(mat: Path, depth_dir: Path | None, gt: GroundTruth) -> Method:
    if depth_dir is None:
        raise ValueError("Tompson's 2D predictions need --depth-dir (the NYU test depth images) to be lifted to 3D")
    xyz = gt.camera.uvd_to_xyz(read_tompson(mat, depth_dir, gt.uvd, gt.camera))
    m = Method(TOMPSON, xyz, str(mat))
    m.errors = joint_errors(xyz, gt.xyz)
    return m


def collect(preds: list[tuple[str, Path]], gt: GroundTruth, fmt: str = "uvd",
            joint_order: tuple[int, ...] = EVAL_JOINTS, tompson: Path | None = None, depth_dir: Path | None = None,
            baselines: Path | None = None, allow_unfinished: bool = False, flag: str = "--pred") -> list[Method]:
    """Every method to compare: the given files / run folders, Tompson et al. (lifted to 3D) and the kit's files
    in ``baselines`` (named by method, with their published means)."""
    methods = [load_method(name, src, gt, fmt, joint_order, allow_unfinished=allow_unfinished, flag=flag)
               for name, src in preds]
    if tompson is not None:
        methods.append(tompson_method(tompson, depth_dir, gt))
    if baselines is not None:
        for method, path, entry in methods_in(baselines):
            methods.append(load_method(method, path, gt, "uvd", EVAL_JOINTS, entry.published_mm))
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        own = "its own --name" if flag == "--pred" else "its own NAME (NAME=PATH)"
        raise ValueError(f"two methods are called {', '.join(dupes)}: give each {flag} {own}")
    if not methods:
        given = "--pred FILE" if flag == "--pred" else f"{flag} NAME=PATH"
        raise ValueError(f"nothing to evaluate: give {given}, --tompson MAT or --baselines DIR")
    return methods


def summaries(methods: list[Method], gt: GroundTruth, success: str = "max") -> dict[str, dict]:
    out = {}
    for m in methods:
        s = summarise(m.errors, gt.subjects, kind=success)
        s["source"] = m.source
        if m.warning:
            s["warning"] = m.warning
        if m.published_mm is not None:
            s["published_mm"] = m.published_mm
            s["agrees_with_published"] = bool(abs(s["mean_mm"] - m.published_mm) < PUBLISHED_TOLERANCE_MM)
        out[m.name] = s
    return out


def format_table(results: dict[str, dict]) -> str:
    """One row per method (sorted by mean error), with the published mean beside ours where there is one."""
    rows = sorted(results.items(), key=lambda kv: kv[1]["mean_mm"])
    w = max(14, *(len(n) for n in results)) + 1
    subjects = sorted({s for r in results.values() for s in r.get("per_subject_mm", {})})
    kind = next(iter(results.values()))["success"]
    head = (f"{'method':<{w}}{'mean mm':>9}{'published':>11}" + "".join(f"{'subj ' + str(s):>9}" for s in subjects)
            + "".join(f"{'<=' + str(t):>7}" for t in REPORT_THRESHOLDS))
    what = {"max": "frames whose maximum joint error", "mean": "frames whose mean joint error",
            "joint": "joints whose error"}[kind]
    lines = [f"success rate = fraction of {what} is within T mm, in %", head]
    notes = []
    for name, r in rows:
        pub = r.get("published_mm")
        mark = "" if pub is None or r["agrees_with_published"] else " *"
        if mark:
            notes.append(f"* {name}: {r['mean_mm']:.3f} mm here vs {pub:.3f} mm published (differs by more than "
                         f"{PUBLISHED_TOLERANCE_MM} mm)")
        lines.append(f"{name:<{w}}{r['mean_mm']:>9.3f}{'' if pub is None else f'{pub:.3f}':>11}{mark}"
                     + "".join(f"{r['per_subject_mm'].get(s, float('nan')):>9.3f}" for s in subjects)
                     + "".join(f"{100 * r['success_rate'][t]:>7.1f}" for t in REPORT_THRESHOLDS))
    per_joint = [f"{'per joint':<{w}}" + "".join(f"{j:>8}" for j in EVAL_NAMES)]
    per_joint += [f"{name:<{w}}" + "".join(f"{r['per_joint_mm'][j]:>8.2f}" for j in EVAL_NAMES) for name, r in rows]
    return "\n".join(lines + notes + [""] + per_joint)


def to_csv(results: dict[str, dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "mean_mm", "published_mm", "subject1_mm", "subject2_mm"] + [f"{j}_mm" for j in EVAL_NAMES]
               + [f"success_{t}mm" for t in THRESHOLDS])
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["mean_mm"]):
        ps = r.get("per_subject_mm", {})
        w.writerow([name, f"{r['mean_mm']:.4f}", "" if r.get("published_mm") is None else f"{r['published_mm']:.3f}",
                    f"{ps.get(1, float('nan')):.4f}", f"{ps.get(2, float('nan')):.4f}"]
                   + [f"{r['per_joint_mm'][j]:.4f}" for j in EVAL_NAMES]
                   + [f"{r['success_rate'][int(t)]:.4f}" for t in THRESHOLDS])
    return buf.getvalue()


def write_results(results: dict[str, dict], json_path: Path | None = None, csv_path: Path | None = None,
                  notes: list[str] | None = None) -> None:
    if json_path:
        write_json(json_path, {"methods": results, "notes": notes or []})
    if csv_path:
        write_text(csv_path, to_csv(results))
