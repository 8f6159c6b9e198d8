"""Figures of the thesis (matplotlib): PNG at 300 dpi, PDF with TrueType fonts, the plotted numbers beside them
as CSV (tables also as Markdown and LaTeX).  Point clouds are rasterised inside the vector figures."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hpe.atomic import atomic_path, write_text  # noqa: E402
from hpe.camera import NYU_CAMERA, Camera  # noqa: E402
from hpe.crop import crop_hand, hand_mask, normalise_joints, standardise_rgb  # noqa: E402
from hpe.metrics import THRESHOLDS, success_rate  # noqa: E402
from hpe.nyu import EVAL_NAMES, PALM_SLOT, SKELETON  # noqa: E402

plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 300, "figure.dpi": 100})
GT_COLOUR, PRED_COLOUR = "tab:blue", "tab:red"
SUCCESS_LABEL = {"max": "Fraction of frames within distance / %",
                 "mean": "Frames whose mean joint error is within distance / %",
                 "joint": "Fraction of joints within distance / %"}


def with_ext(prefix: Path, ext: str) -> Path:
    """``prefix`` + "." + ext (prefixes like "fig4.7" contain dots, so Path.with_suffix would cut them)."""
    return Path(f"{prefix}.{ext}")


def save(fig, prefix: Path) -> list[Path]:
    """Write PNG and PDF atomically; returns the paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        with atomic_path(with_ext(prefix, ext)) as tmp:
            fig.savefig(tmp, bbox_inches="tight")
        out.append(with_ext(prefix, ext))
    plt.close(fig)
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buf.getvalue())


def write_table(prefix: Path, header: list[str], rows: list[list], caption: str = "") -> list[Path]:
    """The same table as CSV, Markdown and LaTeX (booktabs)."""
    write_csv(with_ext(prefix, "csv"), header, rows)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(map(str, r)) + " |"
                                                                           for r in rows]
    write_text(with_ext(prefix, "md"), (f"{caption}\n\n" if caption else "") + "\n".join(md) + "\n")
    esc = lambda x: str(x).replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    tex = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
           " & ".join(map(esc, header)) + r" \\", r"\midrule"] + [" & ".join(map(esc, r)) + r" \\" for r in rows]
    tex += [r"\bottomrule", r"\end{tabular}"] + ([rf"\caption{{{esc(caption)}}}"] if caption else []) + [r"\end{table}"]
    write_text(with_ext(prefix, "tex"), "\n".join(tex) + "\n")
    return [with_ext(prefix, e) for e in ("csv", "md", "tex")]


def draw_skeleton(ax, pts2d: np.ndarray, colour: str, label: str | None = None, lw: float = 2.0) -> None:
    for a, b in SKELETON:
        ax.plot(pts2d[[a, b], 0], pts2d[[a, b], 1], "-", color=colour, lw=lw)
    ax.plot(pts2d[:, 0], pts2d[:, 1], "o", color=colour, ms=3, label=label)


def _label_positions(pts: np.ndarray, centre: np.ndarray, offset: float, gap: float, bounds: float) -> np.ndarray:
    """Label anchors pushed out from ``centre`` and then apart from each other (a few rounds of pairwise
    repulsion), so that no two labels overlap."""
    d = pts - centre
    n = np.linalg.norm(d, axis=1, keepdims=True)
    pos = pts + offset * np.where(n > 1e-6, d / np.maximum(n, 1e-6), [[0, -1]])
    for _ in range(200):
        diff = pos[:, None] - pos[None]
        dist = np.linalg.norm(diff, axis=-1) + np.eye(len(pos)) * 1e9
        close = dist < gap
        if not close.any():
            break
        push = (diff / np.maximum(dist, 1e-6)[..., None] * (gap - np.minimum(dist, gap))[..., None] * close[..., None])
        pos = np.clip(pos + 0.5 * push.sum(axis=1), 2, bounds - 2)
    return pos


def figure_frame(depth_mm: np.ndarray, rgb: np.ndarray, joints_uvd: np.ndarray, prefix: Path, cube: float = 300.0,
                 size: int = 128, rgb_mean=None, rgb_std=None, stats_source: str = "this frame",
                 title: str = "", camera: Camera = NYU_CAMERA) -> list[Path]:
    """Figures 4.1 and 4.2 for one frame: raw depth with the annotated pose, the normalised depth crop with the
    normalised joints, and the masked RGB crop standardised per channel (eqs. 4.10, 4.11, 4.12) with the
    statistics named by ``stats_source`` (the frame's own when no mean/std is given)."""
    centre_uvd = np.asarray(joints_uvd[PALM_SLOT], np.float64)
    crop = crop_hand(depth_mm, centre_uvd, cube, size, rgb, camera)
    mask = hand_mask(crop.depth)
    masked = crop.rgb.astype(np.float32) * mask[..., None]
    mean = np.asarray(rgb_mean if rgb_mean is not None else masked.reshape(-1, 3).mean(0))
    std = np.asarray(rgb_std if rgb_std is not None else masked.reshape(-1, 3).std(0) + 1e-6)
    rgb_norm = standardise_rgb(crop.rgb, mask, mean, std)
    norm = normalise_joints(camera.uvd_to_xyz(joints_uvd), camera.uvd_to_xyz(centre_uvd), cube)
    in_crop = (crop.transform @ np.c_[joints_uvd[:, :2], np.ones(len(joints_uvd))].T).T[:, :2]

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), layout="constrained")
    shown = np.where((depth_mm > 0) & (depth_mm < 2000), depth_mm, np.nan)
    im = axes[0].imshow(shown, cmap="viridis")
    fig.colorbar(im, ax=axes[0], fraction=0.035, label="depth / mm")
    draw_skeleton(axes[0], joints_uvd, "red", lw=1.5)
    axes[0].set_title("(a) raw depth, annotated pose", fontsize=10)
    im = axes[1].imshow(crop.depth, cmap="gray", vmin=-1, vmax=1)
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="normalised depth")
    draw_skeleton(axes[1], in_crop, "red", lw=1.5)
    labels = _label_positions(in_crop, in_crop[PALM_SLOT], 0.07 * size, 0.075 * size, size)
    for j, name in enumerate(EVAL_NAMES):
        axes[1].plot(*np.c_[in_crop[j], labels[j]], "-", color="yellow", lw=0.5)
        axes[1].text(*labels[j], name, fontsize=6.5, color="yellow", ha="center", va="center",
                     bbox={"boxstyle": "round,pad=0.1", "fc": "black", "ec": "none", "alpha": 0.55})
    axes[1].set_title(f"(b) normalised depth, {size}x{size} (eq. 4.6)", fontsize=10)
    # Shown over the hand's range (the masked-out background would stretch it), the background black.
    lo, hi = np.percentile(rgb_norm[mask], [1, 99]) if mask.any() else (rgb_norm.min(), rgb_norm.max())
    axes[2].imshow(np.clip((rgb_norm - lo) / max(hi - lo, 1e-6), 0, 1) * mask[..., None])
    axes[2].set_title(f"(c) masked RGB, standardised with\n{stats_source} statistics (eqs. 4.10-4.12)", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    paths = save(fig, prefix)
    write_csv(with_ext(prefix, "csv"), ["joint", "u", "v", "d", "x_norm", "y_norm", "z_norm"],
              [[n, *np.round(joints_uvd[j], 3), *np.round(norm[j], 5)] for j, n in enumerate(EVAL_NAMES)])
    return paths


def figure_compare(errors: dict[str, np.ndarray], prefix: Path, title: str = "", notes: list[str] | None = None,
                   success: str = "max", highlight: list[str] | None = None) -> list[Path]:
    """Figures 4.7-4.9: (a) success rate over 0..80 mm, (b) mean error per joint with an Avg bar.

    With ``highlight`` (a leaderboard of many methods) the highlighted methods are drawn in colour and the others
    in grey, and (b) becomes one mean-error bar per method, sorted."""
    names = sorted(errors, key=lambda n: errors[n].mean()) if highlight is not None else list(errors)
    many = highlight is not None
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 5.4 if many else 4.8),
                               gridspec_kw={"width_ratios": [1, 1.25 if many else 1.6]})
    colours = dict(zip([n for n in names if not many or n in highlight], plt.cm.tab10.colors * 3))
    grey = []
    for name in names:
        own = not many or name in highlight
        curve = 100 * success_rate(errors[name], kind=success)
        a.plot(THRESHOLDS, curve, lw=2.2 if own else 0.9, color=colours.get(name, "0.65"), zorder=3 if own else 2,
               label=name if own or not many else None)
        if many and not own:
            grey.append((name, curve))
    # Each grey curve labelled on itself, at heights spread by rank (best highest): a band without overlaps.
    for (name, curve), y in zip(grey, np.linspace(95, 6, len(grey))):
        a.text(np.interp(y, curve, THRESHOLDS) + 0.8, y, name, fontsize=5.5, color="0.35", va="center")
    a.set_xlabel("Distance threshold / mm")
    a.set_ylabel(SUCCESS_LABEL[success])
    a.set_xlim(0, 80)
    a.set_ylim(0, 100)
    a.grid(alpha=0.3)
    a.legend(loc="lower right", fontsize=8)
    a.set_title("(a) Success rate", fontsize=10)
    if many:
        means = [errors[n].mean() for n in names]
        b.barh(range(len(names)), means, color=[colours.get(n, "0.7") for n in names])
        b.set_yticks(range(len(names)), names, fontsize=7)
        b.invert_yaxis()
        b.set_xlabel("Mean joint error / mm")
        for i, v in enumerate(means):
            b.text(v, i, f" {v:.2f}", va="center", fontsize=6.5)
        b.grid(axis="x", alpha=0.3)
        b.set_title("(b) Mean joint error", fontsize=10)
    else:
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
        b.set_title("(b) Mean joint error", fontsize=10)
    if title:
        fig.suptitle(title)
    if notes:
        fig.text(0.01, -0.02, "\n".join(notes), fontsize=8, va="top")
    paths = save(fig, prefix)
    write_csv(with_ext(prefix, "csv"), ["method", "Avg_mm"] + [f"{n}_mm" for n in EVAL_NAMES]
              + [f"success_{t}mm" for t in THRESHOLDS],
              [[n, f"{errors[n].mean():.4f}"] + [f"{v:.4f}" for v in errors[n].mean(0)]
               + [f"{v:.4f}" for v in success_rate(errors[n], kind=success)] for n in names])
    return paths


def figure_table(rows: list[list], header: list[str], prefix: Path, title: str = "") -> list[Path]:
    """A rendered table (table 4.3) plus its CSV, Markdown and LaTeX."""
    fig, ax = plt.subplots(figsize=(1.3 * len(header) + 1, 0.42 * (len(rows) + 2)))
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    t.scale(1, 1.3)
    if title:
        ax.set_title(title, fontsize=10)
    return save(fig, prefix) + write_table(prefix, header, rows, title)


def _equal_3d(ax, pts: np.ndarray) -> None:
    lo, hi = pts.min(0), pts.max(0)
    mid, half = (lo + hi) / 2, max((hi - lo).max() / 2, 1.0)
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_zlim(mid[2] - half, mid[2] + half)
    ax.set_box_aspect((1, 1, 1))


def figure_qualitative(depth_crops: np.ndarray, gt_norm: np.ndarray, pred_norm: np.ndarray, transforms: np.ndarray,
                       gt_uvd: np.ndarray, pred_uvd: np.ndarray, centre_xyz: np.ndarray, cube: np.ndarray,
                       frames: np.ndarray, prefix: Path, title: str = "", camera: Camera = NYU_CAMERA) -> list[Path]:
    """Figures 4.10/4.11: per frame, 2D (depth crop, ground truth blue, prediction red) and 3D (point cloud from
    the crop's depth through the camera, eqs. 4.3, 4.4, 4.5, with both skeletons), labelled with the frame."""
    n = len(depth_crops)
    fig = plt.figure(figsize=(8.5, 3.9 * n), layout="constrained")
    for i in range(n):
        ax = fig.add_subplot(n, 2, 2 * i + 1)
        ax.imshow(depth_crops[i], cmap="gray", vmin=-1, vmax=1)
        for uvd, colour in ((gt_uvd[i], GT_COLOUR), (pred_uvd[i], PRED_COLOUR)):
            p = (transforms[i] @ np.c_[uvd[:, :2], np.ones(len(uvd))].T).T[:, :2]
            draw_skeleton(ax, p, colour)
        ax.set_xticks([])
        ax.set_yticks([])
        err = np.linalg.norm((pred_norm[i] - gt_norm[i]) * cube[i] / 2, axis=-1).mean()
        ax.set_title(f"test frame {int(frames[i])}: 2D (mean error {err:.1f} mm)", fontsize=9)
        ax3 = fig.add_subplot(n, 2, 2 * i + 2, projection="3d")
        # Point cloud: every hand pixel of the crop back to image (u, v) via the inverse crop transform, then xyz.
        rows, cols = np.nonzero(depth_crops[i] < 1)
        uv = (np.linalg.inv(transforms[i]) @ np.c_[cols, rows, np.ones(len(cols))].T).T[:, :2]
        cloud = camera.uvd_to_xyz(np.c_[uv, depth_crops[i][rows, cols] * cube[i] / 2 + centre_xyz[i, 2]])
        ax3.scatter(cloud[:, 0], cloud[:, 2], cloud[:, 1], c=cloud[:, 2], s=1, cmap="viridis", alpha=0.5,
                    rasterized=True)
        skel = []
        for norm, colour in ((gt_norm[i], GT_COLOUR), (pred_norm[i], PRED_COLOUR)):
            xyz = norm * cube[i] / 2 + centre_xyz[i]
            skel.append(xyz)
            for a, b in SKELETON:
                ax3.plot(xyz[[a, b], 0], xyz[[a, b], 2], xyz[[a, b], 1], "-", color=colour, lw=2)
        _equal_3d(ax3, np.concatenate([cloud, *skel])[:, [0, 2, 1]])
        ax3.set_xlabel("x / mm", fontsize=7, labelpad=-2)
        ax3.set_ylabel("z / mm", fontsize=7, labelpad=-2)
        ax3.set_zlabel("y / mm", fontsize=7, labelpad=-2)
        ax3.tick_params(labelsize=6)
        ax3.view_init(elev=15, azim=-70)
        ax3.set_title(f"test frame {int(frames[i])}: 3D", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return save(fig, prefix)
