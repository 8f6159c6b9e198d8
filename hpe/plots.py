"""Figures of the thesis (matplotlib, PNG + PDF, the plotted numbers beside them as CSV)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hpe.camera import NYU_CAMERA  # noqa: E402
from hpe.crop import crop_hand, find_centre, hand_mask, normalise_joints, standardise_rgb  # noqa: E402
from hpe.metrics import THRESHOLDS, success_rate  # noqa: E402
from hpe.nyu import EVAL_NAMES, PALM_SLOT, SKELETON  # noqa: E402

GT_COLOUR, PRED_COLOUR = "tab:blue", "tab:red"


def with_ext(prefix: Path, ext: str) -> Path:
    """``prefix`` + "." + ext (prefixes like "fig4.7" contain dots, so Path.with_suffix would cut them)."""
    return Path(f"{prefix}.{ext}")


def save(fig, prefix: Path) -> list[Path]:
    """Write PNG and PDF atomically; returns the paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = with_ext(prefix, ext)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.{ext}")  # pid: concurrent writers never collide
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
        out.append(path)
    plt.close(fig)
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def draw_skeleton(ax, pts2d: np.ndarray, colour: str, label: str | None = None, lw: float = 2.0) -> None:
    for a, b in SKELETON:
        ax.plot(pts2d[[a, b], 0], pts2d[[a, b], 1], "-", color=colour, lw=lw)
    ax.plot(pts2d[:, 0], pts2d[:, 1], "o", color=colour, ms=3, label=label)


def figure_frame(depth_mm: np.ndarray, rgb: np.ndarray, joints_uvd: np.ndarray, prefix: Path, cube: float = 300.0,
                 size: int = 128, rgb_mean=None, rgb_std=None, title: str = "") -> list[Path]:
    """Figures 4.1 and 4.2 for one frame: raw depth with the annotated pose, the normalised depth crop with the
    normalised joints, and the normalised (masked, standardised) RGB crop beside it."""
    centre_uvd = find_centre(depth_mm, "palm", cube, joints_uvd[PALM_SLOT])
    crop = crop_hand(depth_mm, centre_uvd, cube, size, rgb)
    mask = hand_mask(crop.depth)
    masked = crop.rgb.astype(np.float32) * mask[..., None]
    mean = np.asarray(rgb_mean if rgb_mean is not None else masked.reshape(-1, 3).mean(0))
    std = np.asarray(rgb_std if rgb_std is not None else masked.reshape(-1, 3).std(0) + 1e-6)
    rgb_norm = standardise_rgb(crop.rgb, mask, mean, std)
    xyz = NYU_CAMERA.uvd_to_xyz(joints_uvd)
    centre_xyz = NYU_CAMERA.uvd_to_xyz(centre_uvd)
    norm = normalise_joints(xyz, centre_xyz, cube)
    in_crop = (crop.transform @ np.c_[joints_uvd[:, :2], np.ones(len(joints_uvd))].T).T[:, :2]

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    shown = np.where((depth_mm > 0) & (depth_mm < 2000), depth_mm, np.nan)
    im = axes[0].imshow(shown, cmap="viridis")
    fig.colorbar(im, ax=axes[0], fraction=0.035, label="depth / mm")
    draw_skeleton(axes[0], joints_uvd, "red", lw=1.5)
    axes[0].set_title("(4.1a) raw depth with the annotated pose")
    im = axes[1].imshow(crop.depth, cmap="gray", vmin=-1, vmax=1)
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="normalised depth")
    draw_skeleton(axes[1], in_crop, "red", lw=1.5)
    for j, name in enumerate(EVAL_NAMES):
        axes[1].annotate(name, in_crop[j], fontsize=6, color="yellow", xytext=(2, 2), textcoords="offset points")
    axes[1].set_title(f"(4.1b / 4.2a) normalised depth, {size}x{size}")
    lo, hi = np.percentile(rgb_norm, [1, 99])
    axes[2].imshow(np.clip((rgb_norm - lo) / max(hi - lo, 1e-6), 0, 1))
    axes[2].set_title("(4.2b) masked, standardised RGB")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    paths = save(fig, prefix)
    write_csv(with_ext(prefix, "csv"), ["joint", "u", "v", "d", "x_norm", "y_norm", "z_norm"],
              [[n, *np.round(joints_uvd[j], 3), *np.round(norm[j], 5)] for j, n in enumerate(EVAL_NAMES)])
    return paths


def figure_compare(errors: dict[str, np.ndarray], prefix: Path, title: str = "", notes: list[str] | None = None) -> list[Path]:
    """Figures 4.7-4.9: (a) success rate over 0..80 mm, (b) mean error per joint with an Avg bar."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})
    names = list(errors)
    for name in names:
        a.plot(THRESHOLDS, 100 * success_rate(errors[name]), lw=2, label=name)
    a.set_xlabel("Distance threshold / mm")
    a.set_ylabel("Fraction of frames within distance / %")
    a.set_xlim(0, 80)
    a.set_ylim(0, 100)
    a.grid(alpha=0.3)
    a.legend(loc="lower right", fontsize=8)
    a.set_title("(a) Success rate")
    labels = list(EVAL_NAMES) + ["Avg"]
    x = np.arange(len(labels))
    w = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        e = errors[name]
        b.bar(x + (i - (len(names) - 1) / 2) * w, list(e.mean(0)) + [e.mean()], w, label=name)
    b.set_xticks(x, labels)
    b.set_ylabel("Mean error / mm")
    b.grid(axis="y", alpha=0.3)
    b.legend(fontsize=8)
    b.set_title("(b) Mean joint error")
    if title:
        fig.suptitle(title)
    if notes:
        fig.text(0.01, -0.02, "\n".join(notes), fontsize=8, va="top")
    paths = save(fig, prefix)
    rows = []
    for name in names:
        e = errors[name]
        rows.append([name, f"{e.mean():.4f}"] + [f"{v:.4f}" for v in e.mean(0)]
                    + [f"{v:.4f}" for v in success_rate(errors[name])])
    write_csv(with_ext(prefix, "csv"), ["method", "Avg_mm"] + [f"{n}_mm" for n in EVAL_NAMES]
              + [f"success_{t}mm" for t in THRESHOLDS], rows)
    return paths


def figure_table(rows: list[list], header: list[str], prefix: Path, title: str = "") -> list[Path]:
    """A rendered table (table 4.3) plus its CSV."""
    fig, ax = plt.subplots(figsize=(6, 0.45 * (len(rows) + 2)))
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    t.scale(1, 1.3)
    if title:
        ax.set_title(title, fontsize=10)
    paths = save(fig, prefix)
    write_csv(with_ext(prefix, "csv"), header, rows)
    return paths


def figure_qualitative(depth_crops: np.ndarray, gt_norm: np.ndarray, pred_norm: np.ndarray, transforms: np.ndarray,
                       gt_uvd: np.ndarray, pred_uvd: np.ndarray, centre_xyz: np.ndarray, cube: np.ndarray,
                       prefix: Path, title: str = "") -> list[Path]:
    """Figures 4.10/4.11: per frame, 2D (depth crop, ground truth blue, prediction red) and 3D (point cloud from
    the crop's depth through the camera, with both skeletons)."""
    n = len(depth_crops)
    fig = plt.figure(figsize=(8, 3.6 * n))
    for i in range(n):
        ax = fig.add_subplot(n, 2, 2 * i + 1)
        ax.imshow(depth_crops[i], cmap="gray", vmin=-1, vmax=1)
        for uvd, colour in ((gt_uvd[i], GT_COLOUR), (pred_uvd[i], PRED_COLOUR)):
            p = (transforms[i] @ np.c_[uvd[:, :2], np.ones(len(uvd))].T).T[:, :2]
            draw_skeleton(ax, p, colour)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"2D: frame {i + 1}", fontsize=9)
        ax3 = fig.add_subplot(n, 2, 2 * i + 2, projection="3d")
        # Point cloud: every hand pixel of the crop back to image (u, v) via the inverse crop transform, then xyz.
        rows, cols = np.nonzero(depth_crops[i] < 1)
        inv = np.linalg.inv(transforms[i])
        uv = (inv @ np.c_[cols, rows, np.ones(len(cols))].T).T[:, :2]
        d = depth_crops[i][rows, cols] * cube[i] / 2 + centre_xyz[i, 2]
        cloud = NYU_CAMERA.uvd_to_xyz(np.c_[uv, d])
        sc = ax3.scatter(cloud[:, 0], cloud[:, 2], cloud[:, 1], c=cloud[:, 2], s=1, cmap="viridis", alpha=0.5)
        for norm, colour in ((gt_norm[i], GT_COLOUR), (pred_norm[i], PRED_COLOUR)):
            xyz = norm * cube[i] / 2 + centre_xyz[i]
            for a, b in SKELETON:
                ax3.plot(xyz[[a, b], 0], xyz[[a, b], 2], xyz[[a, b], 1], "-", color=colour, lw=2)
        ax3.set_xlabel("x / mm", fontsize=7)
        ax3.set_ylabel("z / mm", fontsize=7)
        ax3.set_zlabel("y / mm", fontsize=7)
        ax3.tick_params(labelsize=6)
        ax3.view_init(elev=15, azim=-70)
        fig.colorbar(sc, ax=ax3, fraction=0.03, label="depth / mm")
    if title:
        fig.suptitle(title)
    return save(fig, prefix)
