"""Load a prepared HDF5 split into memory (compact dtypes) and assemble network inputs per batch.

Depth stays float16 and RGB uint8 in memory (and on the GPU); each batch is expanded to float32 only when it
is used, so the whole NYU training set (72,757 frames, ~6 GB) fits on one GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from hpe import DataError
from hpe.profiles import Profile

MODALITIES = ("depth", "rgb", "rgbd")
META = ("joints_xyz", "joints_uvd", "centre_xyz", "centre_uvd", "cube", "frame", "subject", "transform", "box")


def rgb_channels(profile: Profile) -> int:
    """thesis: masked, standardised RGB (3); icip2018: RGB in [0, 1] plus the hand mask (4)."""
    return 4 if profile.rgb_mode == "unit+mask" else 3


def input_channels(modality: str, profile: Profile) -> int:
    if modality not in MODALITIES:
        raise ValueError(f"unknown inputs '{modality}' (choose from {', '.join(MODALITIES)})")
    return {"depth": 1, "rgb": rgb_channels(profile), "rgbd": rgb_channels(profile) + 1}[modality]


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

    def subset(self, idx: np.ndarray) -> "SplitData":
        t = torch.as_tensor(idx, dtype=torch.long)
        return SplitData(self.depth[t], None if self.rgb is None else self.rgb[t], self.joints[t],
                         {k: v[idx] for k, v in self.meta.items()})


def h5_attrs(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing prepared dataset: {path} (run `hpe prep NYU_ROOT {path}` first)")
    try:
        with h5py.File(path, "r") as h5:
            return dict(h5.attrs)
    except OSError as exc:
        raise DataError(f"cannot read HDF5 file {path}: {exc}") from None


def load_split(path: Path, split: str, need_rgb: bool, input_size: int | None = None,
               clip_joints: bool = False, limit: int | None = None) -> SplitData:
    """Read one split (train, val, test) into CPU tensors; optionally resize the crops to ``input_size``."""
    path = Path(path)
    h5_attrs(path)
    with h5py.File(path, "r") as h5:
        if split not in h5:
            raise DataError(f"{path} has no split '{split}' (has: {', '.join(h5.keys())})")
        g = h5[split]
        n = g["depth"].shape[0] if limit is None else min(limit, g["depth"].shape[0])
        if n == 0:
            raise DataError(f"{path}: split '{split}' is empty")
        depth = torch.from_numpy(g["depth"][:n]).unsqueeze(1)
        rgb = torch.from_numpy(g["rgb"][:n]) if need_rgb else None
        joints = g["joints"][:n].astype(np.float32)
        meta = {k: g[k][:n] for k in META}
    if not np.isfinite(joints).all() or not torch.isfinite(depth.float()).all():
        raise DataError(f"{path}: split '{split}' holds NaN/inf values")
    if clip_joints:
        joints = np.clip(joints, -1, 1)
    if input_size is not None and input_size != depth.shape[-1]:
        depth = F.interpolate(depth.float(), size=(input_size, input_size), mode="nearest").half()
        if rgb is not None:
            rgb = F.interpolate(rgb.float(), size=(input_size, input_size), mode="area").round().to(torch.uint8)
    return SplitData(depth.contiguous(), rgb, torch.from_numpy(joints), meta)


class InputAssembler:
    """Turns compact batches into the float inputs a profile's nets expect (eqs. 4.10-4.12 for thesis RGB)."""

    def __init__(self, modality: str, profile: Profile, rgb_mean=None, rgb_std=None, two_streams: bool = False):
        input_channels(modality, profile)
        self.modality, self.profile, self.two_streams = modality, profile, two_streams
        mean = np.asarray(rgb_mean if rgb_mean is not None else [0.0, 0.0, 0.0], np.float32)
        std = np.asarray(rgb_std if rgb_std is not None else [1.0, 1.0, 1.0], np.float32)
        self.mean = torch.from_numpy(mean).view(1, 3, 1, 1)
        self.std = torch.from_numpy(std).view(1, 3, 1, 1)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Copied to the device once: a host-to-device copy per batch would synchronise the GPU every step.
        if device not in self._on_device:
            self._on_device[device] = (self.mean.to(device), self.std.to(device))
        return self._on_device[device]

    def rgb(self, depth: torch.Tensor, rgb8: torch.Tensor) -> torch.Tensor:
        mask = (depth < 1).to(torch.float32)
        if self.profile.rgb_mode == "unit+mask":
            return torch.cat([rgb8.to(torch.float32) / 255.0, mask], dim=1)
        mean, std = self._stats(depth.device)
        return (rgb8.to(torch.float32) * mask - mean) / std

    def __call__(self, depth16: torch.Tensor, rgb8: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        depth = depth16.to(torch.float32)
        if self.two_streams:
            return depth, self.rgb(depth, rgb8)
        if self.modality == "depth":
            return (depth,)
        if self.modality == "rgb":
            return (self.rgb(depth, rgb8),)
        return (torch.cat([self.rgb(depth, rgb8), depth], dim=1),)
