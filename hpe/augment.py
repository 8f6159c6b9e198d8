"""Centre jitter: train on crops whose cube centre is moved by a random offset, so that a net tolerates the
imprecise centre it gets on unlabelled frames (``hpe predict``), as DeepPrior++ trains with translated crops.

A prepared crop spans the cube's front face around centre C (xyz, mm); its canvas coordinate p in [-1, 1]
maps to the image column u = u_C + p (cube/2) fx / Z.  For a new centre C' = C + delta the canvas coordinate q
of the new crop therefore reads the old crop at

    p_x = q_x Z/Z' + (X' Z/Z' - X) / (cube/2),      p_y = q_y Z/Z' - (Y' Z/Z' - Y) / (cube/2)

(the focal lengths cancel), one affine map per frame.  Depth is renormalised around Z' (eq. 4.6 again: the
offset shifts every hand pixel by -dZ/(cube/2); what falls behind the new back face becomes background) and
the targets move by -delta/(cube/2) (eqs. 4.7, 4.8, 4.9 again).  Content outside the old crop is unknown and
becomes background, which is the only approximation.

Scale jitter: a cube of s x cube around the same hand is, once normalised, the hand s times smaller (or larger),
as another subject's would be; the warp's scale becomes s Z/Z', depth and targets are divided by s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_offsets(n: int, sigma_mm: float, generator: torch.Generator, device) -> torch.Tensor:
    """(n, 3) centre offsets in mm: N(0, s^2) per axis with a scale s drawn per crop uniformly in [0, sigma_mm], so
    that most crops stay nearly centred (a net stays precise there) and some move far (it learns to find the hand
    from a coarse centre)."""
    scale = torch.rand(n, 1, generator=generator, device=device) * sigma_mm
    return torch.randn(n, 3, generator=generator, device=device) * scale


def random_scales(n: int, spread: float, generator: torch.Generator, device) -> torch.Tensor:
    """(n,) cube factors uniform in [1 - spread, 1 + spread]."""
    return 1 + (torch.rand(n, generator=generator, device=device) * 2 - 1) * spread


def jitter_centres(depth: torch.Tensor, rgb: torch.Tensor | None, targets: torch.Tensor, centre_xyz: torch.Tensor,
                   cube: torch.Tensor, delta: torch.Tensor, clip: bool = False,
                   scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Crops (N, 1, S, S), RGB (N, 3, S, S) or None and targets (N, 3J) re-centred on centre_xyz + delta (mm), and
    with ``scale`` (N,) cropped with a cube ``scale`` times as large."""
    n = depth.shape[0]
    delta = delta.to(torch.float32)
    c = centre_xyz.to(torch.float32)
    half = (cube.to(torch.float32) / 2).view(n, 1)
    k = torch.ones(n, 1, device=depth.device) if scale is None else scale.to(torch.float32).view(n, 1)
    moved = c + delta
    s = c[:, 2] / moved[:, 2]
    theta = torch.zeros(n, 2, 3, device=depth.device)
    theta[:, 0, 0] = theta[:, 1, 1] = s * k[:, 0]
    theta[:, 0, 2] = (moved[:, 0] * s - c[:, 0]) / half[:, 0]
    theta[:, 1, 2] = -(moved[:, 1] * s - c[:, 1]) / half[:, 0]
    grid = F.affine_grid(theta, list(depth.shape), align_corners=False)
    # Sample (d - 1) so that zero padding means background (+1).
    d = F.grid_sample(depth.float() - 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) + 1
    shifted = ((d - (delta[:, 2:3] / half).view(n, 1, 1, 1)) / k.view(n, 1, 1, 1)).clamp(min=-1)
    d = torch.where((d < 1) & (shifted < 1), shifted, torch.ones_like(d))
    if rgb is not None:
        rgb = F.grid_sample(rgb.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    j = (targets.view(n, -1, 3) - (delta / half).view(n, 1, 3)) / k.view(n, 1, 1)
    if clip:
        j = j.clamp(-1, 1)
    return d, rgb, j.reshape(n, -1)


def jitter_split(data, sigma_mm: float, seed: int, clip: bool = False):
    """A whole split re-centred once with fixed offsets (validation and test data of a centre-refinement net,
    reproducible): crops, targets and the recorded centres move together, the ground truth stays."""
    from hpe.dataset import SplitData
    gen = torch.Generator().manual_seed(seed)
    delta = random_offsets(len(data), sigma_mm, gen, "cpu")
    centre = torch.as_tensor(data.meta["centre_xyz"], dtype=torch.float32)
    depth, rgb, joints = jitter_centres(data.depth, data.rgb, data.joints.reshape(len(data), -1), centre,
                                        torch.as_tensor(data.meta["cube"]), delta, clip)
    meta = {**data.meta, "centre_xyz": data.meta["centre_xyz"] + delta.double().numpy()}
    return SplitData(depth.half(), None if rgb is None else rgb.round().clamp(0, 255).to(torch.uint8),
                     joints.view(data.joints.shape), meta)
