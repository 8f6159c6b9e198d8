"""Issue 20: what the icip2018 profile does point by point like the author's code, the thesis readings made
explicit, and the held-out confirmation of the centre study.  Facts about the author's code are in README
"Profiles and divergences"; these tests pin hpe's behaviour, never call the author's code."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hpe.nyu import NYUSplit

REPO = Path(__file__).resolve().parents[1]
TINY = dict(width=0.125, fc_units=64, input_size=32, batch_size=8, progress="none", device="cpu", max_epochs=1,
            limit_train=16, require_learning=False)


# --- 7. the centre study on frames nobody tuned on -----------------------------------------------------------
def test_synthetic_hand_size_of_a_held_out_set(tmp_path):
    from hpe.synthetic import generate
    root = tmp_path / "held"
    info = generate(root, 1, 4, seed=2027, workers=1, subject2_scale=0.935)
    assert info["subject2_scale"] == 0.935 and json.loads((root / "hpe_synthetic.json").read_text())["seed"] == 2027
    test = NYUSplit(root, "test")
    bone = lambda i: np.linalg.norm(test.joints.xyz[i, 30] - test.joints.xyz[i, 31])  # noqa: E731
    assert info["test_subject1_frames"] == 1 and abs(bone(3) / bone(0) - 0.935) < 1e-4
    with pytest.raises(ValueError, match="subject2-scale"):
        generate(tmp_path / "bad", 1, 4, subject2_scale=3.0)


def test_centre_study_adds_the_held_out_rows(synthetic_root, synthetic_h5, tmp_path):
    from hpe.experiments import centre_study
    from hpe.synthetic import generate
    from hpe.train import train
    train(dict(data=str(synthetic_h5), out=str(tmp_path / "depth"), **TINY))
    held = tmp_path / "held"
    generate(held, 1, 3, seed=2027, workers=1, subject2_scale=0.935)
    rows = centre_study(tmp_path / "depth", synthetic_root, tmp_path / "centres", limit=2, held_out=[held])
    names = [r[0] for r in rows]
    assert names == ["synthetic test"] * 4 + ["held-out (seed 2027, hand 0.935)"] * 4 + ["real NYU frame 1"] * 4
    assert [r[2] for r in rows][4:8] == [2] * 4
    assert all(r[3] == "0.0" and r[6] == "+0.0%" for r in rows if r[1] == "palm")
    with pytest.raises(ValueError, match="is --root itself"):
        centre_study(tmp_path / "depth", synthetic_root, tmp_path / "c2", limit=2, held_out=[synthetic_root])
    same_seed = tmp_path / "same"
    generate(same_seed, 1, 3, seed=3, workers=1, subject2_scale=0.935)  # the fixture's seed
    with pytest.raises(ValueError, match="generated with --root's seed \\(3\\)"):
        centre_study(tmp_path / "depth", synthetic_root, tmp_path / "c2", limit=2, held_out=[same_seed])



def _make_project(tmp_path: Path) -> dict:
    """A copy of the Makefile, experiments/ and data_prep/ to run `make -n` in; returns the environment."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed (apt-get install make; .ci/run does this)")
    shutil.copy(REPO / "Makefile", tmp_path)
    for folder in ("experiments", "data_prep"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return {**os.environ, "PYTHONPATH": str(REPO)}

def test_make_reproduce_centres_evaluates_a_held_out_set(tmp_path):
    env = _make_project(tmp_path)
    r = subprocess.run(["make", "-n", "reproduce-centres", "VENV=none", "PYTHON=python3"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    lines = r.stdout.replace("\\\n", " ").splitlines()
    synth = [line for line in lines if "synthetic_nyu.py" in line and "heldout" in line]
    assert r.returncode == 0 and len(synth) == 1, r.stdout + r.stderr
    assert "--seed 2027" in synth[0] and "--subject2-scale 0.935" in synth[0]
    figure = next(line for line in lines if " -m hpe figure centres" in line)
    assert "--held-out-root data/synthetic-heldout-seed2027-hand0.935" in figure
    r = subprocess.run(["make", "-n", "reproduce-centres", "VENV=none", "PYTHON=python3", "DATA=nyu",
                        "NYU_ROOT=/nowhere"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "--held-out-root" not in r.stdout  # real NYU's test set is held out already


# --- 3. RGB resize: OpenCV's INTER_LINEAR under icip2018, PIL's bilinear under thesis --------------------------
def test_opencv_bilinear_against_values_by_hand():
    from hpe.crop import resize_bilinear_opencv
    row = np.array([[0, 100, 200, 250]], np.uint8)
    # shrinking 4 -> 2: x = 0 samples source 0.5 (between 0 and 100), x = 1 samples 2.5: two taps, no low-pass
    assert resize_bilinear_opencv(row, 2, 1).tolist() == [[50, 225]]
    # enlarging 2 -> 4: samples -0.25 (clamped to the first pixel), 0.25, 0.75, 1.25 (clamped to the last)
    assert resize_bilinear_opencv(np.array([[0, 100]], np.uint8), 4, 1).tolist() == [[0, 25, 75, 100]]
    assert resize_bilinear_opencv(np.array([[0, 1]], np.uint8), 4, 1).tolist() == [[0, 0, 1, 1]]  # 0.75 rounds up
    img = np.array([[0, 40], [200, 120]], np.uint8)
    # 2 x 2 -> 3 x 3: source positions -1/6 (clamped), 1/2, 7/6 (clamped) on each axis
    assert resize_bilinear_opencv(img, 3, 3).tolist() == [[0, 20, 40], [100, 90, 80], [200, 160, 120]]
    rgb = np.stack([img, img // 2, img // 4], axis=-1)  # channels resample independently
    assert resize_bilinear_opencv(rgb, 3, 3)[1, 1].tolist() == [90, 45, 23]


def test_opencv_resize_keeps_detail_that_pil_smooths():
    from PIL import Image

    from hpe.crop import resize_bilinear_opencv
    noise = np.random.default_rng(0).integers(0, 256, (226, 226, 3)).astype(np.uint8)
    pil = np.asarray(Image.fromarray(noise).resize((128, 128), Image.BILINEAR))
    cv = resize_bilinear_opencv(noise, 128, 128)
    assert cv.std() > 45 and pil.std() < 32  # the 48.9 vs 27.9


def test_profiles_resize_rgb_their_way(sample_frame):
    from PIL import Image

    from hpe.crop import CropRules, crop_frame
    from hpe.nyu import read_depth, read_joints_txt
    from hpe.prep import prep_config
    depth = read_depth(sample_frame[0])
    rgb = np.asarray(Image.open(sample_frame[1]).convert("RGB"))
    palm = read_joints_txt(REPO / "hpe/reference/nyu/nyu_test_groundtruth_label.txt.gz")[0][13]
    thesis, icip = prep_config("thesis").rules, prep_config("icip2018").rules
    assert thesis == CropRules() and (thesis.rgb_resize, icip.rgb_resize) == ("pil", "opencv")
    a = crop_frame(depth, rgb, palm, 300.0, 128, rules=thesis)["rgb"]
    b = crop_frame(depth, rgb, palm, 300.0, 128, rules=CropRules(rgb_resize="opencv"))["rgb"]
    assert a.shape == b.shape and not np.array_equal(a, b) and np.abs(a.astype(int) - b).mean() < 20


# --- 4. paste geometry -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("w, h, size, rounded, floored", [
    (227, 225, 128, (128, 127, 0, 0), (128, 126, 0, 1)),    # short side 126.9: rounds to 127 (odd), floors to 126
    (225, 227, 128, (127, 128, 0, 0), (126, 128, 1, 0)),    # the same, portrait
    (227, 226, 128, (128, 127, 0, 0), (128, 127, 0, 1)),    # odd n = 127: (128 - 127) // 2 = 0, 64 - 63 = 1
    (226, 200, 128, (128, 113, 0, 7), (128, 113, 0, 8)),    # odd n = 113: 7 vs 64 - 56 = 8
    (226, 227, 128, (127, 128, 0, 0), (127, 128, 1, 0)),    # portrait, odd n: the x offset follows the same rule
    (200, 226, 128, (113, 128, 7, 0), (113, 128, 8, 0)),    # (a careless user's mutant (size - nw) // 2 survived)
    (200, 100, 128, (128, 64, 0, 32), (128, 64, 0, 32)),    # even n: both rules agree
    (226, 226, 128, (128, 128, 0, 0), (128, 128, 0, 0)),    # square
    (90, 61, 64, (64, 43, 0, 10), (64, 43, 0, 11)),         # another canvas: 32 - 21 = 11
    (90, 61, 65, (65, 44, 0, 10), (65, 44, 0, 10)),         # odd canvas: 65 // 2 - 44 // 2 = 10
])
def test_paste_geometry_round_and_floor(w, h, size, rounded, floored):
    from hpe.crop import paste_geometry
    assert paste_geometry(w, h, size, "round") == rounded
    assert paste_geometry(w, h, size, "floor") == floored


def test_icip2018_pastes_like_the_author(sample_frame):
    from hpe.crop import crop_hand
    from hpe.nyu import read_depth
    from hpe.prep import prep_config
    depth = read_depth(sample_frame[0])
    centre = np.array([210.217, 268.604, 778.299])
    t = crop_hand(depth, centre, 300.0, 128, rules=prep_config("thesis").rules)
    i = crop_hand(depth, centre, 300.0, 128, rules=prep_config("icip2018").rules)
    w, h = int(t.box[2] - t.box[0]), int(t.box[3] - t.box[1])
    assert (w, h) == (227, 226)  # short side 226 * 128 / 227 = 127.4: 127 either way, offset 0 vs 1
    assert (t.depth[0] < 1).any() and (i.depth[0] == 1).all()  # icip2018's first row is canvas background
    assert np.array_equal(t.depth[:127], i.depth[1:])


# --- 5. the author's mask on the real frame ---------------------------------------------------------------------
def test_icip2018_mask_keeps_front_clamped_pixels(sample_frame):
    """The author's mask is d_norm != +-1 compared exactly; with double-precision labels the front face is stored
    in a float32 image and is never exactly -1 after normalising, so front-clamped pixels stay in the mask
    (README).  On the real frame 1 nothing is clamped at all: both rules give the same mask there."""
    from hpe.config import profile_section
    from hpe.crop import crop_hand, hand_mask
    from hpe.nyu import read_depth
    assert profile_section("icip2018", "train")["rgb_mask"] == "hand"
    depth = read_depth(sample_frame[0])
    crop = crop_hand(depth, np.array([210.217, 268.604, 778.299]), 300.0, 128)
    assert (crop.depth == -1).sum() == 0
    assert np.array_equal(hand_mask(crop.depth, "hand"), hand_mask(crop.depth, "hand-not-front"))
    moved = crop_hand(depth, np.array([210.217, 268.604, 900.0]), 300.0, 128)  # front face at 750 mm: clamps
    assert (moved.depth == -1).sum() > 100 and hand_mask(moved.depth, "hand")[moved.depth == -1].all()


# --- 6. the thesis readings: centre depth and RGB statistics ---------------------------------------------------
def test_centre_depth_label_or_image(sample_frame):
    from hpe.crop import CropRules, crop_frame
    from hpe.nyu import read_depth
    from hpe.prep import prep_config
    depth = read_depth(sample_frame[0])
    palm = np.array([210.217, 268.604, 778.299])
    label = crop_frame(depth, None, palm, 300.0, 128)
    image = crop_frame(depth, None, palm, 300.0, 128, rules=CropRules(centre_depth="image"))
    assert label["centre_uvd"][2] == 778.299 and image["centre_uvd"][2] == 752.0  # I(c_m), row 268, column 210
    assert np.allclose(image["centre_uvd"][:2], palm[:2])
    # the cube moves 26 mm towards the camera: the same surface pixel normalises 26/150 further back
    assert abs(float(image["depth"][64, 64]) - float(label["depth"][64, 64]) - 26.3 / 150) < 0.01
    assert prep_config("thesis").centre_depth == "label" == prep_config("icip2018").centre_depth
    hole = depth.copy()
    hole[266:271, 208:213] = 0  # no reading at the centre: the 5 x 5 neighbourhood has none either
    from hpe import DataError
    with pytest.raises(DataError, match="centre_depth 'image'"):
        crop_frame(hole, None, palm, 300.0, 128, rules=CropRules(centre_depth="image"))
    hole = depth.copy()
    hole[268, 210] = 0  # one missing pixel: the median of its valid neighbours
    assert abs(crop_frame(hole, None, palm, 300.0, 128, rules=CropRules(centre_depth="image"))["centre_uvd"][2]
               - 752) < 5


def test_rgb_statistics_readings(synthetic_root, tmp_path):
    import h5py

    from hpe.dataset import open_prepared
    from hpe.prep import prep, prep_config
    out = {}
    for reading in ("masked-crop", "hand-pixels"):
        path = tmp_path / f"{reading}.h5"
        prep(synthetic_root, path, prep_config(size=32, limit=6, workers=1, rgb_stats=reading), progress=False)
        out[reading] = open_prepared(path).attrs
        assert out[reading]["rgb_stats"] == reading
    with h5py.File(tmp_path / "hand-pixels.h5") as h5:
        depth, rgb = h5["train/depth"][:].astype(np.float32), h5["train/rgb"][:].astype(np.float64)
    hand = depth < 1
    pixels = rgb.transpose(1, 0, 2, 3)[:, hand]  # (3, hand pixels of every training crop)
    assert np.allclose(out["hand-pixels"]["rgb_mean"], pixels.mean(axis=1))
    assert np.allclose(out["hand-pixels"]["rgb_std"], pixels.std(axis=1))
    share = hand.mean()  # zeros included: the mean shrinks by the hand's share of the crop
    assert np.allclose(out["masked-crop"]["rgb_mean"], pixels.mean(axis=1) * share)
    assert prep_config("thesis").rgb_stats == "masked-crop"


# --- 1. FusePred-Net trained jointly (icip2018) or independently (thesis) --------------------------------------
def _joint(rgb_channels=4):
    import torch

    from hpe.nets import JointFusePred, NetConfig
    torch.manual_seed(0)
    return JointFusePred(NetConfig(input_size=32, width=0.125, fc_units=32, pool=3), rgb_channels)


def test_joint_fusepred_is_the_average_of_two_whole_nets():
    import torch

    from hpe.nets import NetConfig, PoseNet, count_parameters
    net = _joint().eval()
    depth, rgb = torch.randn(3, 1, 32, 32), torch.randn(3, 4, 32, 32)
    out = net(depth, rgb)
    assert out.shape == (3, 42)
    assert torch.allclose(out, 0.5 * net.depth_net(depth) + 0.5 * net.rgb_net(rgb))
    assert not torch.allclose(net.depth_net(depth), net.rgb_net(rgb))  # two streams, no shared layer
    cfg = NetConfig(input_size=32, width=0.125, fc_units=32, pool=3)
    assert count_parameters(net) == count_parameters(PoseNet(cfg)) + count_parameters(
        PoseNet(NetConfig(input_size=32, width=0.125, fc_units=32, pool=3, in_channels=4)))


def test_joint_fusepred_gradient_reaches_both_streams():
    import torch

    from hpe.train import pose_loss
    net = _joint().train()
    loss = pose_loss(net(torch.randn(4, 1, 32, 32), torch.rand(4, 4, 32, 32)), torch.rand(4, 42) - 0.5, "1/2")
    loss.backward()
    for stream in (net.depth_net, net.rgb_net):
        first = stream.features[0][0].weight.grad
        assert first is not None and first.abs().sum() > 0


def test_fusepred_training_per_profile(synthetic_h5, tmp_path):
    """fig4.7/fusepred.toml names the training per profile; joint trains one run from scratch on the average."""
    from hpe.config import fusepred_training
    from hpe.experiments import fusepred
    exp = REPO / "experiments/fig4.7/fusepred.toml"
    assert fusepred_training(exp, "thesis") == "independent" and fusepred_training(exp, "icip2018") == "joint"
    with pytest.raises(ValueError, match="--depth-run"):
        fusepred(exp, None, None, tmp_path / "x", layers=[("--set", {"profile": "thesis"})])
    layers = [("tiny", {**TINY, "data": str(synthetic_h5)})]
    r = fusepred(exp, None, None, tmp_path / "joint", training="joint", layers=layers)
    assert r["status"] == "done" and r["config"]["inputs"] == "depth+rgb" and r["config"]["fusion_layer"] == "score"
    assert (tmp_path / "joint" / "test_predictions_uvd.txt").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text('[fusepred]\ntraining = "joint"\n[train]\ninputs = "depth+rgb"\nfusion_layer = "conv4"\n')
    with pytest.raises(ValueError, match="fusion_layer"):
        fusepred(bad, None, None, tmp_path / "b", layers=layers)


def test_make_fusepred_target_hands_the_profile_to_hpe_fusepred(tmp_path):
    """make's FusePred target is the same for both profiles: it gives hpe fusepred the data and the profile, and
    fusepred.toml's per-profile choice decides (independent fusion of the two runs, or the joint net)."""
    env = _make_project(tmp_path)
    for profile in ("thesis", "icip2018"):
        r = subprocess.run(["make", "-n", "reproduce-fig4.7", "VENV=none", "PYTHON=python3", f"PROFILE={profile}"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
        lines = r.stdout.replace("\\\n", " ").splitlines()
        fp = [line for line in lines if " -m hpe fusepred" in line]
        assert r.returncode == 0 and len(fp) == 1, r.stdout + r.stderr
        assert f"--set profile={profile}" in fp[0] and f"--data data/synthetic-{profile}.h5" in fp[0]
        assert f"--depth-run results/runs/synthetic-{profile}/synthetic/fig4.7/depthnet" in fp[0]
