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

# Figures are drawn at the size they are printed: a thesis/paper text width or one column, fonts 7-9 pt at that
# size (so they are never shrunk on the page), lines and markers to match.
WIDTHS = {"text": 6.3, "column": 3.3}  # inches
FONT_PT = 8.0
plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 300, "figure.dpi": 100,
                     "font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT,
                     "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 9,
                     "lines.linewidth": 1.0, "lines.markersize": 3, "axes.linewidth": 0.6, "grid.linewidth": 0.4,
                     "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5,
                     "ytick.major.size": 2.5, "patch.linewidth": 0.5, "legend.handlelength": 1.5,
                     "savefig.pad_inches": 0.02})
GT_COLOUR, PRED_COLOUR = "tab:blue", "tab:red"
# Every success-rate axis says which error a frame is judged by (the evaluation kit's three definitions).
SUCCESS_LABEL = {"max": "Frames with max joint error ≤ d / %",
                 "mean": "Frames with mean joint error ≤ d / %",
                 "joint": "Joints with error ≤ d / %"}
SUCCESS_SHORT = {"max": "max joint error", "mean": "mean joint error", "joint": "per-joint error"}


def fig_width(width: str) -> float:
    """The width in inches of a ``text`` or ``column`` figure."""
    if width not in WIDTHS:
        raise ValueError(f"--width {width}: choose {' or '.join(WIDTHS)}")
    return WIDTHS[width]


def wrap(text: str, width_in: float, pt: float = FONT_PT) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``pt`` points (about 0.5 em a character)."""
    import textwrap
    chars = max(int(width_in * 72 / (0.52 * pt)), 10)
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


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


# The 14 evaluation joints by finger (for overlays): slots of EVAL_NAMES.
FINGER_SLOTS = {"thumb": (8, 9, 10), "index": (6, 7), "middle": (4, 5), "ring": (2, 3), "pinky": (0, 1),
                "palm": (11, 12, 13)}
FINGER_COLOURS = {"thumb": "tab:red", "index": "tab:orange", "middle": "gold", "ring": "tab:green",
                  "pinky": "tab:blue", "palm": "tab:purple"}


def draw_skeleton(ax, pts2d: np.ndarray, colour: str, label: str | None = None, lw: float = 1.0) -> None:
    for a, b in SKELETON:
        ax.plot(pts2d[[a, b], 0], pts2d[[a, b], 1], "-", color=colour, lw=lw)
    ax.plot(pts2d[:, 0], pts2d[:, 1], "o", color=colour, ms=2, label=label)


def draw_hand(ax, pts2d: np.ndarray, lw: float = 1.2) -> None:
    """The skeleton with each finger (and the palm) in its own colour, one legend entry per finger."""
    finger_of = {j: f for f, slots in FINGER_SLOTS.items() for j in slots}
    for a, b in SKELETON:  # a bone takes the colour of its outer joint (the palm's for palm bones)
        outer = b if finger_of[b] != "palm" else a
        ax.plot(pts2d[[a, b], 0], pts2d[[a, b], 1], "-", color=FINGER_COLOURS[finger_of[outer]], lw=lw)
    for finger, slots in FINGER_SLOTS.items():
        ax.plot(pts2d[list(slots), 0], pts2d[list(slots), 1], "o", color=FINGER_COLOURS[finger], ms=3.5,
                mec="white", mew=0.4, label=finger)


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


def spread_1d(targets: np.ndarray, gap: float, lo: float, hi: float) -> np.ndarray:
    """Positions as close as possible to ``targets`` but at least ``gap`` apart inside [lo, hi] (labels at the
    ends of curves): stacked upwards from the lowest, then pushed back down from ``hi`` where they overflow."""
    order = np.argsort(targets)
    y = np.asarray(targets, float)[order].copy()
    y[0] = max(y[0], lo)
    for i in range(1, len(y)):
        y[i] = max(y[i], y[i - 1] + gap)
    if len(y) and y[-1] > hi:
        y[-1] = hi
        for i in range(len(y) - 2, -1, -1):
            y[i] = min(y[i], y[i + 1] - gap)
    out = np.empty_like(y)
    out[order] = y
    return out


def figure_frame(depth_mm: np.ndarray, rgb: np.ndarray, joints_uvd: np.ndarray, prefix: Path, cube: float = 300.0,
                 size: int = 128, rgb_mean=None, rgb_std=None, stats_source: str = "this frame",
                 title: str = "", camera: Camera = NYU_CAMERA, width: str = "text") -> list[Path]:
    """Figures 4.1 and 4.2 for one frame: raw depth with the annotated pose, the normalised depth crop with the
    normalised joints, and the masked RGB crop standardised per channel (eqs. 4.10, 4.11, 4.12) with the
    statistics named by ``stats_source`` (the frame's own when no mean/std is given).  Three panels in a row at
    text width, one above the other at column width."""
    centre_uvd = np.asarray(joints_uvd[PALM_SLOT], np.float64)
    crop = crop_hand(depth_mm, centre_uvd, cube, size, rgb, camera)
    mask = hand_mask(crop.depth)
    masked = crop.rgb.astype(np.float32) * mask[..., None]
    mean = np.asarray(rgb_mean if rgb_mean is not None else masked.reshape(-1, 3).mean(0))
    std = np.asarray(rgb_std if rgb_std is not None else masked.reshape(-1, 3).std(0) + 1e-6)
    rgb_norm = standardise_rgb(crop.rgb, mask, mean, std)
    norm = normalise_joints(camera.uvd_to_xyz(joints_uvd), camera.uvd_to_xyz(centre_uvd), cube)
    in_crop = (crop.transform @ np.c_[joints_uvd[:, :2], np.ones(len(joints_uvd))].T).T[:, :2]

    w = fig_width(width)
    row = width == "text"
    fig, axes = plt.subplots(1 if row else 3, 3 if row else 1, figsize=(w, 2.45 if row else 7.6),
                             layout="constrained")
    panel_w = w / 3.4 if row else w * 0.7  # a panel's share of the width, beside its colour bar
    shown = np.where((depth_mm > 0) & (depth_mm < 2000), depth_mm, np.nan)
    im = axes[0].imshow(shown, cmap="viridis")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.02, label="depth / mm", shrink=0.8)
    draw_skeleton(axes[0], joints_uvd, "red", lw=0.8)
    axes[0].set_title(wrap("(a) raw depth, annotated pose", panel_w * 0.8))
    im = axes[1].imshow(crop.depth, cmap="gray", vmin=-1, vmax=1)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02, label="normalised depth", shrink=0.8)
    draw_skeleton(axes[1], in_crop, "red", lw=0.8)
    labels = _label_positions(in_crop, in_crop[PALM_SLOT], 0.08 * size, 0.11 * size, size)
    for j, name in enumerate(EVAL_NAMES):
        axes[1].plot(*np.c_[in_crop[j], labels[j]], "-", color="yellow", lw=0.4)
        axes[1].text(*labels[j], name, fontsize=7, color="yellow", ha="center", va="center",
                     bbox={"boxstyle": "round,pad=0.05", "fc": "black", "ec": "none", "alpha": 0.55})
    axes[1].set_title(wrap(f"(b) normalised depth, {size}x{size} (eq. 4.6)", panel_w))
    # Shown over the hand's range (the masked-out background would stretch it), the background black.
    lo, hi = np.percentile(rgb_norm[mask], [1, 99]) if mask.any() else (rgb_norm.min(), rgb_norm.max())
    axes[2].imshow(np.clip((rgb_norm - lo) / max(hi - lo, 1e-6), 0, 1) * mask[..., None])
    axes[2].set_title(wrap(f"(c) masked RGB, standardised with {stats_source} statistics (eqs. 4.10-4.12)",
                           panel_w))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(wrap(title, w, 9))
    paths = save(fig, prefix)
    write_csv(with_ext(prefix, "csv"), ["joint", "u", "v", "d", "x_norm", "y_norm", "z_norm"],
              [[n, *np.round(joints_uvd[j], 3), *np.round(norm[j], 5)] for j, n in enumerate(EVAL_NAMES)])
    return paths


def _axes_height_in(fig, ax) -> float:
    fig.canvas.draw()  # settles the constrained layout, so the axes has its final size
    return ax.get_window_extent().height / fig.dpi


def _label_curves(fig, ax, items: list[tuple[str, np.ndarray, str, bool]]) -> None:
    """Names written on their success curves (``(name, curve, colour, bold)``, best first): label k sits where
    its curve crosses a height that falls with k, marked by a dot, the text just right of it on a white ground.
    The heights are at least a text line apart, so no two labels overlap whatever the curves do (near 80 mm
    every method is close to 100 %, so labels at the curves' right ends could not be told apart)."""
    if not items:
        return
    line = 100 * (1.6 * 7 / 72) / max(_axes_height_in(fig, ax), 0.5)  # a 7 pt line and some air, in % units
    step = max(line, min(14.0, 80.0 / max(len(items) - 1, 1)))
    for k, (name, curve, colour, bold) in enumerate(items):
        y = 92.0 - k * step
        if y < 4:
            break
        x = float(np.interp(y, np.maximum.accumulate(curve), THRESHOLDS))
        ax.plot([x], [y], "o", ms=2.5, color=colour, zorder=5)
        ax.text(x + 1.2, y, name, fontsize=7, color=colour, fontweight="bold" if bold else "normal", va="center",
                ha="left", zorder=6, clip_on=False,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})


def figure_compare(errors: dict[str, np.ndarray], prefix: Path, title: str = "", notes: list[str] | None = None,
                   success: str = "max", highlight: list[str] | None = None, width: str = "text",
                   label_best: int = 5) -> list[Path]:
    """Figures 4.7-4.9: (a) success rate over 0..80 mm (its definition, ``success``, on the axis), (b) mean
    error per joint with an Avg bar.

    With ``highlight`` (a leaderboard of many methods) the highlighted methods (your runs) are drawn in colour
    and named at their curve ends, the others in thin grey with only the ``label_best`` best named, and (b)
    becomes one mean-error bar per method, sorted.  Panels side by side at text width, stacked at column width."""
    names = sorted(errors, key=lambda n: errors[n].mean()) if highlight is not None else list(errors)
    many = highlight is not None
    w = fig_width(width)
    row = width == "text"
    n_bars = len(names) if many else 15
    if row:
        h = max(2.7, 0.13 * n_bars + 0.8) if many else 2.7
        fig, (a, b) = plt.subplots(1, 2, figsize=(w, h), layout="constrained",
                                   gridspec_kw={"width_ratios": [1.25, 1] if many else [1, 1.3]})
    else:
        h_b = 0.13 * n_bars + 0.7 if many else 2.2
        fig, (a, b) = plt.subplots(2, 1, figsize=(w, 2.6 + h_b), layout="constrained",
                                   gridspec_kw={"height_ratios": [2.4, h_b]})
    colours = dict(zip([n for n in names if not many or n in highlight], plt.cm.tab10.colors * 3))
    labelled = []
    best = [n for n in names if n not in (highlight or [])][:label_best]
    for name in names:
        own = not many or name in highlight
        curve = 100 * success_rate(errors[name], kind=success)
        a.plot(THRESHOLDS, curve, lw=1.4 if own else 0.6, color=colours.get(name, "0.7"), zorder=3 if own else 2,
               label=name if not many else None)
        if many and (own or name in best):
            labelled.append((name, curve, colours.get(name, "0.25"), own))
    a.set_xlabel("Distance threshold d / mm")
    a.set_ylabel(SUCCESS_LABEL[success])
    a.set_xlim(0, 80)
    a.set_ylim(0, 100)
    a.grid(alpha=0.3)
    a.set_title(f"(a) Success rate ({SUCCESS_SHORT[success]})")
    if many:
        means = [errors[n].mean() for n in names]
        b.barh(range(len(names)), means, color=[colours.get(n, "0.7") for n in names], height=0.75)
        b.set_yticks(range(len(names)), names, fontsize=7)
        for lab, n in zip(b.get_yticklabels(), names):
            if n in colours:
                lab.set_color(colours[n])
                lab.set_fontweight("bold")
        b.invert_yaxis()
        b.set_xlabel("Mean joint error / mm")
        for i, v in enumerate(means):
            b.text(v, i, f" {v:.1f}", va="center", fontsize=7)
        b.set_xlim(0, max(means) * 1.18)
        b.grid(axis="x", alpha=0.3)
        b.set_title("(b) Mean joint error")
    else:
        labels = list(EVAL_NAMES) + ["Avg"]
        x = np.arange(len(labels))
        bw = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            e = errors[name]
            b.bar(x + (i - (len(names) - 1) / 2) * bw, list(e.mean(0)) + [e.mean()], bw, label=name)
        b.set_xticks(x, labels)
        b.tick_params(axis="x", labelsize=7, pad=1)
        b.set_ylabel("Mean error / mm")
        b.grid(axis="y", alpha=0.3)
        b.set_title("(b) Mean joint error")
        # One legend for both panels (same colours), under (b): inside, it would hide curves or bars.
        b.legend(*a.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5 if row else 0.45, -0.1),
                 ncols=min(len(names), 3), frameon=False)
    if title:
        fig.suptitle(wrap(title, w, 9))
    _label_curves(fig, a, labelled)
    if notes:  # under everything (the layout makes room), wrapped to the figure's width
        fig.supxlabel(wrap("\n".join(notes), w - 0.1, 7), fontsize=7, ha="left", x=0.01)
    paths = save(fig, prefix)
    write_csv(with_ext(prefix, "csv"), ["method", "Avg_mm"] + [f"{n}_mm" for n in EVAL_NAMES]
              + [f"success_{success}_{t}mm" for t in THRESHOLDS],
              [[n, f"{errors[n].mean():.4f}"] + [f"{v:.4f}" for v in errors[n].mean(0)]
               + [f"{v:.4f}" for v in success_rate(errors[n], kind=success)] for n in names])
    return paths


def figure_table(rows: list[list], header: list[str], prefix: Path, title: str = "",
                 width: str = "text") -> list[Path]:
    """A rendered table (table 4.3) plus its CSV, Markdown and LaTeX; at most ``width`` wide, 7 pt."""
    w = fig_width(width)
    # A column is as wide as its longest cell or header word; longer headers wrap onto more lines.
    col_chars = [max(max(len(x) for x in str(h).split()), *(len(str(r[i])) for r in rows)) + 2
                 for i, h in enumerate(header)]
    heads = [wrap(str(h), c * 0.52 * 7 / 72, 7) for h, c in zip(header, col_chars)]
    need_in = sum(col_chars) * 0.66 * 7 / 72
    fig_w = min(w, max(need_in, 2.0))
    head_lines = max(h.count("\n") + 1 for h in heads)
    fig_h = 0.2 * (len(rows) + head_lines) + (0.4 if title else 0.1)
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0, 0, 1, 1 - (0.4 if title else 0.1) / fig_h))  # the table fills the width
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=heads, loc="center", cellLoc="center",
                 colWidths=[c / sum(col_chars) for c in col_chars])
    t.auto_set_font_size(False)
    t.set_fontsize(7)
    for (r, _), cell in t.get_celld().items():
        cell.set_linewidth(0.4)
        cell.set_height(0.2 * head_lines / fig.get_figheight() if r == 0 else 0.2 / fig.get_figheight())
    if title:
        fig.suptitle(wrap(title, fig_w), fontsize=8, y=1, va="top")
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
                       frames: np.ndarray, prefix: Path, title: str = "", camera: Camera = NYU_CAMERA,
                       width: str = "text") -> list[Path]:
    """Figures 4.10/4.11: per frame, 2D (depth crop, ground truth blue, prediction red) and 3D (point cloud from
    the crop's depth through the camera, eqs. 4.3, 4.4, 4.5, with both skeletons drawn over it), labelled with
    the frame.  Two frames a row at text width, one at column width; 3D axes in mm from the crop centre."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    n = len(depth_crops)
    w = fig_width(width)
    per_row = 2 if width == "text" else 1
    rows = -(-n // per_row)
    fig = plt.figure(figsize=(w, 1.75 * rows + 0.45), layout="constrained")
    for i in range(n):
        ax = fig.add_subplot(rows, 2 * per_row, 2 * i + 1)
        ax.imshow(depth_crops[i], cmap="gray", vmin=-1, vmax=1)
        for uvd, colour in ((gt_uvd[i], GT_COLOUR), (pred_uvd[i], PRED_COLOUR)):
            p = (transforms[i] @ np.c_[uvd[:, :2], np.ones(len(uvd))].T).T[:, :2]
            draw_skeleton(ax, p, colour)
        ax.set_xticks([])
        ax.set_yticks([])
        err = np.linalg.norm((pred_norm[i] - gt_norm[i]) * cube[i] / 2, axis=-1).mean()
        ax.set_title(f"frame {int(frames[i])}: {err:.1f} mm", fontsize=7)
        # computed_zorder off: the skeletons are drawn after (over) the point cloud, whatever their depth.
        ax3 = fig.add_subplot(rows, 2 * per_row, 2 * i + 2, projection="3d", computed_zorder=False)
        # Point cloud: every hand pixel of the crop back to image (u, v) via the inverse crop transform, then xyz.
        rws, cols = np.nonzero(depth_crops[i] < 1)
        uv = (np.linalg.inv(transforms[i]) @ np.c_[cols, rws, np.ones(len(cols))].T).T[:, :2]
        cloud = camera.uvd_to_xyz(np.c_[uv, depth_crops[i][rws, cols] * cube[i] / 2 + centre_xyz[i, 2]])
        cloud = cloud - centre_xyz[i]
        near, far = (cloud[:, 2].min(), cloud[:, 2].max()) if len(cloud) else (0.0, 1.0)
        # Grey (near = dark), so that the blue and red skeletons keep their colours over it.
        ax3.scatter(cloud[:, 0], cloud[:, 2], cloud[:, 1], c=-cloud[:, 2], s=1.0, cmap="Greys", alpha=0.5,
                    depthshade=False, vmin=-far - 0.2 * (far - near), vmax=-near + 0.6 * (far - near),
                    rasterized=True, zorder=1, linewidths=0)
        skel = []
        for norm, colour in ((gt_norm[i], GT_COLOUR), (pred_norm[i], PRED_COLOUR)):
            xyz = norm * cube[i] / 2
            skel.append(xyz)
            for a, b in SKELETON:
                ax3.plot(xyz[[a, b], 0], xyz[[a, b], 2], xyz[[a, b], 1], "-", color=colour, lw=1.1, zorder=3)
        _equal_3d(ax3, np.concatenate([cloud, *skel])[:, [0, 2, 1]])
        # Seen from azim -70, the x axis ends where the depth axis begins: x's last label and depth's first ran
        # together ("100-100"), so those two are left out.
        for axis, lim, keep in ((ax3.xaxis, ax3.get_xlim(), slice(None, -1)), (ax3.yaxis, ax3.get_ylim(), slice(1, None)),
                                (ax3.zaxis, ax3.get_zlim(), slice(None))):
            ticks = [t for t in MaxNLocator(3, integer=True).tick_values(*lim) if lim[0] <= t <= lim[1]]
            axis.set_ticks(ticks[keep])
        ax3.tick_params(labelsize=7, pad=-2)
        ax3.set_xlabel("x", fontsize=7, labelpad=-8)
        ax3.set_ylabel("z", fontsize=7, labelpad=-8)
        ax3.set_zlabel("y / mm", fontsize=7, labelpad=-7)
        ax3.view_init(elev=15, azim=-70)
        ax3.set_title(f"frame {int(frames[i])}: 3D", fontsize=7)
    fig.legend([Line2D([], [], color=GT_COLOUR), Line2D([], [], color=PRED_COLOUR)], ["ground truth", "prediction"],
               loc="outside lower center", ncols=2, fontsize=7)
    if title:
        fig.suptitle(wrap(title, w, 9), fontsize=9)
    return save(fig, prefix)
