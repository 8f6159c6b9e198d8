"""Does a depth crop hold a hand-like object?  ``hpe predict``'s screen (``hand_like`` in ``predictions.json``).

Each rule is a surface no hand makes: an object filling (almost) all of the cube or almost none of it, a plane (a
wall, a ramp, a table), two planes meeting (a room's corner, a box's edge), three (a box seen on its corner), one
smooth rounded surface (a ball, a cylinder, a bowl).  An object in front of a plane that covers half the crop or more
(a wall, a table) is judged alone.  The screen does not recognise hands; it refuses to call these surfaces hands.

The fits work in the crop's own 3D coordinates: each pixel of the normalised crop (eq. 4.6) at (x, y, d) in units of
cube/2 around the centre, its lateral position grown with its depth, x = column offset * (1 + d * (cube/2) /
centre depth) (the crop is the cube's projection at the centre's depth).  A flat face is then exactly a plane and a
ball exactly a sphere; in pixel coordinates a flat face's depth is not linear (z = c / (n . ray)), which left even
noise-free boxes 1-2 mm off their planes.  Without the centre's depth and the cube the crop is taken as orthographic.

The thresholds are measured on normalised crops at 32 / 64 / 128 px of synthetic hands (seeds 11, 13), child-size
hands (0.6 x, seeds 12, 21) and ray-cast objects with the synthetic sensor's noise (0.57 mm at 700 mm, growing with
depth squared, rounded to mm), each confirmed on seeds nobody tuned on (README "Bad input and faults").
"""
from __future__ import annotations

import numpy as np

# An object filling less than 3 % or more than 90 % of the crop is nothing hand-sized, or a surface larger than a hand.
HAND_FILL = (0.03, 0.9)
# Flat: the object departs from its best-fitting plane by a std under 0.02 x cube/2 = 3 mm for a 300 mm cube (hands
# on the synthetic train/test crops: 6 mm at least, 17 mm typically; a tilted wall: 0.5 mm).
FLAT_SPREAD = 0.02
# Two planes: 90 % of the object within 0.02 x cube/2 = 3 mm of the nearer of its two best-fitting planes.  V-shaped
# corners and edges of every angle, tilt and asymmetry: 2.8 mm at most (pixel coordinates, 353 crops); hands 5.3 mm at
# least, child-size hands 3.1 mm at least (the 90th percentile, not the 80th, keeps every child-size hand a hand).
TWO_PLANE_SPREAD = 0.02
# Three planes (a box seen on its corner): 90 % of the object within 0.013 x cube/2 = 2 mm of the nearest of its three
# best-fitting planes.  Boxes of 40-140 mm edges at 450-1100 mm turned to show three faces: median 0.013 in pixel
# coordinates, 0.008 in the crop's 3D coordinates; hands 0.024 at least, child-size hands 0.015 at least in both.
THREE_PLANE_SPREAD = 0.013
# One smooth rounded surface: 90 % of the object within 0.03 x cube/2 = 4.5 mm of its best quadric depth d = f(x, y)
# (a cylinder, a bowl; balls 0.008-0.042, cylinders 0.008-0.047; hands 0.049 at least, child-size hands 0.034) ...
ROUND_SPREAD = 0.03
# ... or of its best sphere (a ball: a quadric d = f(x, y) fits a ball's rim poorly, where its slope grows without
# bound).  Balls of 30-120 mm radius at 450-1100 mm: 0.005-0.021; hands 0.068 at least, child-size hands 0.054.
SPHERE_SPREAD = 0.03
# A surface behind the object (a wall, a table, a body) within the cube: a plane fitted to the crop's farthest pixels
# (each round drops what lies more than BACK_TOLERANCE x cube/2 = 6 mm in front of it) that holds at least BACK_AREA
# of the crop is the background, and the rules judge what lies in front of it.  (A hand 4-10 cm in front of a wall
# was called "a surface larger than a hand": the wall filled the crop.)
BACK_TOLERANCE = 0.04
BACK_AREA = 0.5


def perspective_of(centre_depth: float | None, cube: float | None) -> float:
    """(cube/2) / centre depth: how much a crop pixel's lateral extent grows per unit of normalised depth; 0 (the
    crop taken as orthographic) when either is unknown."""
    if centre_depth is None or cube is None or not centre_depth > 0:
        return 0.0
    return float(cube) / 2 / float(centre_depth)


def crop_points(mask: np.ndarray, depth_crop: np.ndarray, perspective: float,
                step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, d) of the crop's pixels in ``mask`` (every ``step``-th row and column), in the crop's 3D coordinates."""
    rows, cols = np.nonzero(mask[::step, ::step])
    rows, cols = rows * step, cols * step
    d = depth_crop[rows, cols].astype(np.float64)
    h, w = depth_crop.shape
    grow = 1 + d * perspective
    return (cols + 0.5 - w / 2) / (w / 2) * grow, (rows + 0.5 - h / 2) / (h / 2) * grow, d


def _object_points(inside: np.ndarray, depth_crop: np.ndarray,
                   perspective: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The object's points for the surface fits: every other pixel in each direction (a quarter of the work, the
    same answers within 0.001 on the crops measured) when it covers 400 pixels or more; a smaller one (a child-size
    hand in a 32 px crop, ~100 pixels) keeps them all, or two planes fit its few points too well."""
    return crop_points(inside, depth_crop, perspective, step=2 if inside.sum() >= 400 else 1)


def _plane_residual(x: np.ndarray, y: np.ndarray, d: np.ndarray) -> np.ndarray:
    points = np.c_[x, y, np.ones(len(x))]
    return d - points @ np.linalg.lstsq(points, d, rcond=None)[0]


def _quadric_spread(x: np.ndarray, y: np.ndarray, d: np.ndarray, quantile: float = 90.0) -> float:
    """The ``quantile`` of the object's distance (in depth) to its least-squares quadric d = f(x, y)."""
    if len(d) < 12:
        return np.inf
    terms = np.c_[np.ones(len(x)), x, y, x * x, x * y, y * y]
    residual = d - terms @ np.linalg.lstsq(terms, d, rcond=None)[0]
    return float(np.percentile(np.abs(residual), quantile))


def _sphere_spread(x: np.ndarray, y: np.ndarray, d: np.ndarray, quantile: float = 90.0) -> float:
    """The ``quantile`` of the object's distance to its least-squares sphere (|p|^2 = 2 c . p + k: linear in c, k)."""
    if len(d) < 12:
        return np.inf
    p = np.c_[x, y, d]
    solution = np.linalg.lstsq(np.c_[2 * p, np.ones(len(d))], (p * p).sum(axis=1), rcond=None)[0]
    centre, k = solution[:3], solution[3]
    radius = np.sqrt(max(k + centre @ centre, 0.0))
    return float(np.percentile(np.abs(np.linalg.norm(p - centre, axis=1) - radius), quantile))


def _k_planes_spread(x: np.ndarray, y: np.ndarray, d: np.ndarray, starts, k: int, quantile: float,
                     rounds: int) -> float:
    """The ``quantile`` of each point's distance (in depth) to the nearest of ``k`` planes, minimised over k-planes
    fits, one from each starting assignment of the points to planes in ``starts`` (labels 0..k-1): assign each point
    to its nearest plane and refit until nothing moves, at most ``rounds`` times (2-4 usually do).  Each plane of a
    subset solves the sums of its points' terms of the normal equations, so a refit is one mat-vec."""
    points = np.c_[x, y, np.ones(len(d))]
    outer, rhs = (points[:, :, None] * points[:, None, :]).reshape(len(d), 9), points * d[:, None]
    member_of = np.arange(k)[:, None]
    best, index = np.inf, np.arange(len(d))
    for label in starts:
        dist = None
        for _ in range(rounds):
            member = label[None, :] == member_of
            try:
                planes = np.linalg.solve((member @ outer).reshape(k, 3, 3), (member @ rhs)[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:  # a group with its points on one line: no plane
                break
            residual = np.abs(d[:, None] - points @ planes.T)
            nearest = residual.argmin(axis=1)
            dist = residual[index, nearest]
            if np.array_equal(nearest, label):
                break
            label = nearest
        if dist is not None:
            best = min(best, float(np.percentile(dist, quantile)))
    return best


def _two_plane_spread(x: np.ndarray, y: np.ndarray, d: np.ndarray, quantile: float = 90.0) -> float:
    """How far the object lies from the best pair of planes (a corner, an edge): k-planes fits (k = 2) started from
    straight seams at 6 angles and 3 offsets."""
    if len(d) < 12:  # too few points to tell two planes from anything else
        return np.inf

    def seams():
        for angle in np.deg2rad(np.arange(0, 180, 30)):
            across = (x - x.mean()) * np.cos(angle) + (y - y.mean()) * np.sin(angle)
            for offset in np.percentile(across, [25, 50, 75]):
                yield (across > offset).astype(np.int64)
    return _k_planes_spread(x, y, d, seams(), 2, quantile, rounds=8)


def _three_plane_spread(x: np.ndarray, y: np.ndarray, d: np.ndarray, quantile: float = 90.0) -> float:
    """How far the object lies from the best three planes (a box seen on its corner): k-planes fits (k = 3) started
    from Y-shaped seams, three 120-degree sectors around 9 candidate corners (the 25/50/75th percentiles of the
    points' x and y) at 3 turns."""
    if len(d) < 18:  # too few points to tell three planes from anything else
        return np.inf

    def sectors():
        for cx in np.percentile(x, [25, 50, 75]):
            for cy in np.percentile(y, [25, 50, 75]):
                angle = np.arctan2(y - cy, x - cx)
                for turn in np.deg2rad([0, 40, 80]):
                    yield ((angle - turn) % (2 * np.pi) // (2 * np.pi / 3)).astype(np.int64)
    return _k_planes_spread(x, y, d, sectors(), 3, quantile, rounds=10)


def _in_front_of_background(fg: np.ndarray, depth_crop: np.ndarray, perspective: float) -> np.ndarray | None:
    """The pixels in front of a background plane that covers at least BACK_AREA of the crop, or None (no such
    plane: a hand alone covers far less, so it never meets one)."""
    inside = fg & (depth_crop > -1)
    if inside.mean() < BACK_AREA:
        return None
    x, y, d = crop_points(inside, depth_crop, perspective)
    points, keep = np.c_[x, y, np.ones(len(d))], np.ones(len(d), bool)
    for _ in range(8):  # the least-squares plane moves back as the points in front of it are dropped
        residual = d - points @ np.linalg.lstsq(points[keep], d[keep], rcond=None)[0]
        new = residual > -BACK_TOLERANCE
        if np.array_equal(new, keep) or new.sum() < 3:
            break
        keep = new
    if (np.abs(residual) <= BACK_TOLERANCE).sum() < BACK_AREA * depth_crop.size:
        return None
    rows, cols = np.nonzero(inside)
    front = np.zeros_like(fg)
    front[rows[residual < -BACK_TOLERANCE], cols[residual < -BACK_TOLERANCE]] = True
    return front | (fg & (depth_crop <= -1))  # what the front face clamped is in front too


def no_hand(depth_crop: np.ndarray, centre_depth: float | None = None, cube: float | None = None) -> str | None:
    """Why a normalised depth crop (eq. 4.6) holds no hand-like object, or None.  ``centre_depth`` (mm, the crop's
    d = 0) and ``cube`` (mm) place its pixels in 3D; without them the crop is taken as orthographic."""
    perspective = perspective_of(centre_depth, cube)
    fg = depth_crop < 1
    front = _in_front_of_background(fg, depth_crop, perspective)
    if front is not None and front.mean() >= HAND_FILL[0]:
        fg = front
    fill = float(fg.mean())
    if fill > HAND_FILL[1]:
        return f"the object fills {100 * fill:.0f}% of the crop: a surface larger than a hand (wall, body)?"
    if fill < HAND_FILL[0]:
        return f"the object fills only {100 * fill:.1f}% of the crop: nothing hand-sized"
    inside = fg & (depth_crop > -1)  # the front face clamps nearer depths to -1: those are not the surface's
    flat = inside.sum() <= 3  # (almost) all of it clamped to the front face: no surface to fit, flat as before
    if not flat:
        flat = float(_plane_residual(*crop_points(inside, depth_crop, perspective)).std()) < FLAT_SPREAD
    if flat:  # a plane, facing the camera or tilted (a wall, a ramp, a table)
        return "the object in the crop is a flat surface: not a hand"
    x, y, d = _object_points(inside, depth_crop, perspective)
    if _two_plane_spread(x, y, d) < TWO_PLANE_SPREAD:
        return ("the object in the crop is two flat surfaces meeting, or one gently bent (a corner, an edge, the side of "
                "a cylinder): not a hand")
    # Three planes also fit a cylinder's side, a quadric a box's corner only loosely: the reason is the closer fit,
    # each spread counted against its own threshold (a careless user's find: a cylinder was called a box).
    fits = {"three": _three_plane_spread(x, y, d) / THREE_PLANE_SPREAD,
            "round": min(_quadric_spread(x, y, d) / ROUND_SPREAD, _sphere_spread(x, y, d) / SPHERE_SPREAD)}
    best = min(fits, key=fits.get)
    if fits[best] >= 1:
        return None
    if best == "three":
        return ("the object in the crop is flat faces meeting (a box seen on its corner, a room's corner): not a "
                "hand")
    return "the object in the crop is one smooth rounded surface (a ball, a cylinder, a bowl): not a hand"
