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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hpe import DataError
from hpe.atomic import atomic_path, write_json
from hpe.camera import NYU_CAMERA, Camera
from hpe.crop import CropRules, crop_frame, find_centre, valid_depth
from hpe.dataset import InputAssembler, resize_crops
from hpe.export import TrainedRun, load_run
from hpe.nyu import decode_depth, write_joints_txt

CENTRES = ("segment", "com", "refined")
IMAGE_SUFFIXES = (".png", ".npy")


def expand_inputs(items: list[str], what: str = "depth") -> list[Path]:
    """Files, folders (their .png/.npy files) and globs, each group in sorted order; none found is an error."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
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
                    mm = decode_depth(np.asarray(im)).astype(np.float64) * depth_scale
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
    if fx <= 0 or fy <= 0:
        raise ValueError(f"--camera {text}: focal lengths must be positive")
    return Camera(fx=fx, fy=fy, cx=cx, cy=cy)


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
                raise DataError(f"{f.path}: no object found to centre the crop on (empty or too far: depth must lie "
                                f"in 10-1500 mm); give --centre U,V,D") from None
    if centre == "refined":
        scale = cube / float(run.preprocess["cube_mm"])
        for refiner in coarse_to_fine(centre_runs) or [run]:
            refine_centres(refiner, frames, device, refine_steps, scale)
    norm, crops = _run_net(run, _assembler(run), frames, device, cube)
    xyz = norm * cube / 2 + np.stack([c["centre_xyz"] for c in crops])[:, None, :]  # inverse eqs. 4.7, 4.8, 4.9
    return xyz, np.stack([f.centre_uvd for f in frames])


def _overlay(path: Path, depth: np.ndarray, uvd: np.ndarray) -> None:
    """The skeleton drawn on the depth frame, one PNG per frame."""
    from hpe.plots import draw_skeleton, plt
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.imshow(np.where(valid_depth(depth), depth, np.nan), cmap="viridis")
    draw_skeleton(ax, uvd, "red", lw=1.5)
    ax.set_axis_off()
    ax.set_title(path.stem.removesuffix("-pose"), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


def predict(run_dir: Path, inputs: list[str], out: Path, centre: str = "refined", rgb: list[str] | None = None,
            camera: str | None = None, depth_scale: float = 1.0, cube: float | None = None, batch_size: int = 64,
            device: str = "auto", overlay: bool = False, refine_steps: int = 3, progress: bool = True,
            centre_runs: Sequence[Path] = ()) -> list[dict]:
    """Predict every frame of ``inputs``; writes ``predictions_uvd.txt``, ``predictions.json`` (and overlays).
    ``centre_runs``: runs trained with target = centre that refine the centre, coarse to fine (else the pose net's
    palm)."""
    from hpe.train import pick_device
    if batch_size < 1 or refine_steps < 0:
        raise ValueError(f"--batch-size {batch_size} must be >= 1 and --refine-steps {refine_steps} >= 0")
    dev = pick_device(device)
    run = load_run(run_dir, dev)
    if run.cfg.target != "pose":
        raise DataError(f"{run_dir} regresses the hand centre only (target = centre): give it as --centre-run, "
                        f"and a pose run as --run")
    refiners = [load_run(r, dev) for r in centre_runs]
    fixed = None
    if centre not in CENTRES:
        try:
            fixed = np.array([float(t) for t in centre.split(",")])
            assert fixed.shape == (3,)
        except (ValueError, AssertionError):
            raise ValueError(f"--centre {centre}: choose {', '.join(CENTRES)} or give U,V,D (pixels, mm)") from None
    if not depth_scale > 0:
        raise ValueError(f"--depth-scale {depth_scale}: must be positive")
    files = expand_inputs(inputs)
    needs_rgb = run.cfg.inputs != "depth"
    if needs_rgb and not rgb:
        raise DataError(f"{run_dir} is a net on '{run.cfg.inputs}': give the registered colour frames with --rgb")
    rgb_files = pair_rgb(files, rgb) if needs_rgb else [None] * len(files)
    cam, cube = parse_camera(camera), cube or float(run.preprocess["cube_mm"])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder for the predictions")
    out.mkdir(parents=True, exist_ok=True)
    records, uvds = [], []
    bar = tqdm(total=len(files), desc="predict", unit="frame", disable=None if progress else True, dynamic_ncols=True)
    for s in range(0, len(files), batch_size):
        frames = []
        for path, rgb_path in zip(files[s:s + batch_size], rgb_files[s:s + batch_size]):
            depth = read_depth_frame(path, depth_scale)
            frames.append(Frame(path, depth, None if rgb_path is None else read_rgb_frame(rgb_path, depth.shape),
                                camera_for(depth, path, cam), None if fixed is None else fixed.copy()))
        xyz, centres = predict_frames(run, frames, "fixed" if fixed is not None else centre, cube, dev, refine_steps,
                                      refiners)
        for f, j, c in zip(frames, xyz, centres):
            uvd = f.camera.xyz_to_uvd(j)
            uvds.append(uvd)
            records.append({"file": str(f.path), "centre_uvd": c.tolist(), "joints_uvd": uvd.tolist(),
                            "joints_xyz": j.tolist()})
            if overlay:
                _overlay(out / "overlays" / f"{f.path.stem}-pose.png", f.depth, uvd)
        bar.update(len(frames))
    bar.close()
    write_joints_txt(out / "predictions_uvd.txt", np.stack(uvds))
    write_json(out / "predictions.json", records)
    return records
