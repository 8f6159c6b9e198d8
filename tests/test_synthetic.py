import json

import numpy as np

from data_prep.synthetic_nyu import SUBJECT2_SCALE, generate
from hpe.nyu import BACKGROUND_MM, NYUSplit, read_depth


def test_layout_subjects_and_determinism(synthetic_root, tmp_path):
    info = json.loads((synthetic_root / "hpe_synthetic.json").read_text())
    assert info["test_subject1_frames"] == 5  # NYU's 2440/8252 proportion of 16 frames
    again = tmp_path / "again"
    generate(again, 40, 16, seed=3, workers=1)
    for name in ("train/depth_1_0000005.png", "test/rgb_1_0000016.png"):
        assert (again / name).read_bytes() == (synthetic_root / name).read_bytes()
    test = NYUSplit(synthetic_root, "test")
    span = lambda i: np.linalg.norm(test.joints.xyz[i, 0] - test.joints.xyz[i, 35])  # fingertip to palm point  # noqa: E731
    # the second subject's hand is smaller: bone lengths scale by 0.87
    bone = lambda i: np.linalg.norm(test.joints.xyz[i, 30] - test.joints.xyz[i, 31])  # noqa: E731
    assert abs(bone(15) / bone(0) - SUBJECT2_SCALE) < 1e-4
    assert span(0) > 0


def test_depth_like_structured_light(synthetic_root):
    s = NYUSplit(synthetic_root, "train")
    d = read_depth(s.depth_path(1))
    assert (d == BACKGROUND_MM).mean() > 0.2
    assert (d == 0).sum() > 20  # holes along silhouettes
    u, v, z = s.joints.uvd[0, 32]
    patch = d[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4]
    assert ((patch > 0) & (patch < 1500)).any() and abs(np.median(patch[patch < 1500]) - z) < 40
