"""`hpe predict` on unlabelled frames and `hpe export`, with tiny trained runs."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.crop import crop_frame
from hpe.nyu import PALM_JOINT, PALM_SLOT, NYUSplit, read_depth, read_joints_txt
from hpe.predict import predict
from hpe.train import train
from hpe.baselines import bundled

TINY = dict(width=0.125, fc_units=128, input_size=32, batch_size=8, progress="none", device="cpu", max_epochs=2,
            limit_train=16, require_learning=False)


@pytest.fixture(scope="module")
def runs(synthetic_h5, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    train(dict(data=str(synthetic_h5), out=str(base / "depth"), centre_jitter_mm=20.0, **TINY))
    train(dict(data=str(synthetic_h5), out=str(base / "fuse"), inputs="depth+rgb", fusion_layer="fc1", fusion="conv",
               **TINY))
    train(dict(data=str(synthetic_h5), out=str(base / "centre"), target="centre", centre_jitter_mm=30.0, **TINY))
    return base / "depth", base / "fuse", base / "centre"


def test_a_centre_net_regresses_the_palm_and_refines_the_centre(runs, sample_frame, tmp_path):
    result = json.loads((runs[2] / "result.json").read_text())
    assert result["mean_pose_mm"] > 5  # evaluated on jittered crops: "the palm is at the centre" is not free
    with pytest.raises(DataError, match="regresses the hand centre only"):
        predict(runs[2], [str(sample_frame[0])], tmp_path / "a", progress=False)
    rec = predict(runs[0], [str(sample_frame[0])], tmp_path / "b", centre_runs=[runs[2]], progress=False)
    assert len(rec[0]["joints_xyz"]) == 14


def test_centre_runs_refine_coarse_to_fine_each_on_its_own_cube(runs, sample_frame, monkeypatch, tmp_path, hpe_cli):
    """A coarse centre net (trained on a 600 mm context file) runs before the fine one whatever the order given,
    each crops with its own cube, and ``--cube`` scales them alike; the CLI takes --centre-run twice."""
    import dataclasses

    import hpe.predict as P
    from hpe.export import load_run
    pose, fine = load_run(runs[0]), load_run(runs[2])
    coarse = dataclasses.replace(fine, preprocess={**fine.preprocess, "cube_mm": 600.0})
    seen = []
    real = P._run_net

    def spy(run, assemble, frames, device, cube):
        seen.append(("coarse" if run is coarse else "fine" if run is fine else "pose", cube))
        return real(run, assemble, frames, device, cube)

    monkeypatch.setattr(P, "_run_net", spy)
    depth = P.read_depth_frame(sample_frame[0])
    for cube, scale in ((300.0, 1.0), (250.0, 250 / 300)):
        seen.clear()
        P.predict_frames(pose, [P.Frame(sample_frame[0], depth, None, NYU_CAMERA)], "refined", cube,
                         torch.device("cpu"), refine_steps=2, centre_runs=[fine, coarse])
        assert seen == [("coarse", 600 * scale)] * 2 + [("fine", 300 * scale)] * 2 + [("pose", cube)]
    monkeypatch.undo()
    code, _, err = hpe_cli("predict", "--run", runs[0], "--out", tmp_path / "o", "--centre-run", runs[2],
                           "--centre-run", runs[2], "--quiet", sample_frame[0])
    assert code == 0 and "note:" not in err, err
    assert len(json.loads((tmp_path / "o" / "predictions.json").read_text())) == 1
    code, _, err = hpe_cli("predict", "--run", runs[0], "--out", tmp_path / "p", sample_frame[0])
    assert code == 0 and "note: no --centre-run" in err, err  # says the centre will be poor


def test_labelled_frame_with_its_centre_gives_the_training_prediction(runs, synthetic_root, synthetic_h5, tmp_path):
    """The crop is prep's own function: the stored crop and the predicted one are identical, and so are the
    predictions hpe train wrote for the frame."""
    import h5py
    split = NYUSplit(synthetic_root, "test")
    frame = 3
    palm = split.joints.uvd[frame - 1, PALM_JOINT]
    with h5py.File(synthetic_h5) as h5:
        row = list(h5["test/frame"][:]).index(frame)
        stored = h5["test/depth"][row]
    assert np.array_equal(crop_frame(read_depth(split.depth_path(frame)), None, palm, 300.0, 64)["depth"], stored)
    rec = predict(runs[0], [str(split.depth_path(frame))], tmp_path, centre=",".join(map(str, palm)), progress=False)
    written = np.load(runs[0] / "test_predictions.npz")
    np.testing.assert_allclose(rec[0]["joints_xyz"], written["xyz"][list(written["frame"]).index(frame)], atol=1e-3)


def test_the_real_frame_three_ways_gives_the_same_prediction(runs, sample_frame, nyu_labels, tmp_path):
    """NYU's RGB-packed PNG, a 16-bit millimetre PNG and a .npy array of the same frame; no labels used."""
    depth = read_depth(sample_frame[0])
    Image.fromarray(depth.astype(np.uint16)).save(tmp_path / "frame16.png")
    np.save(tmp_path / "frame.npy", depth.astype(np.float32) / 10)  # in cm: --depth-scale 10
    outs = []
    for src, scale in ((sample_frame[0], 1.0), (tmp_path / "frame16.png", 1.0), (tmp_path / "frame.npy", 10.0)):
        outs.append(predict(runs[0], [str(src)], tmp_path / "out" / src.name, depth_scale=scale, progress=False)[0])
    for o in outs[1:]:
        np.testing.assert_allclose(o["joints_xyz"], outs[0]["joints_xyz"], atol=1e-6)
        np.testing.assert_allclose(o["centre_uvd"], outs[0]["centre_uvd"], atol=1e-6)
    palm = NYU_CAMERA.uvd_to_xyz(read_joints_txt(nyu_labels)[0, PALM_SLOT])
    assert np.linalg.norm(NYU_CAMERA.uvd_to_xyz(np.array(outs[0]["centre_uvd"])) - palm) < 100  # on the hand
    lines = (tmp_path / "out" / "frame.npy" / "predictions_uvd.txt").read_text().splitlines()
    assert len(lines) == 1 and len(lines[0].split()) == 42


def test_folders_globs_order_and_outputs(runs, synthetic_root, tmp_path):
    folder = synthetic_root / "test"
    rec = predict(runs[0], [str(folder / "depth_1_000000[12].png"), str(folder / "depth_1_0000003.png")], tmp_path,
                  overlay=True, progress=False)
    assert [r["file"].rsplit("/", 1)[-1] for r in rec] == ["depth_1_0000001.png", "depth_1_0000002.png",
                                                           "depth_1_0000003.png"]
    assert len(json.loads((tmp_path / "predictions.json").read_text())) == 3
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir())[0] == "depth_1_0000001-pose.png"


def test_same_named_frames_get_their_own_overlays(runs, synthetic_root, tmp_path):
    """Frames of one name from two folders (each camera's depth_1_0000001.png) shared one overlay file, the last
    overwriting the others; each record names its own overlay."""
    import shutil

    from hpe.predict import overlay_names
    for cam, frame in (("a", 1), ("b", 2)):
        (tmp_path / cam).mkdir()
        shutil.copy(synthetic_root / "test" / f"depth_1_000000{frame}.png", tmp_path / cam / "depth_1_0000001.png")
    rec = predict(runs[0], [str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out", overlay=True,
                  progress=False)
    assert [r["overlay"] for r in rec] == ["overlays/a__depth_1_0000001-pose.png",
                                           "overlays/b__depth_1_0000001-pose.png"]
    assert all((tmp_path / "out" / r["overlay"]).is_file() for r in rec)
    assert overlay_names([Path("x/f.png"), Path("x/f.png"), Path("x/g.npy")]) == ["f-1-pose.png", "f-2-pose.png",
                                                                                   "g-pose.png"]
    assert overlay_names([Path("x/f.png"), Path("x/f.npy")]) == ["f-1-pose.png", "f-2-pose.png"]


def test_rgb_nets_need_and_pair_colour_frames(runs, synthetic_root, tmp_path):
    folder = synthetic_root / "test"
    with pytest.raises(DataError, match="is a net on 'depth\\+rgb': give the registered colour frames with --rgb"):
        predict(runs[1], [str(folder / "depth_1_0000001.png")], tmp_path, progress=False)
    rec = predict(runs[1], [str(folder / "depth_1_0000001.png")], tmp_path, rgb=[str(folder)], progress=False)
    assert len(rec) == 1


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"\x89PNG garbage"), "cannot read depth frame .*bad.png"),
    (lambda p: Image.fromarray(np.full((240, 320), 800, np.uint16)).save(p), "bad.png is 320x240, but the default"),
    (lambda p: Image.fromarray(np.zeros((480, 640), np.uint16)).save(p), "bad.png: no valid depth"),
    (lambda p: Image.fromarray(np.where(np.arange(640 * 480).reshape(480, 640) % 997 == 0, 800, 0).astype(np.uint16))
     .save(p), "bad.png: no object found to centre the crop on"),
    (lambda p: Image.new("L", (640, 480)).save(p), "bad.png: a L image is not a depth frame"),
])
def test_bad_frames_are_one_line_naming_the_file(runs, tmp_path, make, message, hpe_cli):
    make(tmp_path / "bad.png")
    code, _, err = hpe_cli("predict", "--run", runs[0], "--out", tmp_path / "o", tmp_path / "bad.png")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    import re
    assert re.search(message, err), err


def test_a_run_without_weights_is_named(runs, tmp_path, sample_frame):
    import shutil
    shutil.copytree(runs[0], tmp_path / "run")
    (tmp_path / "run" / "best.pt").unlink()
    with pytest.raises(DataError, match="run has no weights \\(missing best.pt\\)"):
        predict(tmp_path / "run", [str(sample_frame[0])], tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty is not a run folder \\(no readable config.json\\)"):
        predict(tmp_path / "empty", [str(sample_frame[0])], tmp_path / "o", progress=False)


def test_custom_camera_and_size(runs, sample_frame, tmp_path):
    depth = read_depth(sample_frame[0])[:, 80:560]  # a 480x480 sensor with the principal point moved
    np.save(tmp_path / "square.npy", depth)
    rec = predict(runs[0], [str(tmp_path / "square.npy")], tmp_path / "o", camera="588.04,587.08,240,240",
                  progress=False)
    assert len(rec) == 1 and rec[0]["centre_uvd"][0] < 480
    with pytest.raises(DataError, match="principal point \\(700.0, 240.0\\) lies outside"):
        predict(runs[0], [str(tmp_path / "square.npy")], tmp_path / "o", camera="588,587,700,240", progress=False)


@pytest.mark.parametrize("which", [0, 1])
def test_onnx_and_torchscript_match_pytorch(runs, tmp_path, which):
    import onnxruntime as ort

    from hpe.export import export, load_run
    from hpe.train import input_shapes
    run = load_run(runs[which])
    shapes = input_shapes(run.cfg)
    torch.manual_seed(0)
    xs = [torch.rand(5, *s) * 2 - 1 for s in shapes]
    with torch.no_grad():
        ref = run.model(*xs).numpy()
    meta = export(runs[which], "onnx", tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    stored = json.loads(sess.get_modelmeta().custom_metadata_map["hpe"])
    assert stored == json.loads(json.dumps(meta)) and stored["cube_mm"] == 300.0 and stored["crop_size"] == 64
    export(runs[which], "torchscript", tmp_path / "m.pt")
    files = {"hpe.json": ""}
    ts = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=files)
    with torch.no_grad():
        np.testing.assert_allclose(ts(*xs).numpy(), ref, atol=1e-4)
    assert json.loads(files["hpe.json"])["joint_names"][-1] == "C"


def test_prep_points_unlabelled_folders_to_predict(tmp_path, hpe_cli):
    (tmp_path / "mine" / "train").mkdir(parents=True)
    (tmp_path / "mine" / "test").mkdir()
    code, _, err = hpe_cli("prep", tmp_path / "mine", tmp_path / "o.h5")
    assert code == 2 and len(err.splitlines()) == 1 and "use `hpe predict`" in err
    assert f"{tmp_path / 'mine' / 'train'} has no joint_data.mat" in err and not (tmp_path / "o.h5").exists()


def test_centre_study_table(runs, synthetic_root, tmp_path):
    """`hpe figure centres`: every centre on the test frames and the real frame, the palm row at 0 mm and the cost
    relative to it, written as a table."""
    from hpe.experiments import centre_study
    rows = centre_study(runs[0], synthetic_root, tmp_path / "centres", limit=4, centre_runs=[runs[2]])
    assert [r[1] for r in rows] == ["palm", "segment", "com", "refined"] * 2
    assert [r[2] for r in rows] == [4] * 4 + [1] * 4
    assert all(r[3] == "0.0" and r[6] == "+0.0%" for r in rows if r[1] == "palm")
    assert all(float(r[3]) > 0 for r in rows if r[1] != "palm")
    assert "refined by centre" in (tmp_path / "centres.md").read_text()


def test_the_recorded_centre_is_the_one_used(runs, sample_frame):
    """A run prepared with centre_depth = image crops at I(c), whatever depth --centre U,V,D gives: the centre
    written to predictions.json must be that one, not the depth the user typed."""
    from hpe.crop import depth_at
    from hpe.export import load_run
    from hpe.predict import Frame, predict_frames, read_depth_frame
    run = load_run(runs[0])
    depth = read_depth_frame(sample_frame[0])
    given = np.array([210.0, 268.0, 860.0])
    run.preprocess["centre_depth"] = "image"
    frame = Frame(sample_frame[0], depth, None, NYU_CAMERA, given.copy())
    xyz, centres = predict_frames(run, [frame], "fixed", 300.0, torch.device("cpu"))
    assert centres[0][2] == depth_at(depth, 210.0, 268.0) == 752.0 and np.allclose(centres[0][:2], given[:2])
    run.preprocess["centre_depth"] = "label"
    frame = Frame(sample_frame[0], depth, None, NYU_CAMERA, given.copy())
    assert predict_frames(run, [frame], "fixed", 300.0, torch.device("cpu"))[1][0][2] == 860.0


def test_load_predictor_takes_one_centre_run_as_a_path(runs, sample_frame):
    from hpe.predict import load_predictor, read_depth_frame
    one = load_predictor(runs[0], centre_runs=str(runs[2]))
    many = load_predictor(runs[0], centre_runs=[runs[2]])
    depth = read_depth_frame(sample_frame[0])
    assert np.array_equal(one(depth), many(depth))


def _screen(depth_mm: np.ndarray, centre: np.ndarray, size: int, cube: float = 300.0):
    """A frame's crop around ``centre`` and its no_hand, as predict calls it (with the crop's centre depth and cube)."""
    from hpe.handlike import no_hand
    c = crop_frame(depth_mm, None, centre, cube, size)
    return c["depth"], no_hand(c["depth"].astype(np.float32), float(c["centre_uvd"][2]), cube)


def _screen_prepared(f, split: str) -> list:
    """no_hand of every crop of a prepared file's split, with each crop's centre depth and cube."""
    from hpe.handlike import no_hand
    return [no_hand(c.astype(np.float32), float(centre[2]), float(cube))
            for c, centre, cube in zip(f[f"{split}/depth"][:], f[f"{split}/centre_uvd"][:], f[f"{split}/cube"][:])]


def test_a_corner_is_not_a_hand(synthetic_h5):
    """Two planes meeting (a room's corner, a box's edge, a folded card) were given a hand pose: each side alone is
    flat, the pair is not one plane.  A folded card held up in both folds (edge towards and away from the camera),
    three seam angles, unequal slopes; the synthetic hands all stay hands."""
    import h5py
    uu, vv = np.meshgrid(np.arange(640.0), np.arange(480.0))
    noise = np.random.default_rng(0).normal(0, 1, uu.shape)
    for angle in (0.3, 1.2, 2.5):
        # the ray's lateral slope across the crease: each half is a plane z = 800 + g z a, so z = 800 / (1 - g a)
        across = ((uu - NYU_CAMERA.cx) * np.cos(angle) + (vv - NYU_CAMERA.cy) * np.sin(angle)) / NYU_CAMERA.fx
        for slope in (-2.5, 1.5):  # mm of depth per pixel across the crease, at 800 mm
            g = slope * NYU_CAMERA.fx / 800
            depth = np.round(800 / (1 - np.where(across > 0, g, -0.6 * g) * across) + 0.8 * noise)
            depth[(uu - 320) ** 2 + (vv - 240) ** 2 > 80 ** 2] = 0  # the card's edge: nothing around it
            crop, why = _screen(depth, np.array([320.0, 240.0, 800.0]), 64)
            assert 0.03 < (crop < 1).mean() < 0.9, (angle, slope)
            assert "two flat surfaces meeting" in (why or ""), (angle, slope)
    with h5py.File(synthetic_h5) as f:
        for split in ("train", "test"):
            assert not any(_screen_prepared(f, split)), split


def test_a_folder_in_nyus_layout_gives_its_depth_frames(tmp_path):
    """NYU's test folder keeps depth_* and rgb_* frames side by side: given as the depth input it was refused as
    colour images (a careless user's find); its depth frames are read, and its rgb frames as --rgb."""
    from hpe.predict import expand_inputs
    for name in ("depth_1_0000001.png", "depth_1_0000002.png", "rgb_1_0000001.png", "rgb_1_0000002.png"):
        (tmp_path / name).write_bytes(b"")
    assert [f.name for f in expand_inputs([str(tmp_path)])] == ["depth_1_0000001.png", "depth_1_0000002.png"]
    assert [f.name for f in expand_inputs([str(tmp_path)], "colour")] == ["rgb_1_0000001.png", "rgb_1_0000002.png"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.png").write_bytes(b"")
    assert [f.name for f in expand_inputs([str(tmp_path / "other")])] == ["a.png"]  # any other folder: every frame


def test_child_size_hands_stay_hands(tmp_path):
    """A careless user's find: with the 80th percentile, test frame 26 of seed 11 with a 0.6-size second subject (a
    child's hand) was called two flat surfaces; the 90th percentile keeps every such hand a hand."""
    import h5py

    from hpe.prep import prep, prep_config
    from hpe.synthetic import generate
    generate(tmp_path / "nyu", 2, 30, seed=11, workers=1, subject2_scale=0.6)
    prep(tmp_path / "nyu", tmp_path / "child.h5", prep_config(size=64, workers=1), progress=False)
    with h5py.File(tmp_path / "child.h5") as f:
        flags = _screen_prepared(f, "test")
    assert len(flags) == 30 and not any(flags), flags
    # In a 32 px crop such a hand covers ~100 pixels: two planes fitted to every other one of them called 6 of 200
    # test frames of seed 21 a corner (frames 82, 102, 110, 142, 175, 180); all pixels keep them hands.
    generate(tmp_path / "nyu32", 1, 180, seed=21, workers=2, subject2_scale=0.6)
    prep(tmp_path / "nyu32", tmp_path / "child32.h5", prep_config(size=32, workers=2), progress=False)
    with h5py.File(tmp_path / "child32.h5") as f:
        flags = [flag for flag, frame in zip(_screen_prepared(f, "test"), f["test/frame"][:])
                 if frame in (82, 102, 110, 142, 175, 180)]
    assert len(flags) == 6 and not any(flags), flags


def test_a_ball_and_a_cylinder_are_not_hands(sample_frame):
    """A careless user's find: a ball or a cylinder in the crop got a hand pose with hand_like true.  One smooth
    rounded surface (90 % within 4.5 mm of a quadric or a sphere) is flagged; the real hand is not."""
    uu, vv = np.meshgrid(np.arange(640.0), np.arange(480.0))
    for radius, z0, across in ((60.0, 700.0, None), (45.0, 800.0, 0.3), (70.0, 650.0, 1.2)):
        mm = (np.hypot(uu - 320, vv - 240) if across is None  # a ball, or a cylinder whose axis runs at `across`
              else np.abs((uu - 320) * np.sin(across) - (vv - 240) * np.cos(across))) * z0 / NYU_CAMERA.fx
        depth = np.where(mm < radius, np.round(z0 - np.sqrt(np.maximum(radius ** 2 - mm ** 2, 0))), 0.0)
        for size in (32, 128):
            why = _screen(depth, np.array([330.0, 245.0, depth[245, 330]]), size)[1]
            assert "smooth rounded surface" in (why or ""), (radius, across, size, why)
    from hpe.baselines import bundled
    palm = read_joints_txt(bundled("nyu_test_groundtruth_label.txt"))[0, PALM_SLOT]
    for size in (32, 64, 128):
        assert _screen(read_depth(sample_frame[0]).astype(float), palm, size)[1] is None


def test_a_tilted_plane_is_not_a_hand(sample_frame):
    """A wall facing the camera was flagged, a ramp (a wall seen at an angle, a table) was given a hand pose: the
    flatness test fits a plane, whatever its tilt.  The real hand stays a hand."""
    ramp = np.tile(1 / np.linspace(1 / 500, 1 / 1500, 640), (480, 1))  # a plane: its inverse depth is linear in u
    for u in (20.0, 40.0, 120.0):
        crop, why = _screen(ramp, np.array([u, 240.0, ramp[240, int(u)]]), 128)
        assert 0.03 < (crop < 1).mean() < 0.9 and "flat surface" in why, u
    from hpe.baselines import bundled
    palm = read_joints_txt(bundled("nyu_test_groundtruth_label.txt"))[0, PALM_SLOT]
    assert _screen(read_depth(sample_frame[0]).astype(float), palm, 128)[1] is None


def test_a_box_on_its_corner_is_not_a_hand(sample_frame):
    """A careless user's find: a box showing three faces got a hand pose with hand_like true (no two planes fit
    it).  Three planes fit it within 1.5 mm (0.010 x cube/2 at most here, against 0.013); hands stay hands (the real
    frame and the synthetic hands of the tests above, the child-size ones included)."""
    cx, sx, cy, sy = np.cos(0.6), np.sin(0.6), np.cos(0.8), np.sin(0.8)
    turn = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    half, centre = np.array([45.0, 35.0, 55.0]), np.array([10.0, -5.0, 750.0])
    vv, uu = np.mgrid[0:480, 0:640].astype(float)
    rays = np.stack([(uu - NYU_CAMERA.cx) / NYU_CAMERA.fx, (vv - NYU_CAMERA.cy) / NYU_CAMERA.fy, np.ones_like(uu)], -1)
    local, origin = rays @ turn, -centre @ turn  # in the box's frame: origin + t * local, t = depth in mm
    with np.errstate(divide="ignore", invalid="ignore"):
        near = np.nanmax(np.minimum((-half - origin) / local, (half - origin) / local), -1)
        far = np.nanmin(np.maximum((-half - origin) / local, (half - origin) / local), -1)
    depth = np.where((far >= near) & (near > 0), np.round(near), 0.0)  # in whole mm, as the sensor gives it
    assert np.all(np.abs(turn[2]) > 0.4)  # each of the box's axes points well towards the camera: three faces seen
    v, u = np.nonzero(depth)
    for size in (32, 64, 128):
        why = _screen(depth, np.array([u.mean(), v.mean(), np.median(depth[v, u])]), size)[1]
        assert "flat faces meeting (a box seen on its corner" in (why or ""), (size, why)


def test_a_hand_in_front_of_a_wall_or_over_a_table_is_a_hand(synthetic_root, sample_frame):
    """A careless user's find: a hand 4-15 cm in front of a wall was called "a surface larger than a hand" (the wall
    filled the crop).  A plane behind the object that covers half the crop or more is the background, and the rules
    judge what lies in front of it: the hands stay hands, a ball and a box in front of the same wall do not, and a
    bare wall is still a wall."""
    from hpe.nyu import load_joint_data
    labels = load_joint_data(synthetic_root / "test" / "joint_data.mat").uvd
    vv, uu = np.mgrid[0:480, 0:640].astype(float)
    rays = np.stack([(uu - NYU_CAMERA.cx) / NYU_CAMERA.fx, (vv - NYU_CAMERA.cy) / NYU_CAMERA.fy, np.ones_like(uu)], -1)
    noise = np.random.default_rng(0).normal(0, 1, vv.shape)

    def behind(depth, point, tilt=0.0):  # a plane through `point` (xyz mm), turned `tilt` degrees about the x axis
        normal = np.array([0.0, np.sin(np.deg2rad(tilt)), np.cos(np.deg2rad(tilt))])
        with np.errstate(divide="ignore"):
            wall = normal @ point / (rays @ normal)
        wall = np.where((wall > 0) & (wall < 2000), np.round(wall + noise * (wall / 1000) ** 2), 0)
        return np.where((depth > 0) & (depth < 2001) & ((depth < wall) | (wall == 0)), depth, wall)

    frames = [(read_depth(synthetic_root / "test" / f"depth_1_{i + 1:07d}.png").astype(float), labels[i, PALM_JOINT])
              for i in range(0, 16, 3)]
    palm = read_joints_txt(bundled("nyu_test_groundtruth_label.txt"))[0, PALM_SLOT]
    frames.append((read_depth(sample_frame[0]).astype(float), palm))
    for depth, centre in frames:
        for offset, tilt in ((40, 0.0), (100, 0.0), (70, 40.0), (40, -60.0)):
            point = NYU_CAMERA.uvd_to_xyz(centre) * [1, -1, 1] + [0, 0, offset]  # xyz with y down, as the rays
            crop, why = _screen(behind(depth, point, tilt), centre, 64)
            assert (crop < 1).mean() > 0.5 and why is None, (centre, offset, tilt, why)
    r = np.hypot(uu - 320, vv - 240) * 700 / NYU_CAMERA.fx
    ball = np.where(r < 60, np.round(700 - np.sqrt(np.maximum(60 ** 2 - r ** 2, 0))), 0.0)
    why = _screen(behind(ball, np.array([0.0, 0.0, 760.0])), np.array([320.0, 240.0, 660.0]), 64)[1]
    assert "smooth rounded surface" in (why or "")
    why = _screen(behind(np.zeros_like(vv), np.array([0.0, 0.0, 800.0])), np.array([320.0, 240.0, 800.0]), 64)[1]
    assert "a surface larger than a hand" in (why or "")


def test_a_far_box_and_a_large_ball_are_caught_in_the_crops_3d_coordinates():
    """Boxes on their corner and large balls got hand poses: in pixel coordinates a flat face's depth is not linear
    (z = c / (n . ray)), so three planes fitted this box 2.3-2.5 mm loosely (against 2 mm), and a quadric depth fits
    a ball's rim poorly.  In the crop's 3D coordinates the box's faces are planes (1.0-1.3 mm) and the ball a sphere."""
    import hpe.handlike as hl
    vv, uu = np.mgrid[0:480, 0:640].astype(float)
    rays = np.stack([(uu - NYU_CAMERA.cx) / NYU_CAMERA.fx, (vv - NYU_CAMERA.cy) / NYU_CAMERA.fy, np.ones_like(uu)], -1)
    noise = np.random.default_rng(0).standard_normal(uu.shape)

    def sensor(z):
        return np.where(z > 0, np.round(z + noise * (z / 1000) ** 2), 0.0)
    a, b = 0.72, 0.727
    turn = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]) @ \
        np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    half, local, origin = np.array([52.3, 68.7, 67.6]), rays @ turn, -np.array([-10.9, -15.8, 826.1]) @ turn
    with np.errstate(divide="ignore", invalid="ignore"):
        near = np.nanmax(np.minimum((-half - origin) / local, (half - origin) / local), -1)
        far = np.nanmin(np.maximum((-half - origin) / local, (half - origin) / local), -1)
    box = sensor(np.where((far >= near) & (near > 0), near, 0.0))
    centre, radius = np.array([-16.7, -132.3, 1096.2]), 109.0
    p, q = -2 * rays @ centre, centre @ centre - radius ** 2
    disc = p * p - 4 * (rays ** 2).sum(-1) * q
    ball = sensor(np.where(disc >= 0, (-p - np.sqrt(np.maximum(disc, 0))) / (2 * (rays ** 2).sum(-1)), 0.0))
    for thing, depth, reason in (("box", box, "flat faces meeting"), ("ball", ball, "smooth rounded surface")):
        v, u = np.nonzero(depth)
        for size in (32, 64, 128):
            crop, why = _screen(depth, np.array([u.mean(), v.mean(), np.median(depth[v, u])]), size)
            assert reason in (why or ""), (thing, size, why)
            inside = (crop < 1) & (crop > -1)
            x, y, d = hl._object_points(inside, crop.astype(np.float64), 0.0)  # pixel coordinates: missed
            assert (hl._three_plane_spread(x, y, d) > hl.THREE_PLANE_SPREAD if thing == "box"
                    else hl._quadric_spread(x, y, d) > hl.ROUND_SPREAD), (thing, size)
