"""Left hands: --hand left mirrors the frame, predicts and mirrors the joints back; auto decides per frame."""
import json

import numpy as np
import pytest

from hpe.camera import NYU_CAMERA
from hpe.nyu import EVAL_JOINTS, NYUSplit, read_depth
from hpe.predict import FIT_CAP_MM, Frame, mirror_frame, predict, skeleton_fit
from hpe.train import train


@pytest.fixture(scope="module")
def run(synthetic_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("hands") / "run"
    train({"data": str(synthetic_h5), "out": str(out), "width": 0.125, "fc_units": 64, "input_size": 32,
           "batch_size": 8, "max_epochs": 2, "limit_train": 16, "require_learning": False, "progress": "none",
           "device": "cpu"})
    return out


def test_the_mirror_is_x_to_minus_x_and_its_own_inverse():
    rng = np.random.default_rng(0)
    depth = rng.uniform(500, 900, size=(480, 640)).astype(np.float32)
    f = Frame(None, depth, None, NYU_CAMERA, np.array([100.0, 200.0, 700.0]))
    m = mirror_frame(f)
    np.testing.assert_array_equal(m.depth[:, 0], depth[:, -1])
    uvd = np.array([[10.0, 20.0, 600.0], [400.0, 300.0, 800.0]])
    mirrored_uvd = np.c_[639 - uvd[:, 0], uvd[:, 1:]]
    xyz, mxyz = f.camera.uvd_to_xyz(uvd), m.camera.uvd_to_xyz(mirrored_uvd)
    np.testing.assert_allclose(mxyz, xyz * [-1, 1, 1], atol=1e-9)
    assert m.centre_uvd[0] == 539.0
    back = mirror_frame(m)
    np.testing.assert_array_equal(back.depth, depth)
    assert back.camera == f.camera and np.array_equal(back.centre_uvd, f.centre_uvd)


def test_the_true_skeleton_explains_the_hand_better_than_its_mirror_image(synthetic_root):
    split = NYUSplit(synthetic_root, "test")
    wins = 0
    for i in range(8):
        gt = split.joints.xyz[i, list(EVAL_JOINTS)]
        f = Frame(split.depth_path(i + 1), read_depth(split.depth_path(i + 1)).astype(np.float32), None, NYU_CAMERA)
        mirrored = gt.copy()  # the same pose mirrored about the palm: a left hand where a right one is seen
        mirrored[:, 0] = 2 * gt[-1, 0] - gt[:, 0]
        true_fit = skeleton_fit(f, gt, gt[-1], 300.0)
        assert true_fit < FIT_CAP_MM  # the forearm inside the cube is far from every bone
        wins += true_fit < skeleton_fit(f, mirrored, gt[-1], 300.0)
    assert wins >= 7
    empty = Frame(None, np.zeros((480, 640), np.float32), None, NYU_CAMERA)
    assert skeleton_fit(empty, gt, gt[-1], 300.0) == FIT_CAP_MM


def test_left_on_mirrored_frames_equals_right_on_originals(run, synthetic_root, tmp_path):
    """Mirroring a mirrored frame gives the original back, so --hand left on mirrored frames must reproduce
    --hand right on the originals, mirrored (to float32 precision: 0.01 px)."""
    files = [synthetic_root / "test" / f"depth_1_{i:07d}.png" for i in (1, 2, 3)]
    mirrored = tmp_path / "mirrored"
    mirrored.mkdir()
    for f in files:
        np.save(mirrored / f"{f.stem}.npy", read_depth(f)[:, ::-1].astype(np.float32))
    right = predict(run, [str(f) for f in files], tmp_path / "r", progress=False)
    left = predict(run, [str(mirrored)], tmp_path / "l", progress=False, hand="left", overlay=True)
    for a, b in zip(right, left):
        np.testing.assert_allclose(np.c_[639 - np.array(b["joints_uvd"])[:, 0], np.array(b["joints_uvd"])[:, 1:]],
                                   a["joints_uvd"], atol=0.01)  # float32 crops: 1e-3 px
        assert b["hand"] == "left" and a["hand"] == "right"
    assert len(list((tmp_path / "l" / "overlays").glob("*-pose.png"))) == 3


def test_auto_decides_per_frame_and_records_it(run, synthetic_root, tmp_path, capsys):
    from hpe.cli import main
    frame = synthetic_root / "test" / "depth_1_0000001.png"
    assert main(["predict", str(frame), "--run", str(run), "--out", str(tmp_path / "a"), "--hand", "auto",
                 "--quiet"]) == 0
    rec = json.loads((tmp_path / "a" / "predictions.json").read_text())[0]
    fit = rec["hand_fit_mm"]
    assert rec["hand"] == min(fit, key=fit.get) and set(fit) == {"left", "right"}
    with pytest.raises(SystemExit):
        main(["predict", str(frame), "--run", str(run), "--out", str(tmp_path / "b"), "--hand", "both"])
    assert "invalid choice: 'both'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--hand"):
        predict(run, [str(frame)], tmp_path / "c", hand="both", progress=False)


def test_overlay_names_the_fingers_the_frame_and_the_centre(tmp_path, monkeypatch):
    import hpe.plots
    from hpe.predict import _overlay
    seen = {}
    real = hpe.plots.plt.close

    def spy(fig):
        seen["labels"] = fig.axes[0].get_legend_handles_labels()[1]
        seen["title"] = fig.axes[0].get_title()
        real(fig)
    monkeypatch.setattr(hpe.plots.plt, "close", spy)
    uvd = np.c_[np.linspace(200, 300, 14), np.linspace(150, 250, 14), np.full(14, 700.0)]
    _overlay(tmp_path / "depth_1_0000007-pose.png", np.full((480, 640), 700.0, np.float32), uvd,
             np.array([250.0, 200.0, 700.0]), "left hand")
    assert seen["labels"][:6] == ["thumb", "index", "middle", "ring", "pinky", "palm"]
    assert seen["labels"][6].startswith("crop centre (250, 200, 700 mm)")
    assert seen["title"] == "depth_1_0000007 (left hand)"
    assert (tmp_path / "depth_1_0000007-pose.png").is_file()
