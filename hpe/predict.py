"""``hpe predict``: a trained run on new depth frames, with or without labels.

Depth inputs: NYU's RGB-packed PNG (8-bit RGB, mm = G << 8 | B, recognised by its mode), a 16-bit single-channel
PNG and ``.npy`` arrays (uint16 or float), both in millimetres times ``depth_scale``.  Folders and globs expand
in sorted order.  Every frame is cropped by :func:`hpe.crop.crop_frame`, the function ``hpe prep`` uses, and
resized by :func:`hpe.dataset.resize_crops`, the one training uses: a labelled frame predicted with its
ground-truth centre gives exactly the prediction ``hpe train`` wrote for it.

Hand centre (``centre``): ``segment`` (the nearest object's mean), ``com`` (DeepPrior's centre of mass inside the
cube around it), ``refined`` (the default: from ``com``, re-centred on the palm centre that centre-refinement nets
predict, DeepPrior++'s approach, coarse to fine: a net trained on a larger cube first, so that it sees the hand
from a centre that landed on the forearm or the head; without one, the pose net's own palm joint) or a fixed
``U,V,D``.
"""
from __future__ import annotations

import glob
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hpe import DataError
from hpe.atomic import atomic_path, write_json
from hpe.output import replacing
from hpe.camera import NYU_CAMERA, Camera
from hpe.crop import CUBE_MM_RANGE, CropRules, crop_frame, find_centre, valid_depth
from hpe.dataset import InputAssembler, resize_crops
from hpe.export import TrainedRun, load_run
from hpe.handlike import no_hand
from hpe.nyu import SKELETON, check_not_colour, decode_depth, write_joints_txt

CENTRES = ("segment", "com", "refined")
IMAGE_SUFFIXES = (".png", ".npy")


def expand_inputs(items: list[str], what: str = "depth") -> list[Path]:
    """Files, folders (their .png/.npy files) and globs, each group in sorted order; none found is an error."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            named = [f for f in found if f.name.startswith(f"{'rgb' if what == 'colour' else 'depth'}_")]
            if named and len(named) < len(found):  # NYU's layout keeps depth_* and rgb_* frames side by side
                found = named
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(item))
        if not found:
            raise DataError(f"no {what} frames found at {item} (give PNG or .npy files, a folder or a glob)")
        out += found
    return out


def read_depth_frame(path: Path, depth_scale: float = 1.0) -> np.ndarray:
    """A depth frame in millimetres (float32), from NYU's RGB-packed PNG, a 16-bit PNG or a .npy array."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.dtype.kind not in "fiu":
                raise DataError(f"{path}: a depth .npy must be a 2-D array of numbers, got {arr.dtype} {arr.shape}")
            mm = arr.astype(np.float64) * depth_scale
        else:
            with Image.open(path) as im:
                if im.mode == "RGB":  # NYU's packing; a 16-bit depth is never stored as 8-bit RGB otherwise
                    packed = np.asarray(im)
                    check_not_colour(packed, path)
                    mm = decode_depth(packed).astype(np.float64) * depth_scale
                elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    mm = np.asarray(im).astype(np.float64) * depth_scale
                else:
                    raise DataError(f"{path}: a {im.mode} image is not a depth frame (give NYU's RGB-packed PNG, a "
                                    f"16-bit single-channel PNG or a .npy array)")
    except DataError:
        raise
    except Exception as exc:  # PIL / numpy raise many types for unreadable files
        raise DataError(f"cannot read depth frame {path}: {exc}") from None
    if not np.isfinite(mm).all():
        mm = np.where(np.isfinite(mm), mm, 0)
    if not valid_depth(mm).any():
        raise DataError(f"{path}: no valid depth (all zero or outside 10-1500 mm): wrong units? "
                        f"(--depth-scale converts, e.g. 0.1 or 0.125)")
    return mm.astype(np.float32)


def read_rgb_frame(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise DataError(f"cannot read colour frame {path}: {exc}") from None
    if rgb.shape[:2] != shape:
        raise DataError(f"colour frame {path} is {rgb.shape[1]}x{rgb.shape[0]}, its depth frame {shape[1]}x{shape[0]}: "
                        f"the colour must be registered to the depth")
    return rgb


def pair_rgb(depth_files: list[Path], rgb: list[str]) -> list[Path]:
    """The colour frame of each depth frame: by name (``depth`` -> ``rgb``, or the same name) or else by order."""
    files = expand_inputs(rgb, "colour")
    by_name = {f.name: f for f in files}
    paired = [by_name.get(d.name.replace("depth", "rgb")) or by_name.get(d.name) for d in depth_files]
    if all(paired):
        return paired
    if len(files) == len(depth_files):
        return files
    raise DataError(f"cannot pair {len(files)} colour frames with {len(depth_files)} depth frames by name or by order")


def parse_camera(text: str | None) -> Camera | None:
    if text is None:
        return None
    try:
        fx, fy, cx, cy = (float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--camera {text}: give fx,fy,cx,cy in pixels, e.g. 588.04,587.08,320,240") from None
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        raise ValueError(f"--camera {text}: every value must be a finite number of pixels")
    if fx <= 0 or fy <= 0 or cx <= 0 or cy <= 0:
        raise ValueError(f"--camera {text}: focal lengths and the principal point must be positive (pixels)")
    return Camera(fx=fx, fy=fy, cx=cx, cy=cy)


def check_cube(cube: float | None) -> None:
    lo, hi = CUBE_MM_RANGE
    if cube is not None and not (math.isfinite(cube) and cube > 0):
        raise ValueError(f"--cube {cube}: the cube edge must be a positive number of mm (the run's is the default)")
    if cube is not None and not lo <= cube <= hi:
        raise ValueError(f"--cube {cube:g}: the cube edge must lie in {lo:g}-{hi:g} mm (a hand's is some 150-600 mm; "
                         f"the default is the run's): is it in mm?")


def camera_for(frame: np.ndarray, path: Path, given: Camera | None) -> Camera:
    """The camera of a frame of this size: NYU's for 640x480 frames, else the one given (which must fit)."""
    h, w = frame.shape
    if given is None:
        if (w, h) != (NYU_CAMERA.width, NYU_CAMERA.height):
            raise DataError(f"{path} is {w}x{h}, but the default (NYU) camera is {NYU_CAMERA.width}x"
                            f"{NYU_CAMERA.height}: give your sensor's --camera fx,fy,cx,cy")
        return NYU_CAMERA
    if not (0 < given.cx < w and 0 < given.cy < h):
        raise DataError(f"{path} is {w}x{h}, but the camera's principal point ({given.cx}, {given.cy}) lies outside "
                        f"it: wrong --camera or wrong frame size")
    return Camera(fx=given.fx, fy=given.fy, cx=given.cx, cy=given.cy, width=w, height=h)


@dataclass
class Frame:
    path: Path
    depth: np.ndarray
    rgb: np.ndarray | None
    camera: Camera
    centre_uvd: np.ndarray | None = None
    no_hand: str | None = None  # why the final crop holds no hand-like object (set by each crop)


def _batch(frames: list[Frame], cube: float, size: int,
           rules: CropRules = CropRules()) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
    crops = []
    for f in frames:
        try:
            crops.append(crop_frame(f.depth, f.rgb, f.centre_uvd, cube, size, f.camera, rules))
        except DataError as exc:
            raise DataError(f"{f.path}: {exc}") from None
    depth = torch.from_numpy(np.stack([c["depth"] for c in crops])).unsqueeze(1)
    rgb = torch.from_numpy(np.stack([c["rgb"] for c in crops])) if frames[0].rgb is not None else None
    return depth, rgb, crops


@torch.no_grad()
def _run_net(run: TrainedRun, assemble: InputAssembler, frames: list[Frame], device: torch.device,
             cube: float) -> tuple[np.ndarray, list[dict]]:
    """Normalised predictions (N, J, 3) for frames whose centres are set."""
    depth, rgb, crops = _batch(frames, cube, run.preprocess["size"], CropRules.from_attrs(run.preprocess))
    for f, c in zip(frames, crops):
        f.no_hand = no_hand(c["depth"], float(c["centre_uvd"][2]), float(c["cube"]))
        f.centre_uvd = np.asarray(c["centre_uvd"])  # the centre used (centre_depth = image: its depth is I(c))
    depth, rgb = resize_crops(depth, rgb, run.cfg.input_size)
    out = run.model(*assemble(depth.to(device), None if rgb is None else rgb.to(device)))
    return out.float().cpu().view(len(frames), -1, 3).numpy(), crops


def _assembler(run: TrainedRun) -> InputAssembler:
    pre = run.preprocess
    return InputAssembler(run.cfg.inputs, run.cfg.rgb_mode, run.cfg.rgb_mask, pre["rgb_mean"], pre["rgb_std"])


def refine_centres(run: TrainedRun, frames: list[Frame], device: torch.device, steps: int,
                   cube_scale: float = 1.0) -> None:
    """Move each frame's centre to the palm centre ``run`` predicts from a crop around it, ``steps`` times (a run
    trained with target = centre, or a pose net's palm joint).  The crop uses the run's own cube (times
    ``cube_scale``); a step that would leave the crop's object (more than a third of the cube) is not taken."""
    palm_slot = run.preprocess["joint_names"].index("C")
    cube = float(run.preprocess["cube_mm"]) * cube_scale
    assemble = _assembler(run)
    for _ in range(steps):
        norm, crops = _run_net(run, assemble, frames, device, cube)
        palms = norm[:, palm_slot] * cube / 2 + np.stack([c["centre_xyz"] for c in crops])  # inverse eqs. 4.7-4.9
        for f, palm, crop in zip(frames, palms, crops):
            if np.linalg.norm(palm - crop["centre_xyz"]) <= cube / 3:  # a step that stays on the cropped object
                f.centre_uvd = f.camera.xyz_to_uvd(palm)


def coarse_to_fine(centre_runs: Sequence[TrainedRun]) -> list[TrainedRun]:
    """Centre runs in the order they refine: the largest cube (the most context, the coarsest) first."""
    return sorted(centre_runs, key=lambda r: -float(r.preprocess["cube_mm"]))


def predict_frames(run: TrainedRun, frames: list[Frame], centre: str, cube: float, device: torch.device,
                   refine_steps: int = 3, centre_runs: Sequence[TrainedRun] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(joints_xyz (N, J, 3) in mm, centre_uvd (N, 3)) for a batch of frames.  ``refined`` runs every centre run
    (coarse to fine, ``refine_steps`` crops each) from ``com``, or without any the pose net ``run`` itself; a
    ``cube`` other than the pose run's scales the centre runs' cubes alike."""
    for f in frames:
        if f.centre_uvd is None:
            try:
                f.centre_uvd = find_centre(f.depth, "com" if centre == "refined" else centre, cube, camera=f.camera)
            except DataError:
                share = 100 * valid_depth(f.depth).mean()
                raise DataError(f"{f.path}: no object found to centre the crop on ({share:.1f}% of the pixels lie in "
                                f"10-1500 mm, scattered: an empty or noisy frame, or wrong units: --depth-scale?); "
                                f"give --centre U,V,D") from None
    if centre == "refined":
        scale = cube / float(run.preprocess["cube_mm"])
        for refiner in coarse_to_fine(centre_runs) or [run]:
            refine_centres(refiner, frames, device, refine_steps, scale)
    norm, crops = _run_net(run, _assembler(run), frames, device, cube)
    xyz = norm * cube / 2 + np.stack([c["centre_xyz"] for c in crops])[:, None, :]  # inverse eqs. 4.7, 4.8, 4.9
    return xyz, np.stack([f.centre_uvd for f in frames])


# --- left hands ----------------------------------------------------------------------------------------------
# NYU has right hands only, so every hpe model does.  A left hand seen in a mirror is a right hand: --hand left
# predicts on the mirrored frame and mirrors the joints back; auto tries both and keeps the better fit.
HANDS = ("right", "left", "auto")
FIT_CAP_MM = 60.0       # a hand point farther than this from every bone counts this much (auto)
FIT_POINTS = 800        # hand points sampled per frame to score a pose (auto)


def mirror_frame(f: Frame) -> Frame:
    """``f`` seen in a mirror (pixel u -> W-1-u) with the camera mirrored alike (cx -> W-1-cx), which is exactly
    x -> -x in camera space: a left hand becomes a right hand and nothing else changes."""
    w = f.depth.shape[1]
    centre = None if f.centre_uvd is None else np.array([w - 1 - f.centre_uvd[0], *f.centre_uvd[1:]])
    return Frame(f.path, f.depth[:, ::-1].copy(), None if f.rgb is None else f.rgb[:, ::-1].copy(),
                 replace(f.camera, cx=w - 1 - f.camera.cx), centre)


def skeleton_fit(f: Frame, xyz: np.ndarray, centre_xyz: np.ndarray, cube: float) -> float:
    """How well joints ``xyz`` (J, 3, mm) explain the hand seen in ``f``: the mean distance from the frame's points
    inside the cube around ``centre_xyz`` to the nearest bone of the skeleton, each capped at FIT_CAP_MM, in mm.
    A right-hand pose fitted to a left hand (or the reverse) leaves the real thumb's points unexplained and puts
    bones where there is no hand, and scores worse (on the synthetic test set: the right choice in 82 % of frames,
    where the joints' own distance to the surface was right in only 53 %)."""
    v, u = np.nonzero(valid_depth(f.depth))
    pts = f.camera.uvd_to_xyz(np.c_[u, v, f.depth[v, u]])
    pts = pts[np.all(np.abs(pts - centre_xyz) < cube / 2, axis=1)]
    if len(pts) == 0:
        return FIT_CAP_MM
    if len(pts) > FIT_POINTS:  # a fixed subsample: the same points score both hands
        pts = pts[np.random.default_rng(0).choice(len(pts), FIT_POINTS, replace=False)]
    a, b = xyz[[i for i, _ in SKELETON]], xyz[[j for _, j in SKELETON]]
    ab = b - a
    t = np.clip(((pts[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab ** 2).sum(-1), 1e-9)[None], 0, 1)
    dist = np.linalg.norm(pts[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1).min(axis=1)
    return float(np.minimum(dist, FIT_CAP_MM).mean())


def predict_hands(run: TrainedRun, frames: list[Frame], hand: str, centre: str, cube: float, device: torch.device,
                  refine_steps: int = 3, centre_runs: Sequence[TrainedRun] = ()
                  ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """:func:`predict_frames` for right hands, left hands (mirrored, predicted, mirrored back) or ``auto``: both,
    keeping per frame the one whose skeleton explains the hand's points better (:func:`skeleton_fit`).  Returns
    (joints_xyz, centre_uvd, per-frame records of the hand used and, for auto, both fits)."""
    if hand not in HANDS:
        raise ValueError(f"--hand {hand}: choose {', '.join(HANDS)}")
    out, seen = {}, {}  # seen: the frames each hand was predicted on (their crops' no_hand flags)
    if hand in ("right", "auto"):
        seen["right"] = [replace(f) for f in frames] if hand == "auto" else frames
        out["right"] = predict_frames(run, seen["right"], centre, cube, device, refine_steps, centre_runs)
    if hand in ("left", "auto"):
        seen["left"] = [mirror_frame(f) for f in frames]
        xyz, centres = predict_frames(run, seen["left"], centre, cube, device, refine_steps, centre_runs)
        xyz = xyz * np.array([-1.0, 1.0, 1.0])  # the mirror is x -> -x in camera space
        centres = np.stack([[f.depth.shape[1] - 1 - c[0], c[1], c[2]] for f, c in zip(frames, centres)])
        out["left"] = xyz, centres
    if hand != "auto":
        for f, g in zip(frames, seen[hand]):
            f.no_hand = g.no_hand
        xyz, centres = out[hand]
        return xyz, centres, [{"hand": hand} for _ in frames]
    xyz, centres, info = [], [], []
    for i, f in enumerate(frames):
        centre = f.camera.uvd_to_xyz((out["right"][1][i] + out["left"][1][i]) / 2)  # one cloud scores both
        fit = {k: skeleton_fit(f, out[k][0][i], centre, cube) for k in ("right", "left")}
        pick = min(fit, key=fit.get)
        f.no_hand = seen[pick][i].no_hand
        xyz.append(out[pick][0][i])
        centres.append(out[pick][1][i])
        info.append({"hand": pick, "hand_fit_mm": {k: round(v, 2) for k, v in fit.items()}})
    return np.stack(xyz), np.stack(centres), info


def _overlay(path: Path, depth: np.ndarray, uvd: np.ndarray, centre_uvd: np.ndarray | None = None,
             note: str = "") -> None:
    """The skeleton drawn on the depth frame, each finger in its colour, with a legend, the frame's name and the
    crop centre used; one PNG per frame."""
    from hpe.plots import draw_hand, plt
    fig, ax = plt.subplots(figsize=(6.3, 4.9), layout="constrained")
    shown = np.where(valid_depth(depth), depth, np.nan)
    lo, hi = (np.nanmin(shown), np.nanmax(shown)) if np.isfinite(shown).any() else (0.0, 1.0)
    # near = light grey (not white), far = dark, no reading = black: every finger colour stands out on the hand
    ax.set_facecolor("black")
    im = ax.imshow(shown, cmap="Greys", vmin=lo - 0.35 * (hi - lo), vmax=hi)
    fig.colorbar(im, ax=ax, fraction=0.035, pad=0.01, label="depth / mm")
    draw_hand(ax, uvd)
    if centre_uvd is not None:
        ax.plot(*centre_uvd[:2], "+", color="cyan", ms=9, mew=1.5,
                label=f"crop centre ({centre_uvd[0]:.0f}, {centre_uvd[1]:.0f}, {centre_uvd[2]:.0f} mm)")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.85, markerscale=1.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(path.stem.removesuffix("-pose") + (f" ({note})" if note else ""), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


def predict(run_dir: Path, inputs: list[str], out: Path, centre: str = "refined", rgb: list[str] | None = None,
            camera: str | None = None, depth_scale: float = 1.0, cube: float | None = None, batch_size: int = 64,
            device: str = "auto", overlay: bool = False, refine_steps: int = 3, progress: bool = True,
            centre_runs: Sequence[Path] = (), allow_unfinished: bool = False, hand: str = "right") -> list[dict]:
    """Predict every frame of ``inputs``; writes ``predictions_uvd.txt``, ``predictions.json`` (and overlays),
    replacing a previous prediction in ``out`` as a whole.  ``centre_runs``: runs trained with target = centre
    that refine the centre, coarse to fine (else the pose net's palm).  ``hand``: right, left (mirrored, see
    :func:`predict_hands`) or auto (decided per frame and recorded in ``predictions.json``).  Each record says
    whether its crop holds a hand-like object (``hand_like``; ``no_hand`` says why not) and carries the runs'
    ``warnings`` when one of them is unfinished (``allow_unfinished``)."""
    from hpe.train import pick_device
    if hand not in HANDS:
        raise ValueError(f"--hand {hand}: choose {', '.join(HANDS)}")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: must be at least 1 (frames per batch)")
    if refine_steps < 0:
        raise ValueError(f"--refine-steps {refine_steps}: must be 0 or more (crops per centre-net stage)")
    check_cube(cube)
    cam = parse_camera(camera)
    if not (depth_scale > 0 and math.isfinite(depth_scale)):
        raise ValueError(f"--depth-scale {depth_scale}: must be a positive number (mm per stored unit)")
    dev = pick_device(device)
    run = load_run(run_dir, dev, allow_unfinished=allow_unfinished)
    if run.cfg.target != "pose":
        raise DataError(f"{run_dir} regresses the hand centre only (target = centre): give it as --centre-run, "
                        f"and a pose run as --run")
    refiners = [load_run(r, dev, "--centre-run", allow_unfinished, target="centre") for r in centre_runs]
    fixed = None
    if centre not in CENTRES:
        try:
            fixed = np.array([float(t) for t in centre.split(",")])
            assert fixed.shape == (3,)
        except (ValueError, AssertionError):
            raise ValueError(f"--centre {centre}: choose {', '.join(CENTRES)} or give U,V,D (pixels, mm)") from None
    files = expand_inputs(inputs)
    needs_rgb = run.cfg.inputs != "depth"
    if needs_rgb and not rgb:
        raise DataError(f"{run_dir} is a net on '{run.cfg.inputs}': give the registered colour frames with --rgb")
    if rgb and not needs_rgb:
        raise DataError(f"--rgb: {run_dir} is a net on depth only (inputs = 'depth'), it would read no colour: leave "
                        f"--rgb out, or give a run on 'rgb' or 'depth+rgb'")
    rgb_files = pair_rgb(files, rgb) if needs_rgb else [None] * len(files)
    cube = cube or float(run.preprocess["cube_mm"])
    warnings = [w for w in [run.info.warning] + [r.info.warning for r in refiners] if w]
    with replacing(Path(out), "predict") as stage:
        records = []
        bar = tqdm(total=len(files), desc="predict", unit="frame", disable=None if progress else True,
                   dynamic_ncols=True)
        names = overlay_names(files) if overlay else []
        for s in range(0, len(files), batch_size):
            frames = [_frame(path, rgb_path, depth_scale, cam, fixed)
                      for path, rgb_path in zip(files[s:s + batch_size], rgb_files[s:s + batch_size])]
            xyz, centres, hands = predict_hands(run, frames, hand, "fixed" if fixed is not None else centre, cube,
                                                dev, refine_steps, refiners)
            for f, j, c, h in zip(frames, xyz, centres, hands):
                records.append(_record(f, j, c, h, warnings))
                if overlay:
                    records[-1]["overlay"] = f"overlays/{names[len(records) - 1]}"
                    _overlay(stage / records[-1]["overlay"], f.depth, np.array(records[-1]["joints_uvd"]), c,
                             f"{h['hand']} hand")
            bar.update(len(frames))
        bar.close()
        write_joints_txt(stage / "predictions_uvd.txt", np.array([r["joints_uvd"] for r in records]))
        write_json(stage / "predictions.json", records)
        return records


def overlay_names(files: list[Path]) -> list[str]:
    """Each frame's overlay file name, one per frame: ``STEM-pose.png``; frames of the same name in different
    folders are told apart by their folders (``a__depth_1-pose.png``), a frame given twice by its position.  (All
    were ``STEM-pose.png``: the last of same-named frames overwrote the others' overlays.)"""
    stems = [f.stem for f in files]
    if len(set(stems)) == len(stems):
        return [f"{s}-pose.png" for s in stems]
    real = [Path(os.path.realpath(f)) for f in files]
    base = Path(os.path.commonpath([r.parent for r in real]))
    names = ["__".join(r.relative_to(base).with_suffix("").parts) for r in real]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1 or names.count(n) > 1:
            names[i] = f"{n}-{i + 1}"
    return [f"{n}-pose.png" for n in names]


def _frame(path: Path, rgb_path: Path | None, depth_scale: float, cam: Camera | None, fixed) -> Frame:
    depth = read_depth_frame(path, depth_scale)
    return Frame(path, depth, None if rgb_path is None else read_rgb_frame(rgb_path, depth.shape),
                 camera_for(depth, path, cam), None if fixed is None else fixed.copy())


def _record(f: Frame, joints_xyz: np.ndarray, centre_uvd: np.ndarray, hand: dict, warnings: list[str]) -> dict:
    """One frame of predictions.json: its joints, its centre, the hand used (right / left, and for auto both
    fits), whether its crop holds a hand-like object, the runs' warnings."""
    return {"file": str(f.path), "centre_uvd": centre_uvd.tolist(),
            "joints_uvd": f.camera.xyz_to_uvd(joints_xyz).tolist(), "joints_xyz": joints_xyz.tolist(), **hand,
            "hand_like": f.no_hand is None, **({"no_hand": f.no_hand} if f.no_hand else {}),
            **({"warnings": warnings} if warnings else {})}


# --- Python API ------------------------------------------------------------------------------------------------
class Predictor:
    """A trained run ready for numpy depth frames (what ``hpe predict`` does, without files)::

        predict = load_predictor("results/runs/.../depthnet-jitter", centre_runs=[coarse, fine])
        joints_xyz = predict(depth_mm)          # (H, W) float mm -> (14, 3) camera xyz in mm
        joints_xyz = predict(depth_batch_mm)    # (N, H, W)       -> (N, 14, 3)

    :meth:`predict` returns the same with the uvd joints, the crop centre and the hand used.  Frames are in
    millimetres (0 = no reading); ``camera`` (fx, fy, cx, cy) defaults to NYU's, which needs 640x480 frames."""

    def __init__(self, run: Path, centre_runs: Sequence[Path] = (), centre: str = "refined", hand: str = "right",
                 camera: Camera | None = None, cube: float | None = None, device: str = "auto",
                 refine_steps: int = 3):
        from hpe.train import pick_device
        if hand not in HANDS:
            raise ValueError(f"hand {hand!r}: choose {', '.join(HANDS)}")
        if centre not in CENTRES:
            raise ValueError(f"centre {centre!r}: choose {', '.join(CENTRES)} (a fixed centre: predict_frames)")
        self.device = pick_device(device)
        self.run = load_run(run, self.device)
        if self.run.cfg.target != "pose" or self.run.cfg.inputs != "depth":
            raise DataError(f"{run}: a Predictor needs a depth-only pose run (this one: target {self.run.cfg.target}, "
                            f"inputs {self.run.cfg.inputs})")
        self.centre_runs = [load_run(r, self.device) for r in centre_runs]
        self.centre, self.hand, self.camera, self.refine_steps = centre, hand, camera, refine_steps
        self.cube = float(cube or self.run.preprocess["cube_mm"])

    def predict(self, depth_mm: np.ndarray) -> dict:
        """``{"joints_xyz", "joints_uvd", "centre_uvd", "hand"}`` for one frame (H, W) or a batch (N, H, W)."""
        depth = np.asarray(depth_mm, dtype=np.float32)
        single = depth.ndim == 2
        if depth.ndim not in (2, 3):
            raise ValueError(f"depth_mm must be (H, W) or (N, H, W) millimetres, got shape {depth.shape}")
        depth = np.where(np.isfinite(depth), depth, 0)
        frames = []
        for i, d in enumerate(depth[None] if single else depth):
            name = Path(f"frame-{i}")
            if not valid_depth(d).any():
                raise DataError(f"{name}: no valid depth (all zero or outside 10-1500 mm): millimetres expected")
            frames.append(Frame(name, d, None, camera_for(d, name, self.camera)))
        xyz, centres, hands = predict_hands(self.run, frames, self.hand, self.centre, self.cube, self.device,
                                            self.refine_steps, self.centre_runs)
        uvd = np.stack([f.camera.xyz_to_uvd(j) for f, j in zip(frames, xyz)])
        out = {"joints_xyz": xyz, "joints_uvd": uvd, "centre_uvd": centres, "hand": [h["hand"] for h in hands]}
        return {k: v[0] for k, v in out.items()} if single else out

    def __call__(self, depth_mm: np.ndarray) -> np.ndarray:
        """Joints in camera xyz (mm): (14, 3) for an (H, W) frame, (N, 14, 3) for a batch."""
        return self.predict(depth_mm)["joints_xyz"]


def load_predictor(run: Path, centre_runs: Sequence[Path] = (), **options) -> Predictor:
    """A :class:`Predictor` for the run folder ``run`` (its best weights), refined by ``centre_runs`` (coarse to
    fine, as ``hpe predict --centre-run``; one path alone is taken as one run); ``options``: centre, hand, camera,
    cube, device, refine_steps."""
    if isinstance(centre_runs, (str, Path)):  # not a sequence of one-character run names
        centre_runs = [centre_runs]
    return Predictor(run, centre_runs, **options)
