"""Figures for a page: each figure at most 6.5 in wide (read from its PDF's media box), fonts 7-9 pt, the
success-rate definition on the axis, and a leaderboard of 26 curves without overlapping labels or warnings."""
import json
import re
import warnings

import h5py
import numpy as np
import pytest

from hpe import plots
from hpe.baselines import bundled
from hpe.cli import main
from hpe.nyu import EVAL_NAMES

MAX_WIDTH_IN = {"text": 6.5, "column": 3.5}


def pdf_size_in(path) -> tuple[float, float]:
    """(width, height) in inches from the PDF's /MediaBox (points)."""
    box = re.search(rb"/MediaBox\s*\[\s*([-\d.\s]+)\]", path.read_bytes())
    x0, y0, x1, y1 = map(float, box.group(1).split())
    return (x1 - x0) / 72, (y1 - y0) / 72


@pytest.fixture
def captured(monkeypatch):
    """Every figure handed to plots.save, drawn, before it is closed."""
    figs = []
    real = plots.save

    def save(fig, prefix):
        fig.canvas.draw()
        figs.append(fig)
        return real(fig, prefix)
    monkeypatch.setattr(plots, "save", save)
    return figs


def font_sizes(fig) -> set[float]:
    from matplotlib.text import Text
    return {round(t.get_fontsize(), 1) for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()}


def check_page(paths, figs, width):
    pdf = next(p for p in paths if str(p).endswith(".pdf"))
    w, _ = pdf_size_in(pdf)
    assert w <= MAX_WIDTH_IN[width], (pdf, w)
    assert w >= 0.5 * plots.WIDTHS[width], (pdf, w)  # drawn at the page size, not shrunk
    sizes = set().union(*(font_sizes(f) for f in figs))
    assert sizes and min(sizes) >= 7 and max(sizes) <= 9, sizes


def fake_errors(n_methods, rng, frames=300):
    return {f"method-{i:02d}": rng.gamma(3, (8 + i) / 3, size=(frames, 14)) for i in range(n_methods)}


@pytest.mark.parametrize("width", ["text", "column"])
def test_compare_figure_fits_and_names_its_success_definition(tmp_path, captured, width):
    rng = np.random.default_rng(0)
    for kind, words in (("max", "max joint error"), ("mean", "mean joint error"), ("joint", "Joints with error")):
        captured.clear()
        paths = plots.figure_compare(fake_errors(5, rng), tmp_path / f"c-{kind}", "Figure 4.9: a title long enough "
                                     "to need wrapping at column width", notes=["a note " * 30], success=kind,
                                     width=width)
        check_page(paths, captured, width)
        assert words in captured[0].axes[0].get_ylabel()
        assert f"success_{kind}_20mm" in (tmp_path / f"c-{kind}.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("width", ["text", "column"])
def test_leaderboard_of_24_methods_and_2_runs(tmp_path, captured, width):
    rng = np.random.default_rng(1)
    errors = fake_errors(24, rng)
    errors["Depth-Net (ours)"] = rng.gamma(3, 12 / 3, size=(300, 14))
    errors["Fuse-Net (ours)"] = rng.gamma(3, 11 / 3, size=(300, 14))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" and the like
        paths = plots.figure_compare(errors, tmp_path / "lb", "NYU test set", highlight=["Depth-Net (ours)",
                                     "Fuse-Net (ours)"], width=width)
    check_page(paths, captured, width)
    fig = captured[0]
    curves = fig.axes[0]
    assert curves.get_legend() is None and not fig.legends  # no (empty) legend box
    labels = [t for t in curves.texts]
    names = [t.get_text() for t in labels]
    assert "Depth-Net (ours)" in names and "Fuse-Net (ours)" in names
    assert sum(n.startswith("method-") for n in names) == 5  # the best few of the field, not all 24
    assert {"method-00", "method-01"} <= set(names)
    boxes = [t.get_window_extent() for t in labels]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (names[i], names[j])
    runs = [t for t in labels if "ours" in t.get_text()]
    assert all(t.get_color() != labels[-1].get_color() or t is labels[-1] for t in runs)


@pytest.mark.parametrize("width", ["text", "column"])
def test_frame_table_and_qualitative_figures_fit(tmp_path, captured, synthetic_h5, width):
    from hpe.nyu import read_depth, read_joints_txt, read_rgb
    depth, rgb = bundled("sample/depth_1_0000001.png"), bundled("sample/rgb_1_0000001.png")
    uvd = read_joints_txt(bundled("nyu_test_groundtruth_label.txt"), role="label")[0]
    check_page(plots.figure_frame(read_depth(depth, 1), read_rgb(rgb, 1), uvd, tmp_path / "f", title="NYU test "
                                  "frame 1 (real)", width=width), captured, width)
    captured.clear()
    rows = [[f"Net{i}", "0.00366", "0.00447", "0.00670", "0.00366", "0.00447"] for i in range(1, 10)]
    check_page(plots.figure_table(rows, ["ConvNet", "Training MSE", "Validation MSE", "Validation loss (eq. 4.14)",
                                         "thesis training", "thesis validation"], tmp_path / "t",
                                  "Table 4.3: normalised MSE per coordinate", width=width), captured, width)
    captured.clear()
    with h5py.File(synthetic_h5) as h5:
        g = h5["test"]
        pick = [0, 3, 6, 9]
        pred = g["joints"][pick] + np.random.default_rng(2).normal(0, 0.05, size=g["joints"][pick].shape)
        paths = plots.figure_qualitative(g["depth"][pick].astype(np.float32), g["joints"][pick], pred,
                                         g["transform"][pick], g["joints_uvd"][pick], g["joints_uvd"][pick],
                                         g["centre_xyz"][pick], g["cube"][pick], g["frame"][pick], tmp_path / "q",
                                         "Figure 4.10: test subject 1", width=width)
    check_page(paths, captured, width)
    ax3 = [a for a in captured[0].axes if a.name == "3d"]
    assert ax3 and all(not a.computed_zorder for a in ax3)  # skeletons drawn over the point cloud
    for a in ax3:  # tick labels of one 3D axis do not overlap each other
        for axis in (a.xaxis, a.yaxis, a.zaxis):
            boxes = [t.get_window_extent() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            assert all(not b1.overlaps(b2) for i, b1 in enumerate(boxes) for b2 in boxes[i + 1:])


def test_figure_command_width_option(tmp_path, capsys):
    assert main(["figure", "compare", "--bundled", "DeepPrior", "--bundled", "Feedback", "--width", "column",
                 "--out", str(tmp_path / "c")]) == 0
    assert pdf_size_in(tmp_path / "c.pdf")[0] <= MAX_WIDTH_IN["column"]
    out = capsys.readouterr().out
    assert "success: the share of frames whose worst (max) joint error is within 20 mm" in out
    with pytest.raises(SystemExit):  # argparse: one usage line naming --width and its choices
        main(["figure", "frame", "--width", "page", "--out", str(tmp_path / "f")])
    assert "--width: invalid choice: 'page'" in capsys.readouterr().err


def test_figure_commands_of_the_reproduce_targets(tiny_runs, synthetic_h5, synthetic_root, tmp_path, capsys):
    """What `make reproduce-fig4.1 / 4.9 / 4.10` run, in-process (the e2e test checks their wiring with make -n):
    a synthetic frame with its joint_data.mat and the training split's colour statistics, the qualitative figures
    of a run on its own data, and the comparison with the bundled baselines and a note."""
    root = synthetic_root / "test"
    assert main(["figure", "frame", "--depth", str(root / "depth_1_0000001.png"), "--rgb", str(root / "rgb_1_0000001.png"),
                 "--joints-mat", str(root / "joint_data.mat"), "--frame", "1", "--stats", str(synthetic_h5),
                 "--out", str(tmp_path / "frame")]) == 0
    assert (tmp_path / "frame.png").is_file() and (tmp_path / "frame.pdf").is_file()
    assert main(["figure", "qualitative", "--run", str(tiny_runs / "done"), "--data", str(synthetic_h5),
                 "--out", str(tmp_path / "q")]) == 0
    written = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert any(w.endswith("fig4.10-subject1.png") for w in written) and any(w.endswith("-subject2.pdf") for w in written)
    assert main(["figure", "compare", "--bundled", "DeepPrior", "--bundled", "Feedback", "--note", "ours are not shown",
                 "--out", str(tmp_path / "c")]) == 0
    doc = json.loads((tmp_path / "c.json").read_text())
    assert set(doc["methods"]) == {"DeepPrior", "Feedback"} and round(doc["methods"]["Feedback"]["mean_mm"], 3) == 15.973


def test_every_success_axis_names_its_definition():
    assert set(plots.SUCCESS_LABEL) == {"max", "mean", "joint"}
    assert all(("max" in v or "mean" in v or "Joints" in v) for v in plots.SUCCESS_LABEL.values())
    assert len(EVAL_NAMES) == 14
