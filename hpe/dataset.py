"""The prepared dataset (``hpe prep`` writes it, everything else reads it): schema, checks, fingerprint, loading.

One HDF5 file, groups ``train``, ``val`` and ``test``, each with the datasets of :data:`SCHEMA` (one row per
frame) and the file attributes of :data:`ATTRS`.  Depth stays float16 and RGB uint8 in memory (and on the GPU);
each batch is expanded to float32 only when it is used, so the whole NYU training set fits on one GPU.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from hpe import DataError
from hpe.crop import hand_mask

FORMAT_VERSION = 2
SPLITS = ("train", "val", "test")
# name: (per-frame shape given crop size S and joint count J, dtype, meaning)
SCHEMA = {
    "depth": (lambda S, J: (S, S), "float16", "normalised depth crop, eq. 4.6; background +1, hand in [-1, 1)"),
    "rgb": (lambda S, J: (3, S, S), "uint8", "RGB crop, same box, not masked"),
    "joints": (lambda S, J: (J, 3), "float32", "normalised joints, eqs. 4.7-4.9 (unclipped)"),
    "joints_xyz": (lambda S, J: (J, 3), "float32", "ground-truth joints, camera xyz in mm (y up)"),
    "joints_uvd": (lambda S, J: (J, 3), "float32", "ground-truth joints, pixels + mm"),
    "centre_xyz": (lambda S, J: (3,), "float64", "crop centre, xyz mm"),
    "centre_uvd": (lambda S, J: (3,), "float64", "crop centre, uvd"),
    "cube": (lambda S, J: (), "float32", "cube edge in mm"),
    "box": (lambda S, J: (4,), "int32", "crop box u0, v0, u1, v1 (end-exclusive) in the image"),
    "transform": (lambda S, J: (3, 3), "float32", "image (u, v, 1) -> crop (col, row, 1)"),
    "frame": (lambda S, J: (), "int32", "NYU frame number (1-based) in its folder"),
    "subject": (lambda S, J: (), "uint8", "subject id (test: 1 up to test_subject1_frames, else 2)"),
}
BYTES_PER_PIXEL = 5  # float16 depth + 3 x uint8 RGB
META = ("joints_xyz", "joints_uvd", "centre_xyz", "centre_uvd", "cube", "frame", "subject", "transform", "box")
ATTRS = ("format_version", "profile", "centre", "cube_mm", "cube_mm_subject2", "size", "val_method", "val_fraction",
         "val_seed", "source", "joint_indices", "joint_names", "test_subject1_frames", "camera", "rgb_mean", "rgb_std")
# Not required: paste, rgb_resize, centre_depth and rgb_stats (README "Profiles and divergences") are written since
# they were named; a file without them was made with their defaults, so it stays valid and keeps its fingerprint.


@dataclass
class PreparedInfo:
    path: Path
    attrs: dict
    sizes: dict  # split -> frames

    @property
    def profile(self) -> str:
        return str(self.attrs["profile"])

    @property
    def size(self) -> int:
        return int(self.attrs["size"])


def open_prepared(path: Path) -> PreparedInfo:
    """Check a prepared file's attributes, groups and datasets; one line names what is missing or wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing prepared dataset: {path} (run `hpe prep NYU_ROOT {path}` first)")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot read {path} as a prepared HDF5 file: {exc}") from None
    with h5:
        attrs = dict(h5.attrs)
        missing = [a for a in ATTRS if a not in attrs]
        if missing:
            raise DataError(f"{path} lacks the attribute(s) {', '.join(missing)}: not a file of this hpe version; "
                            f"prepare it again with `hpe prep`")
        if int(attrs["format_version"]) != FORMAT_VERSION:
            raise DataError(f"{path} has format version {attrs['format_version']}, this hpe reads "
                            f"{FORMAT_VERSION}: prepare it again with `hpe prep`")
        sizes = {}
        for split in SPLITS:
            if split not in h5:
                raise DataError(f"{path} lacks the group '{split}' (has: {', '.join(h5.keys())})")
            g = h5[split]
            gone = [n for n in SCHEMA if n not in g]
            if gone:
                raise DataError(f"{path} lacks the dataset(s) {', '.join(f'{split}/{n}' for n in gone)}")
            lengths = {n: g[n].shape[0] for n in SCHEMA}
            if len(set(lengths.values())) != 1:
                raise DataError(f"{path}: the datasets of '{split}' have different lengths {lengths}")
            sizes[split] = lengths["depth"]
    return PreparedInfo(path, attrs, sizes)


def fingerprint(info: PreparedInfo) -> str:
    """A cheap identity of a prepared file's content: its attributes, split sizes and a hash of every split's
    joints and frame numbers.  Equal fingerprints mean the same data, whatever the file is called."""
    h = hashlib.sha256()
    for k in sorted(info.attrs):
        if k != "source":  # where it was prepared from, not what it holds
            h.update(f"{k}={np.asarray(info.attrs[k]).tolist()!r};".encode())
    with h5py.File(info.path, "r") as h5:
        for split in SPLITS:
            h.update(f"{split}:{info.sizes[split]};".encode())
            for name in ("joints", "frame"):
                h.update(np.ascontiguousarray(h5[split][name][:]).tobytes())
    return h.hexdigest()[:16]


@dataclass
class SplitData:
    depth: torch.Tensor                 # (N, 1, S, S) float16, normalised, background +1
    rgb: torch.Tensor | None            # (N, 3, S, S) uint8 or None
    joints: torch.Tensor                # (N, J, 3) float32 normalised targets
    meta: dict = field(default_factory=dict)  # numpy arrays, see META

    def __len__(self) -> int:
        return self.depth.shape[0]

    def to(self, device) -> "SplitData":
        return SplitData(self.depth.to(device), None if self.rgb is None else self.rgb.to(device),
                         self.joints.to(device), self.meta)


def resize_crops(depth16: torch.Tensor, rgb8: torch.Tensor | None,
                 size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crops at the network's input size: nearest neighbour for depth, area averaging for RGB.  Training and
    ``hpe predict`` both call this, so a frame gives the same input either way."""
    if depth16.shape[-1] == size:
        return depth16, rgb8
    depth16 = F.interpolate(depth16.float(), size=(size, size), mode="nearest").half()
    if rgb8 is not None:
        rgb8 = F.interpolate(rgb8.float(), size=(size, size), mode="area").round().to(torch.uint8)
    return depth16, rgb8


# Frames read, checked and resized at a time: the only copy in a wider dtype that loading ever holds (under
# 0.1 GB for 256 RGB-D crops at 128x128 in float32), whatever the split's size.
LOAD_CHUNK = 256


def load_split(path: Path, split: str, need_rgb: bool, input_size: int, clip_joints: bool = False,
               limit: int | None = None, joints: list[int] | None = None, chunk: int = LOAD_CHUNK) -> SplitData:
    """Read one split (train, val, test) into CPU tensors at ``input_size``, optionally only some ``joints`` (their
    indices among the stored ones); refuses an empty split or one holding NaN/inf.

    The outputs are allocated once at their final size and dtype and filled ``chunk`` frames at a time, so the
    peak is the compact split plus one chunk's temporaries (a whole-split float32 copy would be 2-5x the split)."""
    path = Path(path)
    info = open_prepared(path)
    n = info.sizes[split] if limit is None else min(limit, info.sizes[split])
    if n == 0:
        raise DataError(f"{path}: split '{split}' has no frames; prepare more data (or a larger --limit)")
    bad = DataError(f"{path}: split '{split}' holds NaN/inf values")
    depth = torch.empty((n, 1, input_size, input_size), dtype=torch.float16)
    rgb = torch.empty((n, 3, input_size, input_size), dtype=torch.uint8) if need_rgb else None
    with h5py.File(path, "r") as h5:
        g = h5[split]
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            d = torch.from_numpy(g["depth"][lo:hi]).unsqueeze(1)
            if not torch.isfinite(d).all():
                raise bad
            d, r = resize_crops(d, torch.from_numpy(g["rgb"][lo:hi]) if need_rgb else None, input_size)
            depth[lo:hi] = d
            if need_rgb:
                rgb[lo:hi] = r
        pick = slice(None) if joints is None else list(joints)
        joints = g["joints"][:n][:, pick].astype(np.float32)
        meta = {k: g[k][:n][:, pick] if k in ("joints_xyz", "joints_uvd") else g[k][:n] for k in META}
    if not np.isfinite(joints).all():
        raise bad
    if clip_joints:
        joints = np.clip(joints, -1, 1)
    return SplitData(depth, rgb, torch.from_numpy(joints), meta)


def rgb_channels(rgb_mode: str) -> int:
    """thesis: masked, standardised RGB (3); icip2018: RGB in [0, 1] plus the hand mask (4)."""
    return 4 if rgb_mode == "unit+mask" else 3


def input_channels(inputs: str, rgb_mode: str) -> int:
    """Channels of a single-stream net's input."""
    return {"depth": 1, "rgb": rgb_channels(rgb_mode), "rgbd": rgb_channels(rgb_mode) + 1}[inputs]


class InputAssembler:
    """Turns compact batches into the float inputs the nets expect (eqs. 4.10-4.12 for thesis RGB)."""

    def __init__(self, inputs: str, rgb_mode: str = "standardise", rgb_mask: str = "hand", rgb_mean=None,
                 rgb_std=None):
        self.inputs, self.rgb_mode, self.rgb_mask = inputs, rgb_mode, rgb_mask
        mean = np.asarray(rgb_mean if rgb_mean is not None else [0.0, 0.0, 0.0], np.float32)
        std = np.asarray(rgb_std if rgb_std is not None else [1.0, 1.0, 1.0], np.float32)
        self.mean = torch.from_numpy(mean).view(1, 3, 1, 1)
        self.std = torch.from_numpy(std).view(1, 3, 1, 1)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def needs_rgb(self) -> bool:
        return self.inputs != "depth"

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Copied to the device once: a host-to-device copy per batch would synchronise the GPU every step.
        if device not in self._on_device:
            self._on_device[device] = (self.mean.to(device), self.std.to(device))
        return self._on_device[device]

    def rgb(self, depth: torch.Tensor, rgb8: torch.Tensor) -> torch.Tensor:
        mask = hand_mask(depth, self.rgb_mask).to(torch.float32)
        if self.rgb_mode == "unit+mask":  # the author's code: unmasked RGB in [0, 1], the mask as a 4th channel
            return torch.cat([rgb8.to(torch.float32) / 255.0, mask], dim=1)
        mean, std = self._stats(depth.device)
        # eqs. 4.10 (R), 4.11 (G), 4.12 (B): (c - mu_c) / sigma_c of the masked crop, per channel
        return (rgb8.to(torch.float32) * mask - mean) / std

    def __call__(self, depth16: torch.Tensor, rgb8: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        depth = depth16.to(torch.float32)
        if self.inputs == "depth":
            return (depth,)
        if rgb8 is None:
            raise DataError(f"inputs '{self.inputs}' need the RGB crops, but none were given")
        if self.inputs == "depth+rgb":
            return depth, self.rgb(depth, rgb8)
        if self.inputs == "rgb":
            return (self.rgb(depth, rgb8),)
        return (torch.cat([self.rgb(depth, rgb8), depth], dim=1),)


def test_ground_truth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uvd, xyz, subject) of a prepared file's test split, for scoring runs trained on it."""
    info = open_prepared(path)
    with h5py.File(info.path, "r") as h5:
        g = h5["test"]
        return g["joints_uvd"][:].astype(np.float64), g["joints_xyz"][:].astype(np.float64), g["subject"][:]
