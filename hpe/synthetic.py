"""Synthetic hand pose dataset written in exactly the NYU on-disk format.

An articulated 36-joint NYU skeleton (five fingers with MCP/PIP/DIP flexion and abduction, a thumb, a palm
and a forearm) is posed with plausible finger flexion and a random global rotation, then rendered as
spheres with a z-buffer into a 640x480 depth image (mm, (G << 8) | B encoding, background 2001, holes along
silhouettes as structured light leaves them) and a registered RGB image with Lambert-shaded skin.  A torso
and a head stand behind the hand as in NYU.  Layout, PNG encodings and ``joint_data.mat`` keys/shapes match
the real dataset so :mod:`hpe.nyu` reads it unchanged.  Deterministic for a seed, and pixel for pixel the data
every published synthetic figure was measured on (``tests/test_synthetic.py`` pins it): the renderer is
batched for speed, but every draw, expression and dtype is that of drawing one sphere at a time.

    hpe synth OUT_ROOT --train 1800 --test 600 --seed 0     (or data_prep/synthetic_nyu.py, which Make calls)

The root is written as a whole into a temporary folder and renamed when complete; an existing, non-empty root
is never touched unless ``force`` is given and the root's sidecar says hpe generated it.
"""
from __future__ import annotations

import functools
import json
import os
import struct
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import imagecodecs
import numpy as np

from hpe import DataError
from hpe.atomic import atomic_dir, atomic_path, sweep_stale
from hpe.camera import NYU_CAMERA
from hpe.nyu import BACKGROUND_MM, FINGERS, JOINT_NAMES, TEST_FRAMES, TEST_SUBJECT1_FRAMES, encode_depth, subjects_of
from hpe.output import DATASET_SIDECAR
from hpe.progress import progress as progress_bar
from hpe.workers import worker_pool

SIDECAR = DATASET_SIDECAR  # says hpe generated the root, and where test subject 2 starts (for `hpe prep`)
SUBJECT2_SCALE = 0.87           # the second test subject's hand is smaller, as in NYU

# --- hand model (mm, right hand, palm facing the camera, fingers along +y, x towards the thumb) ----------
# MCP knuckle positions and phalanx lengths (proximal, middle, distal) per finger F1 (pinky) .. F4 (index).
_MCP = {"F1": (-33.0, 33.0), "F2": (-12.0, 41.0), "F3": (9.0, 44.0), "F4": (30.0, 39.0)}
_PHALANX = {"F1": (30.0, 19.0, 17.0), "F2": (38.0, 25.0, 20.0), "F3": (42.0, 27.0, 21.0), "F4": (39.0, 24.0, 20.0)}
_RADIUS = {"F1": 7.5, "F2": 8.5, "F3": 8.8, "F4": 8.5, "TH": 10.0}
_SPLAY = {"F1": -14.0, "F2": -5.0, "F3": 3.0, "F4": 12.0}   # abduction at full spread, degrees
_THUMB_CMC = (26.0, -28.0)
_THUMB_LEN = (38.0, 31.0, 26.0)  # metacarpal, proximal, distal
# Palm points PALM_1 .. PALM_6: two wrist points, palm centre (joint 32 = "C"), three more on the palm.
_PALM = np.array([[-26.0, -45.0, 0.0], [26.0, -45.0, 0.0], [0.0, 0.0, 0.0],
                  [-20.0, 22.0, 0.0], [20.0, 22.0, 0.0], [0.0, -25.0, 0.0]])
_PALM_SLAB = np.array([[x, y, 2.0] for x in np.linspace(-34, 34, 5) for y in np.linspace(-40, 36, 5)])  # sphere centres
SKIN = {1: np.array([226.0, 170.0, 136.0]), 2: np.array([205.0, 150.0, 118.0])}


def _rot(axis: str, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _chain(base: np.ndarray, frame: np.ndarray, lengths, flexions) -> list[np.ndarray]:
    """Points along a finger: each joint bends by its flexion about the local x axis, towards the palm (-z)."""
    pts = [base]
    R = frame
    for length, flex in zip(lengths, flexions):
        R = R @ _rot("x", -flex)
        pts.append(pts[-1] + R @ np.array([0.0, length, 0.0]))
    return pts


def sample_pose(rng: np.random.Generator) -> dict:
    """Random articulation + global pose: grip in [0, 1] drives correlated finger curls, plus noise."""
    grip = rng.beta(0.9, 1.3)
    spread = rng.uniform(-0.2, 1.0) * (1 - 0.6 * grip)
    fingers = {}
    for f in FINGERS[:4]:
        g = np.clip(grip + rng.normal(0, 0.18), 0, 1)
        mcp = np.clip(g * 75 + rng.normal(0, 8), -15, 90)
        pip = np.clip(g * 95 + rng.normal(0, 8), 0, 110)
        fingers[f] = (_SPLAY[f] * spread + rng.normal(0, 3), mcp, pip, 0.7 * pip)
    tg = np.clip(grip + rng.normal(0, 0.2), 0, 1)
    fingers["TH"] = (rng.uniform(-10, 25) + 20 * tg, 15 + 35 * tg + rng.normal(0, 6), 10 + 45 * tg, 10 + 50 * tg)
    return {
        "fingers": fingers,
        "rotation": (rng.uniform(-45, 45), rng.uniform(-35, 35), rng.uniform(-50, 50)),  # yaw, pitch, roll
        "position": (rng.uniform(-150, 150), rng.uniform(-90, 110), rng.uniform(550, 900)),
        "forearm": (rng.uniform(-25, 25), rng.uniform(-20, 20)),
    }


class Spheres(NamedTuple):
    """Spheres in drawing order (an earlier sphere wins a tie): camera-xyz centres (n, 3) mm, radii (n,) mm, and
    parts (n,) uint8 (1 hand, 2 forearm, 4 head)."""
    centres: np.ndarray
    radii: np.ndarray
    parts: np.ndarray


@functools.lru_cache(maxsize=None)
def _unit_steps(n: int) -> np.ndarray:
    """np.linspace(0, 1, n), made once per n (hand_model asks for it 16 times a frame)."""
    steps = np.linspace(0, 1, n)
    steps.flags.writeable = False
    return steps


def hand_model(pose: dict, scale: float) -> tuple[np.ndarray, Spheres]:
    """36 NYU joints (camera xyz, mm, y up) and the hand as spheres (centres, radii, parts)."""
    joints = np.zeros((36, 3))
    centres, counts, radii, parts = [], [], [], []  # per capsule and the palm slab: centres, how many, radius, part

    def capsule(a, b, r, part):
        n = max(2, int(np.linalg.norm(b - a) / (0.45 * r)) + 1)
        centres.append(a + _unit_steps(n)[:, None] * (b - a))
        counts.append(n), radii.append(r), parts.append(part)

    for i, f in enumerate(FINGERS):
        ab, flex1, flex2, flex3 = pose["fingers"][f]
        if f == "TH":
            frame = _rot("z", -35 - ab) @ _rot("y", -40)
            base = np.array([*_THUMB_CMC, -4.0]) * scale
            lengths = np.array(_THUMB_LEN) * scale
        else:
            frame = _rot("z", -ab)
            base = np.array([*_MCP[f], 0.0]) * scale
            lengths = np.array(_PHALANX[f]) * scale
        p = _chain(base, frame, lengths, (flex1, flex2, flex3))  # base, knuckle 1, knuckle 2, tip
        r = _RADIUS[f] * scale
        for a, b, rr in zip(p[:-1], p[1:], (r * 1.08, r, r * 0.92)):
            capsule(a, b, rr, 1)
        # KNU3_A tip, KNU3_B/KNU2_A either side of the distal knuckle, KNU2_B/KNU1_A of the middle one, KNU1_B base.
        tip, k2, k1, base_pt = p[3], p[2], p[1], p[0]
        joints[6 * i:6 * i + 6] = [tip, k2 + 0.15 * (tip - k2), k2, k1 + 0.15 * (k2 - k1), k1, base_pt]
    joints[30:36] = _PALM * scale
    centres.append(_PALM_SLAB * scale)  # palm slab: 5 x 5 spheres
    counts.append(len(_PALM_SLAB)), radii.append(15.0 * scale), parts.append(1)
    fa_yaw, fa_pitch = pose["forearm"]
    fdir = _rot("z", fa_yaw) @ _rot("x", fa_pitch) @ np.array([0.0, -1.0, 0.0])
    wrist = np.array([0.0, -48.0, 2.0]) * scale
    capsule(wrist, wrist + 230 * scale * fdir, 27 * scale, 2)

    yaw, pitch, roll = pose["rotation"]
    R = _rot("y", yaw) @ _rot("x", pitch) @ _rot("z", roll)
    t = np.array(pose["position"])
    joints = joints @ R.T + t
    # Each centre as a (1, 3) row: a stack of vector-matrix products rounds exactly as the one-sphere-at-a-time
    # product the published data was made with; one (n, 3) matrix product does not (a different BLAS kernel).
    centres = (np.concatenate(centres)[:, None, :] @ R.T)[:, 0] + t
    return joints, Spheres(centres, np.repeat(radii, counts), np.repeat(np.array(parts, np.uint8), counts))


class _Canvas(NamedTuple):
    """Z-buffer (float32 mm), normal z (float32) and part (0 background, 1 hand, 2 forearm, 3 torso, 4 head) of the
    frame's pixels [v0:v0+h, u0:u0+w]: only the region anything is drawn in."""
    z: np.ndarray
    n: np.ndarray
    p: np.ndarray
    v0: int
    u0: int


def _sphere_boxes(s: Spheres, cam) -> dict:
    """Each visible sphere's projection and pixel box (clipped to the frame), with the same float64 expressions as
    drawing one sphere at a time, so every pixel's depth is the same double."""
    keep = np.flatnonzero(s.centres[:, 2] > s.radii + 10)
    x, y, z = s.centres[keep].T
    radius = s.radii[keep]
    u = x * cam.fx / z + cam.cx
    v = cam.cy - y * cam.fy / z
    rp = radius * cam.fx / z
    u0, u1 = np.maximum(np.floor(u - rp), 0), np.minimum(np.ceil(u + rp) + 1, cam.width)
    v0, v1 = np.maximum(np.floor(v - rp), 0), np.minimum(np.ceil(v + rp) + 1, cam.height)
    ok = (u1 > u0) & (v1 > v0)
    box = {"index": keep, "part": s.parts[keep], "z": z, "radius": radius, "u": u, "v": v, "rp": rp,
           "u0": u0, "u1": u1, "v0": v0, "v1": v1}
    return {k: (a[ok].astype(np.int64) if k in ("u0", "u1", "v0", "v1") else a[ok]) for k, a in box.items()}


def _sphere_pixels(b: dict, canvas: _Canvas, cam):
    """Every (pixel, sphere) pair inside a sphere: canvas pixel index, sphere index, depth (float64), normal z.

    Spheres of similar box size are padded to one box and done at once; padding beyond a sphere's box is outside
    its disc anyway (|du| >= 1), except past the frame's edge, which gets du = inf.  Inside is q = 1 - s > 0,
    which is exactly s < 1."""
    nu, nv = b["u1"] - b["u0"], b["v1"] - b["v0"]
    cols = b["u0"][:, None] + np.arange(nu.max())  # every sphere's columns and rows, padded to the widest box
    rows = b["v0"][:, None] + np.arange(nv.max())
    du2 = ((cols - b["u"][:, None]) / b["rp"][:, None]) ** 2
    dv2 = ((rows - b["v"][:, None]) / b["rp"][:, None]) ** 2
    du2[cols >= cam.width] = np.inf
    dv2[rows >= cam.height] = np.inf
    col_at = (cols - canvas.u0).astype(np.int32)  # canvas pixel index = row_at + col_at
    row_at = ((rows - canvas.v0) * canvas.z.shape[1]).astype(np.int32)
    size_class = np.floor(2 * np.log2(np.maximum(nu, nv))).astype(np.int64)  # sides within a factor sqrt(2)
    pix, sid, q = [], [], []
    for c in np.unique(size_class):
        g = np.flatnonzero(size_class == c)
        w, h = nu[g].max(), nv[g].max()
        s = du2[g, None, :w] + dv2[g, :h, None]
        inside = s < 1.0
        q.append(1.0 - s[inside])
        pix.append((row_at[g, :h, None] + col_at[g, None, :w])[inside])
        sid.append(np.repeat(g.astype(np.int32), np.count_nonzero(inside, axis=(1, 2))))  # the mask is sphere-major
    pix, sid, q = np.concatenate(pix), np.concatenate(sid), np.concatenate(q)
    nz = np.sqrt(q)
    return pix, sid, b["z"][sid] - b["radius"][sid] * nz, nz


def _splat_one(canvas: _Canvas, b: dict, i: int) -> None:
    """Z-buffer sphere i of the boxes alone (the head: one big sphere, densely over its box)."""
    u0, u1, v0, v1 = b["u0"][i], b["u1"][i], b["v0"][i], b["v1"][i]
    du = (np.arange(u0, u1) - b["u"][i]) / b["rp"][i]
    dv = (np.arange(v0, v1) - b["v"][i]) / b["rp"][i]
    q = 1.0 - (du[None, :] ** 2 + dv[:, None] ** 2)
    inside = q > 0
    nz = np.sqrt(np.maximum(q, 0.0))  # only read where inside
    d = b["z"][i] - b["radius"][i] * nz
    at = np.s_[v0 - canvas.v0:v1 - canvas.v0, u0 - canvas.u0:u1 - canvas.u0]
    hit = inside & (d < canvas.z[at])
    np.copyto(canvas.z[at], d, where=hit)
    np.copyto(canvas.n[at], nz, where=hit)  # the normal's z: Lambert shading, light at the camera
    np.copyto(canvas.p[at], b["part"][i], where=hit)


def _splat(canvas: _Canvas, b: dict, cam) -> None:
    """Z-buffer all spheres of the boxes at once with the result of drawing them one at a time, in order, where a
    sphere's depth d (float64) replaces the stored float32 depth s only if d < s (the earlier sphere wins a tie).

    In that sequence the stored depth only falls, and ends at S = min(s0, float32(min d)) (s0: what was there before).
    The pixel's last writer is the last sphere with d < S, if any; otherwise, if s0 > S, the first sphere whose d
    rounds to S (it is written, and no later one passes d < S); otherwise nothing replaces s0."""
    if len(b["index"]) == 0:
        return
    pix, sid, d, nz = _sphere_pixels(b, canvas, cam)
    z0 = canvas.z.reshape(-1)
    low = np.full(z0.shape, np.inf)
    np.minimum.at(low, pix, d)
    s0 = z0[pix]
    s = np.minimum(s0, low[pix].astype(np.float32))
    below = d < s
    writer = np.flatnonzero((d.astype(np.float32) == s) & (below | (s0 > s)))
    n = len(b["index"])
    key = np.where(below[writer], n + sid[writer], n - 1 - sid[writer])  # the last below S beats the first at S
    best = np.full(z0.shape, -1, np.int32)
    np.maximum.at(best, pix[writer], key)
    last = writer[key == best[pix[writer]]]  # one pair per written pixel
    at = pix[last]
    z0[at] = d[last]
    canvas.n.reshape(-1)[at] = nz[last]
    canvas.p.reshape(-1)[at] = b["part"][sid[last]]


def _torso_box(rng: np.random.Generator, hand_z: float, cam) -> dict:
    """A shallow ellipsoid behind the hand (centre depth tz, pixel centre tu, tv, semi-axes ax, ay) and its box."""
    tz = hand_z + rng.uniform(200, 400)
    tu, tv = 320 + rng.normal(0, 50), 400 + rng.normal(0, 25)
    ax, ay = 170 * 800 / tz * rng.uniform(0.9, 1.15), 210 * 800 / tz
    return {"tz": tz, "tu": tu, "tv": tv, "ax": ax, "ay": ay,
            "u0": int(max(tu - ax, 0)), "u1": int(min(tu + ax + 1, cam.width)),
            "v0": int(max(tv - ay, 0)), "v1": int(min(tv + ay + 1, cam.height))}


def _new_canvas(t: dict, *boxes: dict) -> _Canvas:
    """Buffers covering the torso's box and every sphere's: the rest of the frame stays background."""
    def ends(key: str) -> list[int]:
        return [t[key], *(int(x) for b in boxes for x in b[key])]
    v0, v1, u0, u1 = min(ends("v0")), max(ends("v1")), min(ends("u0")), max(ends("u1"))
    shape = (max(v1 - v0, 0), max(u1 - u0, 0))
    return _Canvas(np.full(shape, np.inf, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.uint8),
                   int(v0), int(u0))


def _draw_torso(c: _Canvas, t: dict) -> None:
    """The torso into an empty canvas: depth tz + 60 e and normal z 0.5 + 0.5 sqrt(1 - e) where e < 1."""
    u0, u1, v0, v1 = t["u0"], t["u1"], t["v0"], t["v1"]
    e = (((np.arange(u0, u1)[None, :] - t["tu"]) / t["ax"]) ** 2
         + ((np.arange(v0, v1)[:, None] - t["tv"]) / t["ay"]) ** 2)
    torso = e < 1  # dense arithmetic over the box and masked copies: cheaper than boolean indexing
    at = np.s_[v0 - c.v0:v1 - c.v0, u0 - c.u0:u1 - c.u0]
    np.copyto(c.z[at], t["tz"] + 60 * e, where=torso)
    np.copyto(c.n[at], 0.5 + 0.5 * np.sqrt(np.maximum(1 - e, 0)), where=torso)
    np.copyto(c.p[at], 3, where=torso)


def _draw(joints: np.ndarray, hand: Spheres, rng: np.random.Generator, cam) -> _Canvas:
    """Torso (a shallow ellipsoid behind the hand), head (a sphere above it) and hand, z-buffered in that order."""
    t = _torso_box(rng, float(joints[32, 2]), cam)
    head_x = (t["tu"] - cam.cx) * t["tz"] / cam.fx
    head_y = (cam.cy - (t["tv"] - t["ay"] * 1.25)) * t["tz"] / cam.fy
    head = _sphere_boxes(Spheres(np.array([[head_x, head_y, t["tz"] - 30]]), np.array([95.0]), np.array([4], np.uint8)),
                         cam)
    hand_boxes = _sphere_boxes(hand, cam)
    c = _new_canvas(t, head, hand_boxes)
    _draw_torso(c, t)
    if len(head["index"]):
        _splat_one(c, head, 0)
    _splat(c, hand_boxes, cam)
    return c


def _room(rng: np.random.Generator, cam) -> np.ndarray:
    """A dark room: a random vertical colour gradient (cheap, and it compresses well)."""
    H, W = cam.height, cam.width
    ramp = np.linspace(0, 1, H)[:, None, None] * rng.uniform(-30, 30, 3) + rng.uniform(15, 45, 3)
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:, 0] = np.clip(ramp[:, 0], 0, 255).astype(np.uint8)
    filled = 1
    while filled < W:  # doubling block copies: 10x faster than broadcasting a 3-byte pixel over the frame
        m = min(filled, W - filled)
        rgb[:, filled:filled + m] = rgb[:, :m]
        filled += m
    return rgb


def _sensor_depth(rng: np.random.Generator, pb: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """The drawn box's depth as the sensor gives it: rounded mm with noise, background beyond 1.5 m, holes."""
    obj = pb > 0
    z = zb[obj]
    # Sensor noise grows with z^2.  standard_normal: the same draws as normal(0, 1.0), without its 0 + 1.0 * x.
    noise = rng.standard_normal(z.shape)
    noise *= (z / 1000.0) ** 2
    z = np.round(z + noise)
    z[z > 1500] = BACKGROUND_MM
    dbox = np.full(pb.shape, BACKGROUND_MM, np.uint16)
    dbox[obj] = z
    # Structured light loses pixels along depth discontinuities: drop a random band around silhouettes.
    d16 = dbox.astype(np.int16)
    edge = np.zeros(pb.shape, bool)
    jump = np.abs(np.diff(d16, axis=1)) > 25
    edge[:, 1:] |= jump
    edge[:, :-1] |= jump
    jump = np.abs(np.diff(d16, axis=0)) > 25
    edge[1:, :] |= jump
    edge[:-1, :] |= jump
    at = np.flatnonzero(edge & obj)  # row-major, as np.nonzero's (row, column) pairs
    drop = rng.random(len(at)) < 0.55
    dbox.reshape(-1)[at[drop]] = 0
    return dbox


def _colour(rng: np.random.Generator, subject: int, pb: np.ndarray, nb: np.ndarray, out: np.ndarray) -> None:
    """Shaded skin on the hand, forearm and head, a coloured shirt on the torso, noise on the hand: into ``out``
    (the drawn box of the RGB frame) where something was drawn."""
    palette = np.zeros((5, 3))
    skin = SKIN[subject] * rng.uniform(0.9, 1.1)
    palette[1:] = skin, skin * 0.97, rng.uniform(20, 120, 3), skin * 0.95
    noise = rng.integers(-5, 6, size=pb.shape + (3,), dtype=np.int8)  # drawn as (h, w, 3): the same draws
    noisy, obj = pb <= 2, pb > 0
    shade = 0.3 + 0.7 * np.clip(nb, 0, 1)
    # Channel by channel on (h, w) planes: numpy is slow on arrays whose innermost axis is the 3 channels.
    for k in range(3):
        colour = np.take(palette[:, k].astype(np.float32), pb)
        colour *= shade
        np.add(colour, noise[..., k], out=colour, where=noisy)  # + 0 elsewhere, as the whole-frame version did
        np.clip(colour, 0, 255, out=colour)
        np.copyto(out[..., k], colour, casting="unsafe", where=obj)


def render(joints_spheres, rng: np.random.Generator, subject: int, cam=NYU_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Depth (uint16 mm) and registered RGB (uint8) of the hand in front of a torso, head and empty room."""
    joints, hand = joints_spheres
    c = _draw(joints, hand, rng, cam)
    rgb = _room(rng, cam)
    depth = np.full((cam.height, cam.width), BACKGROUND_MM, np.uint16)
    # Post-process only the bounding box of what was drawn: the rest of the frame is background.
    drawn = c.p > 0
    rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    if len(rows) == 0:
        return depth, rgb
    inner = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = np.s_[c.v0 + rows[0]:c.v0 + rows[-1] + 1, c.u0 + cols[0]:c.u0 + cols[-1] + 1]
    depth[box] = _sensor_depth(rng, c.p[inner], c.z[inner])
    _colour(rng, subject, c.p[inner], c.n[inner], rgb[box])
    return depth, rgb


def png_bytes(image: np.ndarray, level: int = 1) -> bytes:
    """An 8-bit RGB image (h, w, 3) as a PNG: every row Up-filtered, deflated by zlib-ng.

    Why not a PNG library: imagecodecs' libpng (and Pillow, OpenCV) deflate with zlib 1.2.13, which took 8.7 ms
    a frame for the two images at level 1 with the same filter, half the worker's time; zlib-ng (bundled with
    imagecodecs) takes 2.5-3 ms at level 1, and its files decode faster too (5-6 ms a frame against 6.6), at
    195 kB a frame against 149 kB (level 2: 4.5 ms and 128 kB, if disk matters more).  Only the container is ours: the
    signature and three chunks (IHDR, one IDAT, IEND), each with its CRC-32, as the PNG specification has them;
    ``tests/test_synthetic.py`` decodes the result with Pillow and libpng.  Up-filtering: the constant background
    rows become zeros (Pillow's adaptive filtering, tried per row, took longer than rendering)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"png_bytes takes (h, w, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    rows = image.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[:, 0] = 2                              # filter type Up: each byte minus the byte above (mod 256)
    filtered[0, 1:] = rows[0]                       # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)   # 8 bits, truecolour, deflate, no interlace
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header),
                     _chunk(b"IDAT", imagecodecs.zlibng_encode(filtered, level=level)), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _write_png(path: Path, image: np.ndarray) -> None:
    path.write_bytes(png_bytes(image))


def _render_frame(task) -> np.ndarray:
    """Render and write one frame; returns its 36 joints (camera xyz) for joint_data.mat."""
    folder, frame, pose, scale, subject, seed = task
    rng = np.random.default_rng(seed)
    joints, spheres = hand_model(pose, scale)
    depth, rgb = render((joints, spheres), rng, subject)
    _write_png(folder / f"depth_1_{frame:07d}.png", encode_depth(depth))
    _write_png(folder / f"rgb_1_{frame:07d}.png", rgb)
    return joints


def _side_views(xyz: np.ndarray) -> np.ndarray:
    """Joints as seen by NYU's two side kinects (rigid views from +-60 degrees around a point 800 mm away)."""
    pivot = np.array([0.0, 0.0, 800.0])
    views = [xyz]
    for yaw in (60.0, -60.0):
        views.append((xyz - pivot) @ _rot("y", yaw).T + pivot)
    return np.stack(views)


def write_split(root: Path, split: str, n: int, seed: int, subject1_frames: int, workers: int,
                subject2_scale: float = SUBJECT2_SCALE, progress: bool = False) -> None:
    from scipy.io import savemat

    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    split_id = {"train": 0, "test": 1}[split]
    rng = np.random.default_rng([seed, split_id])
    xyz = np.zeros((n, 36, 3))
    subjects = subjects_of(np.arange(1, n + 1), subject1_frames if split == "test" else n)

    def tasks():
        for i in range(n):
            frame, subject = i + 1, int(subjects[i])
            scale = subject2_scale if subject == 2 else 1.0
            yield folder, frame, sample_pose(rng), scale, subject, [seed, split_id, frame]
    # The workers pose the hand anyway: their joints come back in order, so the parent's serial part is only the
    # pose sampling (it posed every hand itself once, ~10 % of the work, on one core), and that is drawn lazily,
    # in order, by the pool's task thread while the workers render (not all of it before the first frame).
    with worker_pool(workers) as pool:
        with progress_bar(n, f"synth {split}", "frame", progress) as bar:
            for i, joints in enumerate(pool.imap(_render_frame, tasks(), chunksize=16)):
                xyz[i] = joints
                bar.update(1)
        pool.close()  # workers exit on their own (the with-block terminates them: coverage.py loses their data)
        pool.join()
    joint_xyz = _side_views(xyz)
    joint_uvd = NYU_CAMERA.xyz_to_uvd(joint_xyz)
    names = np.empty((1, 36), dtype=object)
    names[0, :] = JOINT_NAMES
    with atomic_path(folder / "joint_data.mat") as tmp:
        savemat(tmp, {"joint_uvd": joint_uvd.astype(np.float32), "joint_xyz": joint_xyz.astype(np.float32),
                      "joint_names": names}, do_compression=True)


def read_sidecar(root: Path) -> dict | None:
    """What ``hpe synth`` recorded about the dataset ``root`` (seed, frames, test subject split, hand size), or
    None for a dataset hpe did not generate; an unreadable sidecar is one error line."""
    side = Path(root) / SIDECAR
    if not side.is_file():
        return None
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        raise DataError(f"{side} is not the JSON hpe synth writes: regenerate the dataset (hpe synth --force)")
    return info


def subject1_frames(root: Path) -> int:
    """Where test subject 2 starts: NYU's 2440, or what a synthetic set's sidecar says."""
    info = read_sidecar(root)
    return TEST_SUBJECT1_FRAMES if info is None else int(info["test_subject1_frames"])


def generated_by_hpe(root: Path) -> bool:
    """Whether ``root`` is a synthetic dataset that hpe wrote (its sidecar says so)."""
    try:
        info = read_sidecar(root)
    except DataError:
        return False
    return info is not None and str(info.get("generator", "")).startswith("hpe")


def generate(root: Path, n_train: int, n_test: int, seed: int = 0, workers: int | None = None,
             force: bool = False, subject2_scale: float | None = None, progress: bool = False) -> dict:
    """Write a synthetic NYU-layout dataset as ``root`` and return what was written.

    ``subject2_scale`` sizes the second test subject's hand (default NYU's: 0.87 of the first's); another value makes a
    test set with a hand size no run was developed on (``make reproduce-centres``'s held-out set).

    ``root`` must not exist or be empty; with ``force`` it may be a dataset hpe generated earlier, which is
    replaced only once the new one is complete."""
    root = Path(root)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need at least one training and one test frame, got --train {n_train} --test {n_test}")
    subject2_scale = SUBJECT2_SCALE if subject2_scale is None else float(subject2_scale)
    if not 0.5 <= subject2_scale <= 1.5:
        raise ValueError(f"--subject2-scale {subject2_scale}: must be between 0.5 and 1.5 (a hand size relative to "
                         f"the first subject's)")
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a folder for a dataset")
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise DataError(f"{root} is not empty: hpe synth never writes into an existing dataset; choose a new "
                            f"folder" + (", or pass --force to replace this synthetic one" if generated_by_hpe(root)
                                         else ""))
        if not generated_by_hpe(root):
            raise DataError(f"{root} is not a dataset hpe generated (no {SIDECAR}): --force only replaces those")
    root.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(root.parent)
    workers = workers or os.cpu_count() or 1
    # Keep NYU's proportion: its first 2440 of 8252 test frames are the training subject.
    subject1 = min(n_test, max(1, round(n_test * TEST_SUBJECT1_FRAMES / TEST_FRAMES)))
    t0 = time.perf_counter()
    with atomic_dir(root, replace=True) as tmp:
        write_split(tmp, "train", n_train, seed, subject1, workers, subject2_scale, progress)
        write_split(tmp, "test", n_test, seed, subject1, workers, subject2_scale, progress)
        info = {"generator": "hpe.synthetic", "seed": seed, "train_frames": n_train,
                "test_frames": n_test, "test_subject1_frames": subject1, "subject2_scale": subject2_scale,
                "seconds": round(time.perf_counter() - t0, 2)}
        (tmp / SIDECAR).write_text(json.dumps(info, indent=2) + "\n")
    return info
