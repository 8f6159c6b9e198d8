import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from hpe import DataError
from hpe.nyu import (EVAL_JOINTS, EVAL_NAMES, JOINT_NAMES, NYUSplit, decode_depth, encode_depth, read_depth,
                     read_rgb)


def test_joint_tables():
    assert len(JOINT_NAMES) == 36 and JOINT_NAMES[0] == "F1_KNU3_A" and JOINT_NAMES[32] == "PALM_3"
    assert EVAL_JOINTS == (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
    assert EVAL_NAMES[0] == "P1" and EVAL_NAMES[-1] == "C"


def test_depth_encoding_round_trip():
    d = np.array([[0, 1, 255, 256, 2001, 65535]], np.uint16)
    assert (decode_depth(encode_depth(d)) == d).all()


def test_real_sample_frame(baselines):
    d = read_depth(baselines / "sample" / "depth_1_0000001.png")
    assert d.shape == (480, 640) and d.dtype == np.uint16
    assert d[268, 210] == 752  # FACTS.md: the palm centre's pixel reads 752 mm
    assert (d == 2001).mean() > 0.5  # background
    assert read_rgb(baselines / "sample" / "rgb_1_0000001.png").shape == (480, 640, 3)


def test_reads_synthetic_unchanged(synthetic_root):
    s = NYUSplit(synthetic_root, "train")
    assert len(s) == 40
    m = loadmat(synthetic_root / "train" / "joint_data.mat")
    assert m["joint_uvd"].shape == (3, 40, 36, 3) and m["joint_xyz"].shape == (3, 40, 36, 3)
    assert m["joint_names"].shape == (1, 36)
    assert Image.open(s.depth_path(1)).mode == "RGB"


@pytest.fixture
def broken_root(synthetic_root, tmp_path):
    root = tmp_path / "nyu"
    shutil.copytree(synthetic_root, root)
    return root


def test_missing_frame_named(broken_root):
    (broken_root / "train" / "depth_1_0000007.png").unlink()
    with pytest.raises(DataError, match="annotates 40 frames but .* holds 39"):
        NYUSplit(broken_root, "train")
    with pytest.raises(DataError, match=r"missing depth frame: .*depth_1_0000007.png \(frame 7\)"):
        read_depth(broken_root / "train" / "depth_1_0000007.png", 7)


def test_corrupt_and_wrong_mode_png(broken_root):
    p = broken_root / "train" / "depth_1_0000003.png"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match=r"corrupt depth PNG: .*depth_1_0000003.png \(frame 3\)"):
        read_depth(p, 3)
    q = broken_root / "train" / "depth_1_0000004.png"
    Image.new("L", (640, 480)).save(q)
    with pytest.raises(DataError, match="must be 8-bit RGB 640x480, got mode L"):
        read_depth(q, 4)


def test_mat_without_keys(broken_root):
    savemat(broken_root / "train" / "joint_data.mat", {"joint_xyz": np.zeros((3, 40, 36, 3))})
    with pytest.raises(DataError, match="lacks the key 'joint_uvd'"):
        NYUSplit(broken_root, "train")


def test_mat_with_nan(broken_root):
    m = loadmat(broken_root / "train" / "joint_data.mat")
    m["joint_uvd"][0, 5, 3, 0] = np.nan
    savemat(broken_root / "train" / "joint_data.mat", {k: v for k, v in m.items() if not k.startswith("__")})
    with pytest.raises(DataError, match="NaN/inf values at frame 6"):
        NYUSplit(broken_root, "train")
