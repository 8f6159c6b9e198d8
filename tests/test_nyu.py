import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from hpe import DataError
from hpe.nyu import (
    EVAL_JOINTS,
    EVAL_NAMES,
    JOINT_NAMES,
    NYUSplit,
    decode_depth,
    encode_depth,
    parse_joint_order,
    read_depth,
    read_rgb,
    subjects_of,
    to_kit_order,
)


def test_joint_tables():
    assert len(JOINT_NAMES) == 36 and JOINT_NAMES[0] == "F1_KNU3_A" and JOINT_NAMES[32] == "PALM_3"
    assert EVAL_JOINTS == (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
    assert EVAL_NAMES[0] == "P1" and EVAL_NAMES[-1] == "C"


def test_depth_encoding_round_trip():
    d = np.array([[0, 1, 255, 256, 2001, 65535]], np.uint16)
    assert (decode_depth(encode_depth(d)) == d).all()


def test_real_sample_frame(sample_frame):
    d = read_depth(sample_frame[0])
    assert d.shape == (480, 640) and d.dtype == np.uint16
    assert d[268, 210] == 752  # FACTS.md: the palm centre's pixel reads 752 mm
    assert (d == 2001).mean() > 0.5  # background
    assert read_rgb(sample_frame[1]).shape == (480, 640, 3)


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


def test_xyz_that_disagrees_with_uvd_is_refused_naming_the_frame(broken_root):
    m = loadmat(broken_root / "train" / "joint_data.mat")
    m["joint_xyz"][0, 11, :, 0] += 30.0  # a shifted frame 12
    savemat(broken_root / "train" / "joint_data.mat", {k: v for k, v in m.items() if not k.startswith("__")})
    with pytest.raises(DataError, match="frame 12: joint_xyz differs from joint_uvd through the camera by 30.0 mm"):
        NYUSplit(broken_root, "train")
    assert len(NYUSplit(broken_root, "train", xyz_tolerance_mm=50)) == 40


def test_non_numeric_annotations_are_named(broken_root):
    m = loadmat(broken_root / "train" / "joint_data.mat")
    savemat(broken_root / "train" / "joint_data.mat", {"joint_uvd": np.array(["a", "b"]), "joint_xyz": m["joint_xyz"]})
    with pytest.raises(DataError, match="'joint_uvd' holds <U1 values, not numbers"):
        NYUSplit(broken_root, "train")


def test_unlabelled_folders_point_to_predict(broken_root):
    (broken_root / "test" / "joint_data.mat").unlink()
    with pytest.raises(DataError, match="has no joint_data.mat: .*use `hpe predict`"):
        NYUSplit(broken_root, "test")


def test_subject_rule_and_joint_orders():
    assert list(subjects_of([1, 2440, 2441, 8252])) == [1, 1, 2, 2]
    assert list(subjects_of([1, 5, 6], 5)) == [1, 1, 2]
    j = np.arange(14 * 3, dtype=float).reshape(1, 14, 3)
    order = parse_joint_order("fusenet")
    back = to_kit_order(j[:, [EVAL_JOINTS.index(k) for k in order]], order)
    assert np.array_equal(back, j)
    assert parse_joint_order(",".join(map(str, EVAL_JOINTS))) == EVAL_JOINTS
    with pytest.raises(ValueError, match="each of the 14 evaluation joints"):
        parse_joint_order("0,1,2")
