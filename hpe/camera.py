"""Pinhole camera of the NYU kinect, thesis equations 4.3-4.5.

NYU flips y: image rows grow downwards while camera y points up.  All functions work on arrays of any
leading shape ``(..., 3)`` and keep float64 precision so the uvd <-> xyz round trip is exact to 1e-6 mm.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The dataset's own constants (640 / 1.08836710 and 480 / 0.817612648).
NYU_FX = 588.036865
NYU_FY = 587.075073
NYU_CX = 320.0
NYU_CY = 240.0
NYU_WIDTH = 640
NYU_HEIGHT = 480


@dataclass(frozen=True)
class Camera:
    fx: float = NYU_FX
    fy: float = NYU_FY
    cx: float = NYU_CX
    cy: float = NYU_CY
    width: int = NYU_WIDTH
    height: int = NYU_HEIGHT

    def uvd_to_xyz(self, uvd: np.ndarray) -> np.ndarray:
        """Back-project (u, v, d) pixels + mm to camera-frame (x, y, z) mm (inverse of eqs. 4.3-4.5)."""
        uvd = np.asarray(uvd, dtype=np.float64)
        u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
        x = (u - self.cx) * d / self.fx
        y = (self.cy - v) * d / self.fy
        return np.stack([x, y, d], axis=-1)

    def xyz_to_uvd(self, xyz: np.ndarray) -> np.ndarray:
        """Project camera-frame (x, y, z) mm to (u, v, d): eq. 4.3 u = fx x / z + cx, eq. 4.4 v = cy - fy y / z (y
        flipped), eq. 4.5 d = z."""
        xyz = np.asarray(xyz, dtype=np.float64)
        x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
        u = x * self.fx / z + self.cx
        v = self.cy - y * self.fy / z
        return np.stack([u, v, z], axis=-1)


NYU_CAMERA = Camera()
