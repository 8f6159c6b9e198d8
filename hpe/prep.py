"""``hpe prep NYU_ROOT OUT.h5``: crop and normalise every frame of an NYU-layout dataset into one HDF5 file.

Frames stream through a process pool in chunks (bounded memory whatever the dataset size), results are
written into preallocated datasets, and the file only replaces ``OUT.h5`` once it is complete.  The output is
checked (writable, enough disk) before any work starts.  Schema: README.rst ("HDF5 schema") and
:data:`hpe.dataset.SCHEMA`.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from hpe import DataError
from hpe.atomic import atomic_h5, ensure_space
from hpe.output import check_writable
from hpe.camera import NYU_CAMERA, NYU_HEIGHT, NYU_WIDTH
from hpe.config import merge, profile_section
from hpe.crop import CUBE_MM_RANGE, CropRules, crop_box, crop_frame, find_centre, hand_mask, normalise_joints
from hpe.dataset import BYTES_PER_PIXEL, FORMAT_VERSION, SCHEMA
from hpe.nyu import (
    DEPTH_MAX_MM,
    DEPTH_MIN_MM,
    EVAL_JOINTS,
    EVAL_NAMES,
    PALM_JOINT,
    NYUSplit,
    read_depth,
    read_rgb,
    subjects_of,
)
from hpe.progress import progress as progress_bar
from hpe.synthetic import subject1_frames
from hpe.workers import worker_pool

log = logging.getLogger("hpe.prep")


def _r(default, lo=None, lo_open=False, hi=None, hi_open=False):
    return field(default=default, metadata={"lo": lo, "lo_open": lo_open, "hi": hi, "hi_open": hi_open})


@dataclass(frozen=True)
class PrepConfig:
    """How ``hpe prep`` crops a dataset.  Layers: these defaults < the profile's [prep] < command-line options."""

    profile: Literal["thesis", "icip2018"] = "thesis"
    centre: Literal["palm", "com", "segment"] = "palm"
    cube_mm: float = _r(300.0, lo=CUBE_MM_RANGE[0], hi=CUBE_MM_RANGE[1])
    cube_mm_subject2: float = _r(300.0, lo=CUBE_MM_RANGE[0], hi=CUBE_MM_RANGE[1])
    size: int = _r(128, lo=8, hi=1024)
    val_method: Literal["uniform", "train_test_split"] = "uniform"
    val_fraction: float = _r(0.25, lo=0, hi=1, hi_open=True)
    val_seed: int = _r(0, lo=0)
    joints: Literal["eval", "all"] = "eval"     # the 14 evaluation joints, or all 36
    limit: int | None = _r(None, lo=1)          # first N frames per split (quick runs)
    skip_bad: bool = False
    workers: int = _r(max(1, os.cpu_count() or 1), lo=1)
    xyz_tolerance_mm: float = _r(1.0, lo=0, lo_open=True)
    chunk: int = _r(32, lo=1)
    # Readings (README "Profiles and divergences"; hpe.crop.CropRules): the thesis profile's are the defaults.
    paste: Literal["round", "floor"] = "round"
    rgb_resize: Literal["pil", "opencv"] = "pil"
    centre_depth: Literal["label", "image"] = "label"   # z_c of eqs. 4.6 and 4.9: the label's d, or I(c_m)
    rgb_stats: Literal["masked-crop", "hand-pixels"] = "masked-crop"  # what mu_c, sigma_c (eqs. 4.10-4.12) cover

    @property
    def rules(self) -> CropRules:
        return CropRules(self.paste, self.rgb_resize, self.centre_depth)


def prep_config(profile: str = "thesis", **options) -> PrepConfig:
    """The profile's [prep] values under the given options (None = not given), validated."""
    given = {k: v for k, v in options.items() if v is not None}
    return merge(PrepConfig, [(f"profile {profile}", {"profile": profile, **profile_section(profile, "prep")}),
                              ("command line", given)])


def validation_mask(n: int, method: str, fraction: float, seed: int) -> np.ndarray:
    """Which of ``n`` training frames (in frame order) validate.

    ``uniform`` (thesis 4.4.3): a seeded uniform sample of round(fraction * n) frames.
    ``train_test_split`` (the author's code): sklearn's ``train_test_split(range(n), random_state=seed,
    test_size=fraction)`` validating on its second part, i.e. the first ceil(fraction * n) entries of numpy's
    ``RandomState(seed).permutation(n)``, which is what sklearn draws (no sklearn needed)."""
    mask = np.zeros(n, bool)
    if method == "uniform":
        mask[np.random.default_rng(seed).permutation(n)[:int(round(fraction * n))]] = True
    else:
        mask[np.random.RandomState(seed).permutation(n)[:int(np.ceil(fraction * n))]] = True
    return mask


# --- worker side ----------------------------------------------------------------------------------------
_W: dict = {}


def _init_worker(cfg: PrepConfig, joint_idx: tuple[int, ...]) -> None:
    _W["cfg"], _W["idx"] = cfg, np.asarray(joint_idx)


def process_frame(depth_file: Path, rgb_file: Path, frame: int, subject: int, uvd36: np.ndarray,
                  xyz36: np.ndarray, cube: float, cfg: PrepConfig, joint_idx: np.ndarray) -> dict:
    """Crop one frame; raises DataError naming the file and frame."""
    # Centred on the palm label with its own depth, the crop's box is known before the frame is read: only the
    # box's pixels are converted (the crop reads no other; tests/test_prep.py checks the file is the same).
    palm = uvd36[PALM_JOINT]
    box = None
    if (cfg.centre == "palm" and cfg.centre_depth == "label" and DEPTH_MIN_MM <= palm[2] <= DEPTH_MAX_MM + cube
            and 0 <= palm[0] < NYU_WIDTH and 0 <= palm[1] < NYU_HEIGHT):  # else the crop's own refusal, as before
        box = crop_box(palm, cube)
    depth = read_depth(depth_file, frame, box=box)
    rgb = read_rgb(rgb_file, frame, box=box)
    try:
        centre_uvd = find_centre(depth, cfg.centre, cube, palm)
        row = crop_frame(depth, rgb, centre_uvd, cube, cfg.size, rules=cfg.rules)
    except DataError as exc:
        raise DataError(f"{depth_file} (frame {frame}): {exc}") from None
    xyz = xyz36[joint_idx]
    row.update(joints=normalise_joints(xyz, row["centre_xyz"], cube).astype(np.float32),
               joints_xyz=xyz.astype(np.float32), joints_uvd=uvd36[joint_idx].astype(np.float32),
               frame=np.int32(frame), subject=np.uint8(subject))
    return row


def _work(task):
    """Process a chunk of frames into stacked arrays (one HDF5 write per dataset and chunk in the parent),
    with each frame's masked-RGB sums for the statistics of eqs. 4.10, 4.11 and 4.12; errors come back as values
    so the parent decides (stop or skip)."""
    good, errors = [], []
    for args in task:
        try:
            good.append(process_frame(*args, cfg=_W["cfg"], joint_idx=_W["idx"]))
        except DataError as exc:
            errors.append(exc)
    if not good:
        return None, errors
    batch = {name: np.stack([r[name] for r in good]) for name in SCHEMA}
    mask = hand_mask(batch["depth"].astype(np.float32))
    # Sums of the masked values and their squares from a histogram of each frame's hand pixels per channel: the
    # same integers as summing the float64 products (exact below 2**53), a twentieth of the time (numpy's
    # integer-accumulating sums were a tenth of prep's CPU).
    hist = np.array([[np.bincount(channel[m], minlength=256) for channel in rgb]
                     for rgb, m in zip(batch["rgb"], mask)], np.float64)
    levels = np.arange(256.0)
    batch["rgb_sum"], batch["rgb_sq"] = hist @ levels, hist @ levels ** 2
    batch["rgb_hand"] = mask.sum(axis=(1, 2))
    return batch, errors


# --- parent side ----------------------------------------------------------------------------------------
def _create(group: h5py.Group, n: int, size: int, n_joints: int) -> None:
    for name, (shape, dtype, doc) in SCHEMA.items():
        s = shape(size, n_joints)
        ds = group.create_dataset(name, shape=(n,) + s, maxshape=(None,) + s, dtype=dtype,
                                  chunks=(min(max(n, 1), 64),) + s)
        ds.attrs["doc"] = doc


class _RgbStats:
    """Per-channel mean and std over the masked training crops (the mu_c, sigma_c of eqs. 4.10, 4.11, 4.12):
    ``masked-crop`` counts every pixel of the mask-multiplied crops, the zeroed background included (the crop the
    equations are applied to); ``hand-pixels`` only the hand's pixels (the colour of the hand itself)."""

    def __init__(self, size: int, reading: str = "masked-crop"):
        self.sum, self.sq, self.n, self.pixels, self.reading = np.zeros(3), np.zeros(3), 0, size * size, reading

    def add(self, batch: dict, rows: np.ndarray) -> None:
        self.sum += batch["rgb_sum"][rows].sum(axis=0)
        self.sq += batch["rgb_sq"][rows].sum(axis=0)
        self.n += (int(batch["rgb_hand"][rows].sum()) if self.reading == "hand-pixels"
                   else int(rows.sum()) * self.pixels)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.sum / self.n
        return mean, np.sqrt(np.maximum(self.sq / self.n - mean ** 2, 1e-12))


def _split_tasks(split: NYUSplit, cfg: PrepConfig, split_s1: int) -> list[tuple]:
    n = len(split) if cfg.limit is None else min(cfg.limit, len(split))
    frames = np.arange(1, n + 1)
    subjects = subjects_of(frames, split_s1 if split.split == "test" else n)
    return [(split.depth_path(f), split.rgb_path(f), f, int(subj), split.joints.uvd[f - 1], split.joints.xyz[f - 1],
             cfg.cube_mm_subject2 if subj == 2 else cfg.cube_mm) for f, subj in zip(frames, subjects)]


def _fill_split(h5: h5py.File, pool, tasks: list[tuple], targets: dict[str, int], is_val: np.ndarray,
                cfg: PrepConfig, stats: dict, rgb: _RgbStats, desc: str, progress: bool) -> None:
    """Stream one folder's frames through the pool into the groups of ``targets``, then trim them."""
    filled = dict.fromkeys(targets, 0)
    datasets = {g: {name: h5[g][name] for name in SCHEMA} for g in targets}  # looked up once: h5py's lookups are slow
    chunks = iter([tasks[i:i + cfg.chunk] for i in range(0, len(tasks), cfg.chunk)])
    bar = progress_bar(len(tasks), desc, "frame", progress)
    # A sliding window of outstanding chunks keeps memory bounded even if writing falls behind.
    window: deque = deque(pool.apply_async(_work, (c,)) for _, c in zip(range(3 * cfg.workers), chunks))
    while window:
        batch, errors = window.popleft().get()
        nxt = next(chunks, None)
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
                m, k = int(rows.sum()), filled[g]
                if m:
                    part = {name: batch[name] if m == len(rows) else batch[name][rows] for name in SCHEMA}
                    ensure_space(h5.filename, sum(a.nbytes for a in part.values()))
                    for name, ds in datasets[g].items():
                        ds[k:k + m] = part[name]
                    filled[g] = k + m
                    if g == "train":
                        rgb.add(batch, rows)
        bar.update(len(errors) + (0 if batch is None else len(batch["frame"])))
    bar.close()
    for g, k in filled.items():
        for ds in datasets[g].values():
            ds.resize(k, axis=0)
        stats[f"{g}_frames"] = k
        stats["frames"] += k


def _attrs(cfg: PrepConfig, root: Path, joint_idx: tuple[int, ...], split_s1: int) -> dict:
    return {"format_version": FORMAT_VERSION, "profile": cfg.profile, "centre": cfg.centre, "cube_mm": cfg.cube_mm,
            "cube_mm_subject2": cfg.cube_mm_subject2, "size": cfg.size, "val_method": cfg.val_method,
            "val_fraction": cfg.val_fraction, "val_seed": cfg.val_seed, "source": str(root.resolve()),
            "joint_indices": np.asarray(joint_idx), "test_subject1_frames": split_s1,
            "camera": np.array([NYU_CAMERA.fx, NYU_CAMERA.fy, NYU_CAMERA.cx, NYU_CAMERA.cy]),
            "joint_names": np.array(EVAL_NAMES if cfg.joints == "eval" else [f"J{i}" for i in joint_idx],
                                    dtype=h5py.string_dtype()),
            "paste": cfg.paste, "rgb_resize": cfg.rgb_resize, "centre_depth": cfg.centre_depth,
            "rgb_stats": cfg.rgb_stats}


def prep(root: Path, out: Path, config: PrepConfig | None = None, progress: bool = True) -> dict:
    """Crop every frame of ``root`` (train and test) into ``out``; returns counts and throughput."""
    cfg = config or prep_config()
    root, out = Path(root), Path(out)
    joint_idx = EVAL_JOINTS if cfg.joints == "eval" else tuple(range(36))
    split_s1 = subject1_frames(root)
    splits = {s: NYUSplit(root, s, xyz_tolerance_mm=cfg.xyz_tolerance_mm) for s in ("train", "test")}
    tasks = {s: _split_tasks(split, cfg, split_s1) for s, split in splits.items()}
    n_frames = sum(len(t) for t in tasks.values())
    check_writable(out, need_bytes=int(1.1 * n_frames * (BYTES_PER_PIXEL * cfg.size ** 2 + 400)))
    stats = {"frames": 0, "skipped": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    rgb = _RgbStats(cfg.size, cfg.rgb_stats)
    with atomic_h5(out) as h5:
        with worker_pool(cfg.workers, _init_worker, (cfg, joint_idx)) as pool:
            h5.attrs.update(_attrs(cfg, root, joint_idx, split_s1))
            for name, split_tasks in tasks.items():
                if name == "train":
                    is_val = validation_mask(len(split_tasks), cfg.val_method, cfg.val_fraction, cfg.val_seed)
                    targets = {"train": int((~is_val).sum()), "val": int(is_val.sum())}
                else:
                    is_val, targets = np.zeros(len(split_tasks), bool), {"test": len(split_tasks)}
                for g, cnt in targets.items():
                    _create(h5.create_group(g), cnt, cfg.size, len(joint_idx))
                _fill_split(h5, pool, split_tasks, targets, is_val, cfg, stats, rgb, f"prep {name}", progress)
            pool.close()  # workers exit on their own (the with-block terminates them: coverage.py loses their data)
            pool.join()
            if rgb.n == 0:
                raise DataError(f"no training frame survived in {root}: cannot compute RGB statistics")
            h5.attrs["rgb_mean"], h5.attrs["rgb_std"] = rgb.result()
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["frames_per_s"] = round(stats["frames"] / max(stats["seconds"], 1e-9), 1)
    return stats
