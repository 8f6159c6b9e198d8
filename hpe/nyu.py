"""Reader for the NYU hand pose dataset's on-disk layout (Tompson et al., ToG 2014).

``{root}/{train,test}/depth_1_%07d.png`` (depth in mm = G << 8 | B), ``rgb_1_%07d.png`` and
``joint_data.mat`` with ``joint_uvd``, ``joint_xyz`` of shape (kinect, frame, 36, 3) and ``joint_names``.
Frames are numbered from 1.  Only kinect 1 (the frontal camera) is used, as in the thesis.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hpe import DataError
from hpe.camera import NYU_HEIGHT, NYU_WIDTH

FINGERS = ("F1", "F2", "F3", "F4", "TH")  # pinky, ring, middle, index, thumb
KNUCKLES = ("KNU3_A", "KNU3_B", "KNU2_A", "KNU2_B", "KNU1_A", "KNU1_B")  # tip ... base
JOINT_NAMES = tuple(f"{f}_{k}" for f in FINGERS for k in KNUCKLES) + tuple(f"PALM_{i}" for i in range(1, 7))
NUM_JOINTS = len(JOINT_NAMES)  # 36

# The standard 14-joint evaluation subset, ascending order (everyone's protocol).
EVAL_JOINTS = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
EVAL_NAMES = ("P1", "P2", "R1", "R2", "M1", "M2", "I1", "I2", "T1", "T2", "T3", "W1", "W2", "C")
PALM_JOINT = 32  # PALM_3, the palm centre ("C"): slot 13 of the evaluation subset
PALM_SLOT = EVAL_NAMES.index("C")
# Bones for drawing, as pairs of evaluation slots: C-P2, P2-P1, C-R2, ..., C-W1, C-W2.
SKELETON = ((13, 1), (1, 0), (13, 3), (3, 2), (13, 5), (5, 4), (13, 7), (7, 6),
            (13, 10), (10, 9), (9, 8), (13, 11), (13, 12))
# Test frames 1-2440 are subject 1 (the training subject), the rest subject 2.
TEST_SUBJECT1_FRAMES = 2440
DEPTH_MIN_MM, DEPTH_MAX_MM = 10, 1500  # valid sensor range; outside it a pixel is "missing"
BACKGROUND_MM = 2001  # what NYU writes for background / invalid pixels


def depth_path(root: Path, split: str, frame: int, kinect: int = 1) -> Path:
    return Path(root) / split / f"depth_{kinect}_{frame:07d}.png"


def rgb_path(root: Path, split: str, frame: int, kinect: int = 1) -> Path:
    return Path(root) / split / f"rgb_{kinect}_{frame:07d}.png"


def _open_rgb8(path: Path, what: str, frame: int | None) -> np.ndarray:
    where = f"{path}" + (f" (frame {frame})" if frame is not None else "")
    if not path.is_file():
        raise DataError(f"missing {what} frame: {where}")
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise DataError(f"{what} file is not a PNG ({im.format}): {where}")
            if im.mode != "RGB" or im.size != (NYU_WIDTH, NYU_HEIGHT):
                raise DataError(f"{what} PNG must be 8-bit RGB {NYU_WIDTH}x{NYU_HEIGHT}, "
                                f"got mode {im.mode} size {im.size[0]}x{im.size[1]}: {where}")
            return np.asarray(im)
    except DataError:
        raise
    except Exception as exc:  # PIL raises many types for truncated / corrupt files
        raise DataError(f"corrupt {what} PNG: {where}: {exc}") from None


def decode_depth(rgb8: np.ndarray) -> np.ndarray:
    """NYU depth encoding: depth in mm = (G << 8) | B; R is unused."""
    return (rgb8[..., 1].astype(np.uint16) << 8) | rgb8[..., 2].astype(np.uint16)


def encode_depth(depth_mm: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_depth` (R = 0), for writing NYU-format PNGs."""
    d = np.asarray(depth_mm, dtype=np.uint16)
    out = np.zeros(d.shape + (3,), np.uint8)
    out[..., 1] = d >> 8
    out[..., 2] = d & 0xFF
    return out


def read_depth(path: Path, frame: int | None = None) -> np.ndarray:
    """Depth image in mm as uint16 (480, 640)."""
    return decode_depth(_open_rgb8(Path(path), "depth", frame))


def read_rgb(path: Path, frame: int | None = None) -> np.ndarray:
    """Registered colour image, uint8 (480, 640, 3)."""
    return _open_rgb8(Path(path), "rgb", frame)


@dataclass
class JointData:
    uvd: np.ndarray  # (N, 36, 3) float64 for the chosen kinect
    xyz: np.ndarray  # (N, 36, 3) float64, mm, y up

    def __len__(self) -> int:
        return len(self.uvd)


def load_joint_data(path: Path, kinect: int = 1) -> JointData:
    """Read ``joint_data.mat``; check keys and shapes, and that no value is NaN or infinite."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing joint annotation file: {path}")
    try:
        mat = loadmat(path)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    out = {}
    for key in ("joint_uvd", "joint_xyz"):
        if key not in mat:
            raise DataError(f"{path} lacks the key '{key}' (has: {sorted(k for k in mat if not k.startswith('__'))})")
        a = np.asarray(mat[key], dtype=np.float64)
        if a.ndim != 4 or a.shape[2] != NUM_JOINTS or a.shape[3] != 3 or a.shape[0] < kinect:
            raise DataError(f"{path}: '{key}' must have shape (kinects, N, 36, 3), got {a.shape}")
        out[key] = a[kinect - 1]
    if out["joint_uvd"].shape != out["joint_xyz"].shape:
        raise DataError(f"{path}: joint_uvd {out['joint_uvd'].shape} and joint_xyz {out['joint_xyz'].shape} disagree")
    for key, a in out.items():
        bad = ~np.isfinite(a).all(axis=(1, 2))
        if bad.any():
            raise DataError(f"{path}: '{key}' has NaN/inf values at frame {int(np.argmax(bad)) + 1}")
    return JointData(uvd=out["joint_uvd"], xyz=out["joint_xyz"])


_FRAME_RE = re.compile(r"depth_(\d)_(\d{7})\.png$")


def count_frames(folder: Path, kinect: int = 1) -> int:
    """Number of ``depth_{kinect}_*.png`` files in a split folder."""
    n = 0
    with os.scandir(folder) as it:
        for e in it:
            m = _FRAME_RE.match(e.name)
            if m and int(m.group(1)) == kinect:
                n += 1
    return n


@dataclass
class NYUSplit:
    """One split folder (``train`` or ``test``) of an NYU-layout dataset."""

    root: Path
    split: str
    kinect: int = 1
    check_files: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.folder = self.root / self.split
        if not self.folder.is_dir():
            raise DataError(f"missing split folder: {self.folder}")
        self.joints = load_joint_data(self.folder / "joint_data.mat", self.kinect)
        if self.check_files:
            n_files = count_frames(self.folder, self.kinect)
            if n_files != len(self.joints):
                raise DataError(f"{self.folder / 'joint_data.mat'} annotates {len(self.joints)} frames but "
                                f"{self.folder} holds {n_files} depth_{self.kinect}_*.png files")

    def __len__(self) -> int:
        return len(self.joints)

    def depth_path(self, frame: int) -> Path:
        return depth_path(self.root, self.split, frame, self.kinect)

    def rgb_path(self, frame: int) -> Path:
        return rgb_path(self.root, self.split, frame, self.kinect)

    def subject(self, frame: int) -> int:
        """1-based subject id of a 1-based frame (the training set has one subject)."""
        return 2 if self.split == "test" and frame > TEST_SUBJECT1_FRAMES else 1
