"""``hpe prep NYU_ROOT OUT.h5``: crop and normalise every frame of an NYU-layout dataset into one HDF5 file.

Frames stream through a process pool in chunks (bounded memory whatever the dataset size), results are
written into preallocated datasets, and the file only replaces ``OUT.h5`` once it is complete.  Schema:
see README.rst ("HDF5 schema") and :data:`SCHEMA`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.crop import CENTRES, crop_hand, find_centre, hand_mask, normalise_joints
from hpe.nyu import EVAL_JOINTS, EVAL_NAMES, PALM_JOINT, TEST_SUBJECT1_FRAMES, NYUSplit, read_depth, read_rgb
from hpe.profiles import get_profile

log = logging.getLogger("hpe.prep")
FORMAT_VERSION = 1
SYNTHETIC_SIDECAR = "hpe_synthetic.json"

# name: (per-frame shape given crop size S and joint count J, dtype, meaning)
SCHEMA = {
    "depth": (lambda S, J: (S, S), "float16", "normalised depth crop, eq. 4.6; background +1, hand in [-1, 1)"),
    "rgb": (lambda S, J: (3, S, S), "uint8", "RGB crop, same box, not masked (mask = depth < 1)"),
    "joints": (lambda S, J: (J, 3), "float32", "normalised joints, eqs. 4.7-4.9 (unclipped)"),
    "joints_xyz": (lambda S, J: (J, 3), "float32", "ground-truth joints, camera xyz in mm (y up)"),
    "joints_uvd": (lambda S, J: (J, 3), "float32", "ground-truth joints, pixels + mm"),
    "centre_xyz": (lambda S, J: (3,), "float64", "crop centre, xyz mm"),
    "centre_uvd": (lambda S, J: (3,), "float64", "crop centre, uvd"),
    "cube": (lambda S, J: (), "float32", "cube edge in mm"),
    "box": (lambda S, J: (4,), "int32", "crop box u0, v0, u1, v1 (end-exclusive) in the 640x480 image"),
    "transform": (lambda S, J: (3, 3), "float32", "image (u, v, 1) -> crop (col, row, 1)"),
    "frame": (lambda S, J: (), "int32", "NYU frame number (1-based) in its folder"),
    "subject": (lambda S, J: (), "uint8", "subject id (test: 1 for frames 1-2440, else 2)"),
}


@dataclass
class PrepConfig:
    profile: str = "thesis"
    centre: str = "palm"
    cube_mm: float | None = None          # None: the profile's value
    cube_mm_subject2: float | None = None
    size: int = 128
    val_fraction: float = 0.25
    seed: int = 0
    joints: str = "eval"                  # "eval" (the 14 evaluation joints) or "all" (36)
    limit: int | None = None              # first N frames per split (quick runs)
    skip_bad: bool = False
    workers: int | None = None
    chunk: int = 32

    def resolved(self) -> "PrepConfig":
        p = get_profile(self.profile)
        if self.centre not in CENTRES:
            raise ValueError(f"unknown centre '{self.centre}' (choose from {', '.join(CENTRES)})")
        if self.joints not in ("eval", "all"):
            raise ValueError(f"joints must be 'eval' or 'all', got '{self.joints}'")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        return PrepConfig(**{**asdict(self),
                             "cube_mm": self.cube_mm or p.cube_mm,
                             "cube_mm_subject2": self.cube_mm_subject2 or p.cube_mm_subject2,
                             "workers": self.workers or os.cpu_count() or 1})


def subject1_frames(root: Path) -> int:
    """Where test subject 2 starts: NYU's 2440, or what a synthetic set's sidecar says."""
    side = Path(root) / SYNTHETIC_SIDECAR
    if side.is_file():
        return int(json.loads(side.read_text())["test_subject1_frames"])
    return TEST_SUBJECT1_FRAMES


# --- worker side ----------------------------------------------------------------------------------------
_W: dict = {}


def _init_worker(cfg: PrepConfig, joint_idx: tuple[int, ...]) -> None:
    _W["cfg"], _W["idx"] = cfg, np.asarray(joint_idx)


def process_frame(depth_file: Path, rgb_file: Path, frame: int, subject: int, uvd36: np.ndarray,
                  xyz36: np.ndarray, cube: float, cfg: PrepConfig, joint_idx: np.ndarray) -> dict:
    """Crop one frame; raises DataError naming the file and frame."""
    depth = read_depth(depth_file, frame)
    rgb = read_rgb(rgb_file, frame)
    try:
        centre_uvd = find_centre(depth, cfg.centre, cube, uvd36[PALM_JOINT])
        crop = crop_hand(depth, centre_uvd, cube, cfg.size, rgb)
    except DataError as exc:
        raise DataError(f"{depth_file} (frame {frame}): {exc}") from None
    if not hand_mask(crop.depth).any():
        raise DataError(f"{depth_file} (frame {frame}): no depth inside the {cube:.0f} mm cube around "
                        f"centre (u={centre_uvd[0]:.1f}, v={centre_uvd[1]:.1f}, d={centre_uvd[2]:.1f})")
    centre_xyz = NYU_CAMERA.uvd_to_xyz(centre_uvd)
    xyz = xyz36[joint_idx]
    return {"depth": crop.depth.astype(np.float16), "rgb": crop.rgb.transpose(2, 0, 1),
            "joints": normalise_joints(xyz, centre_xyz, cube).astype(np.float32),
            "joints_xyz": xyz.astype(np.float32), "joints_uvd": uvd36[joint_idx].astype(np.float32),
            "centre_xyz": centre_xyz, "centre_uvd": centre_uvd, "cube": np.float32(cube), "box": crop.box,
            "transform": crop.transform, "frame": np.int32(frame),
            "subject": np.uint8(subject)}


def _work(task):
    """Process a chunk of frames into stacked arrays (one HDF5 write per dataset and chunk in the parent),
    with each frame's masked-RGB sums for eqs. 4.10-4.12; errors come back as values so the parent decides
    (stop or skip)."""
    good, errors = [], []
    for args in task:
        try:
            good.append(process_frame(*args, cfg=_W["cfg"], joint_idx=_W["idx"]))
        except DataError as exc:
            errors.append(exc)
    if not good:
        return None, errors
    batch = {name: np.stack([r[name] for r in good]) for name in SCHEMA}
    masked = batch["rgb"].astype(np.float64) * hand_mask(batch["depth"].astype(np.float32))[:, None]
    batch["rgb_sum"] = masked.sum(axis=(2, 3))
    batch["rgb_sq"] = (masked ** 2).sum(axis=(2, 3))
    return batch, errors


# --- parent side ----------------------------------------------------------------------------------------
def _create(group: h5py.Group, n: int, size: int, n_joints: int) -> None:
    for name, (shape, dtype, doc) in SCHEMA.items():
        s = shape(size, n_joints)
        ds = group.create_dataset(name, shape=(n,) + s, maxshape=(None,) + s, dtype=dtype,
                                  chunks=(min(max(n, 1), 64),) + s)
        ds.attrs["doc"] = doc


def _val_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded uniform sample of round(fraction * n) training frames for validation (thesis 4.4.3)."""
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[:int(round(fraction * n))]] = True
    return mask


def prep(root: Path, out: Path, config: PrepConfig | None = None, progress: bool = True) -> dict:
    """Crop every frame of ``root`` (train and test) into ``out``; returns counts and throughput."""
    cfg = (config or PrepConfig()).resolved()
    root, out = Path(root), Path(out)
    prof = get_profile(cfg.profile)
    joint_idx = EVAL_JOINTS if cfg.joints == "eval" else tuple(range(36))
    split_s1 = subject1_frames(root)
    splits = {s: NYUSplit(root, s) for s in ("train", "test")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    stats = {"frames": 0, "skipped": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    ctx = get_context("fork") if hasattr(os, "fork") else get_context()
    try:
        with h5py.File(tmp, "w") as h5, ctx.Pool(cfg.workers, _init_worker, (cfg, joint_idx)) as pool:
            h5.attrs.update({
                "format_version": FORMAT_VERSION, "profile": cfg.profile, "centre": cfg.centre,
                "cube_mm": cfg.cube_mm, "cube_mm_subject2": cfg.cube_mm_subject2, "size": cfg.size,
                "seed": cfg.seed, "val_fraction": cfg.val_fraction, "source": str(root.resolve()),
                "joint_indices": np.asarray(joint_idx), "test_subject1_frames": split_s1,
                "camera": np.array([NYU_CAMERA.fx, NYU_CAMERA.fy, NYU_CAMERA.cx, NYU_CAMERA.cy]),
                "joint_names": np.array(EVAL_NAMES if cfg.joints == "eval" else
                                        [f"J{i}" for i in joint_idx], dtype=h5py.string_dtype())})
            rgb_sum, rgb_sq, rgb_n = np.zeros(3), np.zeros(3), 0
            for split_name, split in splits.items():
                n = len(split) if cfg.limit is None else min(cfg.limit, len(split))
                if split_name == "train":
                    is_val = _val_mask(n, cfg.val_fraction, cfg.seed)
                    targets = {"train": int((~is_val).sum()), "val": int(is_val.sum())}
                else:
                    is_val = np.zeros(n, bool)
                    targets = {"test": n}
                for g, cnt in targets.items():
                    _create(h5.create_group(g), cnt, cfg.size, len(joint_idx))
                filled = dict.fromkeys(targets, 0)
                tasks = []
                for i in range(n):
                    f = i + 1
                    subj = 2 if split_name == "test" and f > split_s1 else 1
                    cube = cfg.cube_mm_subject2 if subj == 2 else cfg.cube_mm
                    tasks.append((split.depth_path(f), split.rgb_path(f), f, subj, split.joints.uvd[i],
                                  split.joints.xyz[i], cube))
                chunks = [tasks[i:i + cfg.chunk] for i in range(0, n, cfg.chunk)]
                bar = tqdm(total=n, desc=f"prep {split_name}", unit="frame", disable=not progress,
                           dynamic_ncols=True, mininterval=0.5)
                window: deque = deque()
                it = iter(chunks)
                # A sliding window of outstanding chunks keeps memory bounded even if writing falls behind.
                for c in it:
                    window.append(pool.apply_async(_work, (c,)))
                    if len(window) >= 3 * cfg.workers:
                        break
                while window:
                    batch, errors = window.popleft().get()
                    nxt = next(it, None)
                    if nxt is not None:
                        window.append(pool.apply_async(_work, (nxt,)))
                    for exc in errors:
                        if not cfg.skip_bad:
                            raise exc
                        log.warning("skipping bad frame: %s", exc)
                        stats["skipped"] += 1
                    if batch is not None:
                        in_val = is_val[batch["frame"] - 1]
                        for g in targets:
                            rows = in_val if g == "val" else ~in_val
                            m = int(rows.sum())
                            if m == 0:
                                continue
                            k = filled[g]
                            for name in SCHEMA:
                                h5[g][name][k:k + m] = batch[name][rows]
                            filled[g] = k + m
                            if g == "train":  # eqs. 4.10-4.12 statistics: masked training crops only
                                rgb_sum += batch["rgb_sum"][rows].sum(axis=0)
                                rgb_sq += batch["rgb_sq"][rows].sum(axis=0)
                                rgb_n += m * cfg.size * cfg.size
                    bar.update(len(errors) + (0 if batch is None else len(batch["frame"])))
                bar.close()
                for g, k in filled.items():
                    for name in SCHEMA:
                        h5[g][name].resize(k, axis=0)
                    stats[f"{g}_frames"] = k
                    stats["frames"] += k
            if rgb_n == 0:
                raise DataError(f"no training frame survived in {root}: cannot compute RGB statistics")
            mean = rgb_sum / rgb_n
            h5.attrs["rgb_mean"] = mean
            h5.attrs["rgb_std"] = np.sqrt(np.maximum(rgb_sq / rgb_n - mean ** 2, 1e-12))
            h5.attrs["profile_rgb_mode"] = prof.rgb_mode
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["frames_per_s"] = round(stats["frames"] / max(stats["seconds"], 1e-9), 1)
    return stats
