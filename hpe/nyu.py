"""The NYU hand pose dataset (Tompson et al., ToG 2014): its facts, its on-disk layout and the files of its
evaluation protocol.

``{root}/{train,test}/depth_1_%07d.png`` (depth in mm = G << 8 | B), ``rgb_1_%07d.png`` and ``joint_data.mat``
with ``joint_uvd``, ``joint_xyz`` of shape (kinect, frame, 36, 3).  Frames are numbered from 1; only kinect 1
(the frontal camera) is used, as in the thesis.  Prediction and label files of the evaluation kit hold one line
per test frame with 14 joints x (u, v, d); readers accept them gzip-compressed (``.gz``) too.
"""
from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hpe import DataError
from hpe.camera import NYU_CAMERA, NYU_HEIGHT, NYU_WIDTH, Camera

TRAIN_FRAMES = 72757          # frames of train/ (one subject)
TEST_FRAMES = 8252            # frames of test/ (two subjects)
TEST_SUBJECT1_FRAMES = 2440   # test frames 1-2440 are subject 1 (the training subject), the rest subject 2

FINGERS = ("F1", "F2", "F3", "F4", "TH")  # pinky, ring, middle, index, thumb
KNUCKLES = ("KNU3_A", "KNU3_B", "KNU2_A", "KNU2_B", "KNU1_A", "KNU1_B")  # tip ... base
JOINT_NAMES = tuple(f"{f}_{k}" for f in FINGERS for k in KNUCKLES) + tuple(f"PALM_{i}" for i in range(1, 7))
NUM_JOINTS = len(JOINT_NAMES)  # 36

# The standard 14-joint evaluation subset, ascending order (everyone's protocol and the kit's files).
EVAL_JOINTS = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
EVAL_NAMES = ("P1", "P2", "R1", "R2", "M1", "M2", "I1", "I2", "T1", "T2", "T3", "W1", "W2", "C")
PALM_JOINT = 32  # PALM_3, the palm centre ("C"): slot 13 of the evaluation subset
PALM_SLOT = EVAL_NAMES.index("C")
# Other orders of the same 14 joints found in published files: which NYU joint each column holds.
JOINT_ORDERS = {
    "kit": EVAL_JOINTS,
    "fusenet": (32, 3, 0, 9, 6, 15, 12, 21, 18, 27, 25, 24, 30, 31),  # the thesis author's code: palm first
}
# Bones for drawing, as pairs of evaluation slots: C-P2, P2-P1, C-R2, ..., C-W1, C-W2.
SKELETON = ((13, 1), (1, 0), (13, 3), (3, 2), (13, 5), (5, 4), (13, 7), (7, 6),
            (13, 10), (10, 9), (9, 8), (13, 11), (13, 12))
DEPTH_MIN_MM, DEPTH_MAX_MM = 10, 1500  # valid sensor range; outside it a pixel is "missing"
BACKGROUND_MM = 2001  # what NYU writes for background / invalid pixels


def subjects_of(frames, subject1_frames: int = TEST_SUBJECT1_FRAMES) -> np.ndarray:
    """The one subject rule: 1-based test frames up to ``subject1_frames`` are subject 1, later ones subject 2."""
    return np.where(np.asarray(frames) > subject1_frames, 2, 1).astype(np.uint8)


def parse_joint_order(text: str) -> tuple[int, ...]:
    """A named order (``kit``, ``fusenet``) or 14 comma-separated NYU joint indices: the joint each column holds."""
    if text in JOINT_ORDERS:
        return JOINT_ORDERS[text]
    try:
        order = tuple(int(t) for t in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"joint order '{text}' is neither a name ({', '.join(JOINT_ORDERS)}) nor 14 "
                         f"comma-separated NYU joint indices") from None
    if sorted(order) != sorted(EVAL_JOINTS):
        raise ValueError(f"joint order {list(order)} must list each of the 14 evaluation joints "
                         f"{list(EVAL_JOINTS)} once")
    return order


def to_kit_order(joints: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Reorder (N, 14, 3) joints whose column k holds NYU joint ``order[k]`` into the kit's ascending order."""
    return joints[:, [order.index(j) for j in EVAL_JOINTS]]


# --- images ------------------------------------------------------------------------------------------------
def depth_path(root: Path, split: str, frame: int, kinect: int = 1) -> Path:
    return Path(root) / split / f"depth_{kinect}_{frame:07d}.png"


def rgb_path(root: Path, split: str, frame: int, kinect: int = 1) -> Path:
    return Path(root) / split / f"rgb_{kinect}_{frame:07d}.png"


def _open_rgb8(path: Path, what: str, frame: int | None, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The PNG's 8-bit RGB pixels, whole, or with ``box`` only those of the box (already clipped to the image)."""
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
            # Pillow decodes the whole file either way; converting only the box to an array skips ~85 % of the copy.
            return np.asarray(im) if box is None else np.asarray(im.crop(box))
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


# A frame whose red channel is non-zero in more than this share of its pixels is a colour photo: NYU's packing
# leaves red empty (FACTS: "R is unused"; the bundled real frame: 0 of 307,200 pixels).  Frames a user names are held
# to 1 %; a dataset's frames (prep) to half, so that a real frame with some stray red is never refused.
COLOUR_SHARE = {"user": 0.01, "dataset": 0.5}


def check_not_colour(rgb8: np.ndarray, path: Path, share: float = COLOUR_SHARE["user"]) -> None:
    """Refuse a colour photo given where NYU's packed depth belongs (see COLOUR_SHARE)."""
    if rgb8.size and (rgb8[..., 0] != 0).mean() > share:
        raise DataError(f"{path} looks like a colour image, not a depth frame (its red channel is not empty, as NYU's "
                        f"packed depth always is): give depth frames here (colour frames are the rgb_* files, or "
                        f"predict's --rgb)")


def _inside(box) -> tuple[int, int, int, int]:
    """``box`` clipped to the image (possibly empty, never inverted)."""
    u0, v0, u1, v1 = (int(b) for b in box)
    u0, v0 = min(max(u0, 0), NYU_WIDTH), min(max(v0, 0), NYU_HEIGHT)
    return u0, v0, min(max(u1, u0), NYU_WIDTH), min(max(v1, v0), NYU_HEIGHT)


def _in_frame(region: np.ndarray, inside: tuple[int, int, int, int]) -> np.ndarray:
    """A region read with a box, placed in a frame of NYU's size that is 0 (no reading) elsewhere."""
    u0, v0, u1, v1 = inside
    frame = np.zeros((NYU_HEIGHT, NYU_WIDTH) + region.shape[2:], region.dtype)
    frame[v0:v1, u0:u1] = region
    return frame


def read_depth(path: Path, frame: int | None = None, user_frame: bool = False, box=None) -> np.ndarray:
    """Depth image in mm as uint16 (480, 640); a colour photo is refused (:func:`check_not_colour`), held to 1 % of
    red pixels for a ``user_frame``, to half for a dataset's frame.
    With ``box`` (u0, v0, u1, v1) only the pixels inside it are read and the rest is 0 (no reading): for a caller
    that looks at no other pixel (prep's crop, whose box is known from the label before the frame is read)."""
    share = COLOUR_SHARE["user" if user_frame else "dataset"]
    if box is None:
        rgb8 = _open_rgb8(Path(path), "depth", frame)
        check_not_colour(rgb8, path, share)
        return decode_depth(rgb8)
    inside = _inside(box)
    rgb8 = _open_rgb8(Path(path), "depth", frame, inside)
    check_not_colour(rgb8, path, share)
    return _in_frame(decode_depth(rgb8), inside)


def read_rgb(path: Path, frame: int | None = None, box=None) -> np.ndarray:
    """Registered colour image, uint8 (480, 640, 3); with ``box`` only its pixels, the rest 0 (see read_depth)."""
    if box is None:
        return _open_rgb8(Path(path), "rgb", frame)
    inside = _inside(box)
    return _in_frame(_open_rgb8(Path(path), "rgb", frame, inside), inside)


# --- joint_data.mat ----------------------------------------------------------------------------------------
@dataclass
class JointData:
    uvd: np.ndarray  # (N, 36, 3) float64 for the chosen kinect
    xyz: np.ndarray  # (N, 36, 3) float64, mm, y up

    def __len__(self) -> int:
        return len(self.uvd)


def load_joint_data(path: Path, kinect: int = 1, xyz_tolerance_mm: float | None = 1.0,
                    camera: Camera = NYU_CAMERA) -> JointData:
    """Read ``joint_data.mat``: keys, shapes, numeric values without NaN, and (unless ``xyz_tolerance_mm`` is None)
    ``joint_xyz`` agreeing with ``joint_uvd`` through the camera, frame by frame."""
    from scipy.io import loadmat

    path = Path(path)
    _require_file(path, "joint annotation")
    try:
        mat = loadmat(path)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    out = {}
    for key in ("joint_uvd", "joint_xyz"):
        if key not in mat:
            raise DataError(f"{path} lacks the key '{key}' (has: {sorted(k for k in mat if not k.startswith('__'))})")
        raw = np.asarray(mat[key])
        if raw.dtype.kind not in "fiu":
            raise DataError(f"{path}: '{key}' holds {raw.dtype} values, not numbers (a corrupt or foreign file)")
        a = raw.astype(np.float64)
        if a.ndim != 4 or a.shape[2] != NUM_JOINTS or a.shape[3] != 3 or a.shape[0] < kinect:
            raise DataError(f"{path}: '{key}' must have shape (kinects, N, 36, 3), got {a.shape}")
        out[key] = a[kinect - 1]
    if out["joint_uvd"].shape != out["joint_xyz"].shape:
        raise DataError(f"{path}: joint_uvd {out['joint_uvd'].shape} and joint_xyz {out['joint_xyz'].shape} disagree")
    for key, a in out.items():
        bad = ~np.isfinite(a).all(axis=(1, 2))
        if bad.any():
            raise DataError(f"{path}: '{key}' has NaN/inf values at frame {int(np.argmax(bad)) + 1}")
    if xyz_tolerance_mm is not None and len(out["joint_uvd"]):
        gap = np.abs(camera.uvd_to_xyz(out["joint_uvd"]) - out["joint_xyz"]).max(axis=(1, 2))
        worst = int(np.argmax(gap))
        if gap[worst] > xyz_tolerance_mm:
            raise DataError(f"{path}: frame {worst + 1}: joint_xyz differs from joint_uvd through the camera by "
                            f"{gap[worst]:.1f} mm (tolerance {xyz_tolerance_mm} mm): the two annotations disagree")
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
    """One labelled split folder (``train`` or ``test``) of an NYU-layout dataset."""

    root: Path
    split: str
    kinect: int = 1
    check_files: bool = True
    xyz_tolerance_mm: float | None = 1.0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.folder = self.root / self.split
        if not self.folder.is_dir():
            raise DataError(f"missing split folder: {self.folder} (an NYU root holds train/ and test/)")
        mat = self.folder / "joint_data.mat"
        if not mat.is_file():
            raise DataError(f"{self.folder} has no joint_data.mat: `hpe prep` needs labelled frames to build "
                            f"training and test data; to run a trained model on unlabelled frames use `hpe predict`")
        self.joints = load_joint_data(mat, self.kinect, self.xyz_tolerance_mm)
        if self.check_files:
            n_files = count_frames(self.folder, self.kinect)
            if n_files != len(self.joints):
                raise DataError(f"{mat} annotates {len(self.joints)} frames but "
                                f"{self.folder} holds {n_files} depth_{self.kinect}_*.png files")

    def __len__(self) -> int:
        return len(self.joints)

    def depth_path(self, frame: int) -> Path:
        return depth_path(self.root, self.split, frame, self.kinect)

    def rgb_path(self, frame: int) -> Path:
        return rgb_path(self.root, self.split, frame, self.kinect)


# --- evaluation-kit files (labels and predictions, 14 joints x u v d per line) ------------------------------
_BINARY = {b"MATLAB": "a MATLAB .mat file", b"\x89HDF": "an HDF5 file", b"PK\x03\x04": "a NumPy .npz / zip file",
           b"\x93NUMPY": "a NumPy .npy file", b"\x89PNG": "a PNG image"}


def _require_file(path: Path, role: str) -> None:
    """One line when ``path`` is not a file: a folder (name the file to give) or nothing there."""
    if path.is_dir():
        raise DataError(f"{role} file {path} is a folder: give the file in it (e.g. {path / 'joint_data.mat'} or a "
                        f"label .txt)")
    if not path.is_file():
        raise DataError(f"missing {role} file: {path}")


def _open_text(path: Path, role: str):
    """Open a (possibly gzipped) text file, or say in one line what it is instead."""
    path = Path(path)
    _require_file(path, role)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(8)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {role} file {path}: {exc}") from None
    for magic, what in _BINARY.items():
        if head.startswith(magic):
            raise DataError(f"{role} file {path} is {what}, not a text file of 42 numbers a line "
                            f"(14 joints x u v d); convert it first")
    return opener(path, "rt", encoding="ascii", errors="replace")


def read_joints_txt(path: Path, joints: int = 14, role: str = "prediction") -> np.ndarray:
    """A label / prediction file of the evaluation kit: one line per frame, joints x 3 numbers, any whitespace,
    CRLF or trailing spaces, optionally gzipped.  Returns (N, joints, 3) float64."""
    path = Path(path)
    rows = []
    with _open_text(path, role) as fh:
        for i, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if "," in line and len(line.replace(",", " ").split()) == 3 * joints:
                raise DataError(f"{path}:{i}: comma-separated values; the kit's format (what hpe reads) separates "
                                f"numbers by spaces: convert it, e.g. tr ',' ' ' < FILE")
            if len(parts) != 3 * joints:
                raise DataError(f"{path}:{i}: expected {3 * joints} numbers ({joints} joints x 3), got {len(parts)}")
            try:
                row = [float(p) for p in parts]
            except ValueError:
                raise DataError(f"{path}:{i}: not a number in {line.strip()[:60]!r}") from None
            if not np.isfinite(row).all():
                raise DataError(f"{path}:{i}: NaN/inf value")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no lines with numbers ({role} file)")
    return np.asarray(rows, np.float64).reshape(-1, joints, 3)


def write_joints_txt(path: Path, joints: np.ndarray) -> None:
    """Write (N, J, 3) joints in the kit's format (one frame a line), atomically."""
    from hpe.atomic import atomic_path
    flat = np.asarray(joints, np.float64).reshape(len(joints), -1)
    with atomic_path(Path(path)) as tmp:
        np.savetxt(tmp, flat, fmt="%.4f", delimiter=" ")


def read_ground_truth(path: Path, camera: Camera = NYU_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Test ground truth as (uvd, xyz) of the 14 evaluation joints, from a test ``joint_data.mat`` or the kit's
    label file (``nyu_test_groundtruth_label.txt[.gz]``)."""
    path = Path(path)
    _require_file(path, "ground-truth")
    if path.suffix == ".mat":
        jd = load_joint_data(path, camera=camera)
        return jd.uvd[:, EVAL_JOINTS], jd.xyz[:, EVAL_JOINTS]
    uvd = read_joints_txt(path, role="ground-truth")
    return uvd, camera.uvd_to_xyz(uvd)


def read_tompson(mat_path: Path, depth_dir: Path, gt_uvd: np.ndarray, camera: Camera = NYU_CAMERA,
                 max_offset_mm: float = 150.0) -> np.ndarray:
    """Tompson et al.'s 2D predictions (``test_predictions.mat[.gz]``) lifted to 3D by DeepPrior's protocol (thesis
    4.4.7): d = depth[int(v), int(u)]; where that lies more than 150 mm from the ground-truth palm-centre depth, the
    joint's ground-truth depth is used.  Needs the test depth images ``depth_dir/depth_1_%07d.png``.  Returns uvd
    (N, 14, 3) in the kit's joint order."""
    from scipy.io import loadmat

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise DataError(f"missing Tompson predictions file: {mat_path}")
    try:
        with (gzip.open if mat_path.suffix == ".gz" else open)(mat_path, "rb") as fh:
            uvconf = np.asarray(loadmat(fh)["pred_joint_uvconf"], np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read Tompson predictions from {mat_path}: {exc}") from None
    uv = uvconf[0][:, EVAL_JOINTS, :2]
    n = min(len(uv), len(gt_uvd))
    out = np.zeros((n, len(EVAL_JOINTS), 3))
    for i in range(n):
        depth = read_depth(Path(depth_dir) / f"depth_1_{i + 1:07d}.png", i + 1)
        u = np.clip(uv[i, :, 0].astype(int), 0, depth.shape[1] - 1)
        v = np.clip(uv[i, :, 1].astype(int), 0, depth.shape[0] - 1)
        d = depth[v, u].astype(np.float64)
        far = np.abs(d - gt_uvd[i, PALM_SLOT, 2]) > max_offset_mm
        d[far] = gt_uvd[i, far, 2]
        out[i, :, :2] = uv[i]
        out[i, :, 2] = d
    return out
