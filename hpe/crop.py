"""Hand crop and normalisation, thesis section 4.3.1 (eq. 4.6 depth, eqs. 4.7, 4.8, 4.9 joints, eqs. 4.10, 4.11,
4.12 RGB).

A cube of edge ``cube`` mm is centred on the hand; its front face is projected to a pixel box, the depth in
the box is clamped to the cube, resized (nearest neighbour, aspect kept) onto a ``size`` x ``size`` canvas and
normalised to [-1, 1] with background +1.  Joints are normalised into the same unit cube.

Where the thesis text leaves a choice or the author's code does otherwise, :class:`CropRules` names it (one field
per point, the thesis profile's reading as default); README "Profiles and divergences" says why each profile
takes its value.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from PIL import Image

from hpe import DataError
from hpe.camera import NYU_CAMERA, Camera
from hpe.nyu import DEPTH_MAX_MM, DEPTH_MIN_MM

CENTRES = ("palm", "com", "segment")
CUBE_MM_RANGE = (50.0, 1000.0)  # cube edges hpe accepts: a child's hand to a hand with its forearm and head


def valid_depth(depth: np.ndarray) -> np.ndarray:
    return (depth >= DEPTH_MIN_MM) & (depth <= DEPTH_MAX_MM)


def crop_box(centre_uvd: np.ndarray, cube: float, camera: Camera = NYU_CAMERA) -> np.ndarray:
    """Pixel box (u0, v0, u1, v1), end-exclusive, of the cube's projection: u_c -/+ (cube/2) fx / d_c (floor)."""
    u, v, d = (float(c) for c in centre_uvd)
    hu = cube / 2 * camera.fx / d
    hv = cube / 2 * camera.fy / d
    return np.array([np.floor(u - hu), np.floor(v - hv), np.floor(u + hu), np.floor(v + hv)], dtype=np.int64)


def _box_mean(depth: np.ndarray, box: np.ndarray, zlo: float, zhi: float) -> np.ndarray | None:
    """Centre of mass (u, v, d) of the valid pixels in ``box`` with depth in [zlo, zhi], or None."""
    h, w = depth.shape
    u0, v0, u1, v1 = (int(b) for b in box)
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, w), min(v1, h)
    if u1 <= u0 or v1 <= v0:
        return None
    patch = depth[v0:v1, u0:u1].astype(np.float64)
    m = valid_depth(patch) & (patch >= zlo) & (patch <= zhi)
    if not m.any():
        return None
    vv, uu = np.nonzero(m)
    return np.array([uu.mean() + u0, vv.mean() + v0, patch[m].mean()])


def centre_of_mass(depth: np.ndarray, start_uvd: np.ndarray, cube: float, camera: Camera = NYU_CAMERA,
                   iterations: int = 2) -> np.ndarray | None:
    """DeepPrior's centre: mean (u, v, d) of the depth pixels inside the cube around ``start_uvd``."""
    c = np.asarray(start_uvd, np.float64)
    for _ in range(iterations):
        com = _box_mean(depth, crop_box(c, cube, camera), c[2] - cube / 2, c[2] + cube / 2)
        if com is None:
            return None
        c = com
    return c


def nearest_object(depth: np.ndarray, cube: float, min_pixels: int = 50) -> np.ndarray | None:
    """Mean (u, v, d) of the nearest sizeable object: the connected pixels within cube/2 of its front (the hand is
    assumed to be the object nearest the camera), or None."""
    from scipy import ndimage

    valid = valid_depth(depth)
    if not valid.any():
        return None
    d = np.where(valid, depth, np.iinfo(np.uint16).max).astype(np.float64)
    near = np.percentile(d[valid], 0.1)  # robust front of the nearest object
    labels, n = ndimage.label(valid & (d <= near + cube / 2))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fronts = ndimage.minimum(d, labels, index=np.arange(n + 1))
    fronts = np.where(sizes >= min_pixels, fronts, np.inf)
    fronts[0] = np.inf
    k = int(np.argmin(fronts))
    if not np.isfinite(fronts[k]):
        return None
    vv, uu = np.nonzero(labels == k)
    return np.array([uu.mean(), vv.mean(), d[vv, uu].mean()])


def segment_nearest(depth: np.ndarray, cube: float, camera: Camera = NYU_CAMERA,
                    min_pixels: int = 50) -> np.ndarray | None:
    """Centre without ground truth: DeepPrior's centre of mass inside the cube around the nearest object."""
    start = nearest_object(depth, cube, min_pixels)
    return None if start is None else centre_of_mass(depth, start, cube, camera)


def find_centre(depth: np.ndarray, method: str, cube: float, palm_uvd: np.ndarray | None = None,
                camera: Camera = NYU_CAMERA) -> np.ndarray:
    """Crop centre (u, v, d): ``palm``, the ground-truth palm joint (C, NYU joint 32); ``com``, DeepPrior's centre
    of mass inside the cube around the palm joint, or without labels around the nearest object; ``segment``, the
    nearest object's mean (no labels needed)."""
    if method == "palm" and palm_uvd is None:
        raise ValueError("centre 'palm' needs the ground-truth palm joint; use 'com' or 'segment' for unlabelled "
                         "frames")
    if method == "palm":
        return np.asarray(palm_uvd, np.float64)
    if method == "com":
        c = (centre_of_mass(depth, palm_uvd, cube, camera) if palm_uvd is not None
             else segment_nearest(depth, cube, camera))
    elif method == "segment":
        c = nearest_object(depth, cube)
    else:
        raise ValueError(f"unknown centre '{method}' (choose from {', '.join(CENTRES)})")
    if c is None:
        raise DataError(f"no depth pixels to compute the '{method}' centre from")
    return c


@dataclass(frozen=True)
class CropRules:
    """How a crop is made where readings differ (README "Profiles and divergences").

    paste: ``round`` (thesis profile) rounds the resized short side and centres it at (size - n) // 2; ``floor``
    (the author's imgnormalization.py) floors it and puts it at size // 2 - n // 2 (one pixel further right or
    down for odd n).  rgb_resize: ``pil`` (PIL's bilinear, which low-pass filters when shrinking) or ``opencv``
    (cv2.INTER_LINEAR: two taps, half-pixel centres, no antialiasing, border replicated).  centre_depth: the
    depth z_c that eqs. 4.6 and 4.9 normalise by, ``label`` (the centre's own d, the palm label's) or ``image``
    (I(c_m), the depth image's value at the centre pixel)."""

    paste: Literal["round", "floor"] = "round"
    rgb_resize: Literal["pil", "opencv"] = "pil"
    centre_depth: Literal["label", "image"] = "label"

    @classmethod
    def from_attrs(cls, attrs: dict) -> "CropRules":
        """The rules a prepared file (or a run's preprocessing record) was made with; files from before the rules
        existed were made with the defaults."""
        return cls(**{f.name: str(attrs[f.name]) for f in fields(cls) if f.name in attrs})


def resize_bilinear_opencv(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height))`` with INTER_LINEAR, in numpy: output pixel x samples the source at
    (x + 0.5) * w / width - 0.5, from the two nearest pixels, however much it shrinks (no low-pass filter); a
    sample left of the first pixel centre takes the first pixel, one right of the last centre the last (OpenCV's
    clamping).  uint8 results are rounded half up; OpenCV's 11-bit fixed-point weights can differ by one level."""
    h, w = img.shape[:2]

    def taps(n_out: int, n_in: int):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(src).astype(np.int64)
        frac = src - i0
        low, high = i0 < 0, i0 >= n_in - 1
        i0[low], frac[low] = 0, 0.0
        i0[high], frac[high] = n_in - 1, 0.0
        return i0, np.minimum(i0 + 1, n_in - 1), frac

    x0, x1, fx = taps(width, w)
    y0, y1, fy = taps(height, h)
    f = img.astype(np.float64)
    fx = fx.reshape((1, -1) + (1,) * (img.ndim - 2))
    fy = fy.reshape((-1, 1) + (1,) * (img.ndim - 2))
    rows = f[y0] * (1 - fy) + f[y1] * fy
    out = rows[:, x0] * (1 - fx) + rows[:, x1] * fx
    if img.dtype == np.uint8:
        return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return out.astype(img.dtype)


def depth_at(depth: np.ndarray, u: float, v: float) -> float:
    """I(c_m): the depth image's value at pixel (floor(v), floor(u)); where that pixel has no valid depth, the
    median of the valid pixels in its 5 x 5 neighbourhood (refused when there is none)."""
    h, w = depth.shape
    r, c = int(np.floor(v)), int(np.floor(u))
    if 0 <= r < h and 0 <= c < w and valid_depth(depth[r, c]):
        return float(depth[r, c])
    patch = depth[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].astype(np.float64)
    ok = valid_depth(patch)
    if not ok.any():
        raise DataError(f"no valid depth at or around the centre pixel (u={u:.1f}, v={v:.1f}) for centre_depth "
                        f"'image'")
    return float(np.median(patch[ok]))


@dataclass
class Crop:
    depth: np.ndarray      # (size, size) float32, normalised, background +1   (eq. 4.6)
    rgb: np.ndarray | None  # (size, size, 3) uint8, NOT masked (mask = depth < 1)
    box: np.ndarray        # (u0, v0, u1, v1) in the full image
    transform: np.ndarray  # (3, 3): full-image (u, v, 1) -> crop pixel (col, row, 1)


def paste_geometry(w: int, h: int, size: int, rule: str = "round") -> tuple[int, int, int, int]:
    """Resized (nw, nh) keeping the aspect ratio with the longest side = size, and its offset (ox, oy) on the
    canvas: ``round`` rounds the short side and offsets by (size - n) // 2; ``floor`` (the author's code) floors
    it (n = short * size // long) and offsets by size // 2 - n // 2."""
    if rule == "floor":
        nw, nh = (size, max(1, h * size // w)) if w > h else (max(1, w * size // h), size)
        return nw, nh, size // 2 - nw // 2, size // 2 - nh // 2
    s = size / max(w, h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    return nw, nh, (size - nw) // 2, (size - nh) // 2


def _extract(img: np.ndarray, box: np.ndarray, fill) -> np.ndarray:
    """Copy img[v0:v1, u0:u1], padding the parts outside the image with ``fill``."""
    u0, v0, u1, v1 = (int(b) for b in box)
    h, w = img.shape[:2]
    out = np.full((v1 - v0, u1 - u0) + img.shape[2:], fill, dtype=img.dtype)
    su0, sv0, su1, sv1 = max(u0, 0), max(v0, 0), min(u1, w), min(v1, h)
    if su1 > su0 and sv1 > sv0:
        out[sv0 - v0:sv1 - v0, su0 - u0:su1 - u0] = img[sv0:sv1, su0:su1]
    return out


def crop_hand(depth: np.ndarray, centre_uvd: np.ndarray, cube: float, size: int = 128,
              rgb: np.ndarray | None = None, camera: Camera = NYU_CAMERA, rules: CropRules = CropRules()) -> Crop:
    """Crop, clamp and normalise the depth (eq. 4.6) and crop the registered RGB with the same box.  The centre's
    depth is taken as given (see :func:`crop_frame` for ``centre_depth``)."""
    centre_uvd = np.asarray(centre_uvd, np.float64)
    u, v, zc = centre_uvd
    h_img, w_img = depth.shape
    if not (0 <= u < w_img and 0 <= v < h_img):
        raise DataError(f"crop centre (u={u:.1f}, v={v:.1f}) lies outside the {w_img}x{h_img} image")
    if not (DEPTH_MIN_MM <= zc <= DEPTH_MAX_MM + cube):
        raise DataError(f"crop centre depth {zc:.1f} mm is not a valid depth")
    box = crop_box(centre_uvd, cube, camera)
    w, h = int(box[2] - box[0]), int(box[3] - box[1])
    if w < 1 or h < 1:
        raise DataError(f"empty crop box {box.tolist()} for centre depth {zc:.1f} mm")
    nw, nh, ox, oy = paste_geometry(w, h, size, rules.paste)

    # Nearest-neighbour resampling of the box: output pixel j reads source column floor((j + 0.5) w / nw).
    cols = box[0] + ((np.arange(nw) + 0.5) * w / nw).astype(np.int64)
    rows = box[1] + ((np.arange(nh) + 0.5) * h / nh).astype(np.int64)
    inside_c = (cols >= 0) & (cols < w_img)
    inside_r = (rows >= 0) & (rows < h_img)
    # Rows, then columns: two 1-D takes are three times faster than one broadcast 2-D index.
    patch = depth.take(np.clip(rows, 0, h_img - 1), axis=0).take(np.clip(cols, 0, w_img - 1), axis=1)
    patch = patch.astype(np.float32)
    half = cube / 2
    front, back = zc - half, zc + half
    ok = valid_depth(patch) & inside_r[:, None] & inside_c[None, :] & (patch <= back)
    norm = np.ones((size, size), np.float32)
    # eq. 4.6: d_norm = (d - I(cm)) / (cs / 2), with d clamped to the cube's front face and background +1
    norm[oy:oy + nh, ox:ox + nw] = np.where(ok, (np.maximum(patch, front) - zc) / half, 1.0)

    sx, sy = nw / w, nh / h
    transform = np.array([[sx, 0, ox + sx * (0.5 - box[0]) - 0.5],
                          [0, sy, oy + sy * (0.5 - box[1]) - 0.5],
                          [0, 0, 1]], np.float32)
    rgb_crop = None
    if rgb is not None:
        region = _extract(rgb, box, 0)
        if rules.rgb_resize == "opencv":
            region = resize_bilinear_opencv(region, nw, nh)
        else:
            region = np.asarray(Image.fromarray(region).resize((nw, nh), Image.BILINEAR))
        rgb_crop = np.zeros((size, size, 3), np.uint8)
        rgb_crop[oy:oy + nh, ox:ox + nw] = region
    return Crop(depth=norm, rgb=rgb_crop, box=box.astype(np.int32), transform=transform)


def hand_mask(norm_depth, rule: str = "hand"):
    """Binary hand silhouette of a normalised crop (numpy array or torch tensor): every pixel nearer than the
    background (+1); rule ``hand-not-front`` (the author's code) also drops pixels clamped to the front face (-1)."""
    mask = norm_depth < 1.0
    if rule == "hand-not-front":
        mask = mask & (norm_depth > -1.0)
    return mask


def crop_frame(depth_mm: np.ndarray, rgb: np.ndarray | None, centre_uvd: np.ndarray, cube: float, size: int,
               camera: Camera = NYU_CAMERA, rules: CropRules = CropRules()) -> dict:
    """One frame in the stored form of a prepared dataset: what ``hpe prep`` writes and ``hpe predict`` feeds the
    net (the same function, so a labelled frame gives the same input either way).  Refuses a crop with no depth.
    With ``rules.centre_depth == "image"`` the centre's depth becomes I(c_m), the image's depth at its pixel
    (eqs. 4.6 and 4.9 as written), for the crop and the joints alike."""
    centre_uvd = np.array(centre_uvd, np.float64)
    if rules.centre_depth == "image":
        centre_uvd[2] = depth_at(depth_mm, centre_uvd[0], centre_uvd[1])
    crop = crop_hand(depth_mm, centre_uvd, cube, size, rgb, camera, rules)
    if not hand_mask(crop.depth).any():
        where = f"the {cube:.0f} mm cube around centre (u={centre_uvd[0]:.1f}, v={centre_uvd[1]:.1f}, d={centre_uvd[2]:.1f})"
        u0, v0, u1, v1 = np.clip(crop.box, 0, [depth_mm.shape[1], depth_mm.shape[0]] * 2)
        inside = depth_mm[v0:v1, u0:u1]
        n = int((valid_depth(inside) & (np.abs(inside - centre_uvd[2]) <= cube / 2)).sum())
        if n:  # there is an object, but thinner than a pixel of the resized crop (a pen; a hand is thousands)
            raise DataError(f"the object in {where} covers {n} pixels of the frame, too thin to show in the {size} px "
                            f"crop: not a hand?")
        raise DataError(f"no depth inside {where}")
    return {"depth": crop.depth.astype(np.float16),
            "rgb": (crop.rgb if crop.rgb is not None else np.zeros((size, size, 3), np.uint8)).transpose(2, 0, 1),
            "centre_uvd": centre_uvd, "centre_xyz": camera.uvd_to_xyz(centre_uvd), "cube": np.float32(cube),
            "box": crop.box, "transform": crop.transform}


def normalise_joints(xyz: np.ndarray, centre_xyz: np.ndarray, cube: np.ndarray | float,
                     clip: bool = False) -> np.ndarray:
    """(xyz - centre) / (cube / 2) per joint; ``clip`` to [-1, 1] as the author's code does."""
    cube = np.asarray(cube, np.float64)
    # eq. 4.7 (x' = (x - cm_x) / (cs/2)), eq. 4.8 (y') and eq. 4.9 (z' = (z - I(cm)) / (cs/2)), all three at once
    out = (np.asarray(xyz, np.float64) - np.asarray(centre_xyz, np.float64)[..., None, :]) / (cube[..., None, None] / 2)
    return np.clip(out, -1, 1) if clip else out


def denormalise_joints(norm: np.ndarray, centre_xyz: np.ndarray, cube: np.ndarray | float) -> np.ndarray:
    """Inverse of eqs. 4.7, 4.8 and 4.9: norm * (cube / 2) + centre, in mm."""
    cube = np.asarray(cube, np.float64)
    return np.asarray(norm, np.float64) * (cube[..., None, None] / 2) + np.asarray(centre_xyz, np.float64)[..., None, :]


def standardise_rgb(rgb: np.ndarray, mask: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The mask-multiplied crop standardised per channel (channels last), as the thesis feeds RGB nets."""
    # eq. 4.10 (R' = (R - mu_R) / sigma_R), eq. 4.11 (G'), eq. 4.12 (B'): channel by channel through broadcasting
    return (rgb.astype(np.float32) * mask[..., None] - mean) / std
