import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.crop import denormalise_joints
from hpe.dataset import SCHEMA, open_prepared
from hpe.prep import prep, prep_config, validation_mask


def test_schema_and_split(synthetic_h5):
    with h5py.File(synthetic_h5) as h5:
        assert h5.attrs["profile"] == "thesis" and h5.attrs["test_subject1_frames"] == 5
        assert h5.attrs["val_method"] == "uniform" and h5.attrs["val_fraction"] == 0.25
        assert len(h5["train/depth"]) == 30 and len(h5["val/depth"]) == 10 and len(h5["test/depth"]) == 16
        for name, (_, dtype, _) in SCHEMA.items():
            assert h5[f"train/{name}"].dtype == np.dtype(dtype), name
        g = h5["test"]
        assert g["depth"].shape == (16, 64, 64) and g["rgb"].shape == (16, 3, 64, 64)
        assert list(g["subject"][:]) == [1] * 5 + [2] * 11
        assert np.allclose(g["cube"][:], 300.0)
        frames = np.sort(np.r_[h5["train/frame"][:], h5["val/frame"][:]])
        assert (frames == np.arange(1, 41)).all()
        # predictions map back exactly: denormalise + project recovers uvd
        xyz = denormalise_joints(g["joints"][:], g["centre_xyz"][:], g["cube"][:])
        assert np.abs(NYU_CAMERA.xyz_to_uvd(xyz)[..., :2] - g["joints_uvd"][:][..., :2]).max() < 0.01
        d = g["depth"][:].astype(np.float32)
        assert d.max() == 1.0 and d.min() >= -1
        assert len(h5.attrs["rgb_mean"]) == 3 and (h5.attrs["rgb_std"] > 0).all()
    assert open_prepared(synthetic_h5).sizes == {"train": 30, "val": 10, "test": 16}


def test_uniform_validation_mask_is_a_seeded_sample():
    """Thesis 4.4.3: round(fraction x n) frames drawn uniformly with the seed (numpy's Generator), as a boolean mask."""
    for n, fraction, seed in ((40, 0.25, 0), (999, 0.1, 7), (10, 0.05, 3)):
        mask = validation_mask(n, "uniform", fraction, seed)
        assert mask.dtype == bool and mask.shape == (n,) and mask.sum() == round(fraction * n)
        expected = np.zeros(n, bool)
        expected[np.random.default_rng(seed).permutation(n)[:round(fraction * n)]] = True
        assert (mask == expected).all()
    assert (validation_mask(40, "uniform", 0.25, 0) != validation_mask(40, "uniform", 0.25, 1)).any()
    assert (validation_mask(40, "uniform", 0.25, 0) != validation_mask(40, "train_test_split", 0.25, 0)).any()


def test_icip2018_split_is_sklearns_train_test_split():
    """sklearn.model_selection.train_test_split(range(n), random_state=10, test_size=0.5): the author validates on
    the second part.  Values printed by scikit-learn 1.x for n = 10 and 11; scikit-learn (a test dependency) is the
    reference for the rest, up to NYU's 72,757 training frames."""
    try:
        from sklearn.model_selection import train_test_split
    except ModuleNotFoundError:  # a test dependency: fail saying how to install it, never skip
        pytest.fail("scikit-learn is a test dependency (the reference for the author's split): pip install -e '.[test]'")
    assert list(np.nonzero(validation_mask(10, "train_test_split", 0.5, 10))[0]) == [2, 3, 5, 6, 8]
    assert list(np.nonzero(validation_mask(11, "train_test_split", 0.5, 10))[0]) == [2, 5, 6, 7, 8, 10]
    for n in (2, 3, 5, 10, 11, 40, 999, 72757):
        for fraction in (0.5, 0.25, 0.3):
            _, val = train_test_split(range(n), random_state=10, test_size=fraction)
            assert np.array_equal(np.nonzero(validation_mask(n, "train_test_split", fraction, 10))[0], np.sort(val))


def test_icip2018_profile(synthetic_root, tmp_path):
    out = tmp_path / "icip.h5"
    prep(synthetic_root, out, prep_config("icip2018", size=32, workers=1, limit=8), progress=False)
    with h5py.File(out) as h5:
        assert h5.attrs["cube_mm_subject2"] == 261.0 and h5.attrs["val_method"] == "train_test_split"
        assert set(np.unique(h5["test/cube"][:])) == {300.0, 261.0}
        assert sorted(h5["val/frame"][:] - 1) == list(np.nonzero(validation_mask(8, "train_test_split", 0.5, 10))[0])


def test_failed_run_keeps_earlier_file(synthetic_root, tmp_path):
    root = tmp_path / "nyu"
    shutil.copytree(synthetic_root, root)
    out = tmp_path / "good.h5"
    prep(root, out, prep_config(size=32, workers=1), progress=False)
    before = out.read_bytes()
    p = root / "test" / "rgb_1_0000009.png"
    p.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"rgb_1_0000009.png \(frame 9\)"):
        prep(root, out, prep_config(size=32, workers=2), progress=False)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".good.h5.tmp*"))
    stats = prep(root, tmp_path / "skip.h5", prep_config(size=32, workers=2, skip_bad=True), progress=False)
    assert stats["skipped"] == 1 and stats["test_frames"] == 15


def test_a_colour_photo_in_a_depth_files_place_is_refused(synthetic_root, tmp_path):
    """A colour frame copied over a depth frame was cropped as depth (its G and B bytes read as mm): refused, or
    skipped with --skip-bad, whether the whole frame or only the crop box is read."""
    root = tmp_path / "nyu"
    shutil.copytree(synthetic_root, root)
    shutil.copy(root / "train" / "rgb_1_0000002.png", root / "train" / "depth_1_0000002.png")
    for centre in ("palm", "com"):  # the box read, the whole frame read
        with pytest.raises(DataError, match=r"depth_1_0000002.png looks like a colour image, not a depth frame"):
            prep(root, tmp_path / "o.h5", prep_config(size=32, workers=1, centre=centre), progress=False)
    stats = prep(root, tmp_path / "o.h5", prep_config(size=32, workers=1, skip_bad=True), progress=False)
    assert stats["skipped"] == 1


def test_output_problems_are_one_line_before_any_work(synthetic_root, tmp_path, monkeypatch):
    cfg = prep_config(size=32, workers=1, limit=2)
    with pytest.raises(DataError, match="is a folder; give a file name"):
        prep(synthetic_root, tmp_path, cfg, progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="file is a file, not a folder"):
        prep(synthetic_root, tmp_path / "file" / "out.h5", cfg, progress=False)
    with pytest.raises(DataError, match="cannot write /proc/hpe-out.h5"):
        prep(synthetic_root, "/proc/hpe-out.h5", cfg, progress=False)
    import shutil as sh
    monkeypatch.setattr(sh, "disk_usage", lambda p: sh._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match="not enough disk space for .*out.h5: it needs about"):
        prep(synthetic_root, tmp_path / "out.h5", cfg, progress=False)


def test_stale_temp_files_of_dead_processes_are_swept(synthetic_root, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.h5.tmp-{dead}.h5"
    stale.write_text("left by a killed run")
    live = tmp_path / f".other.h5.tmp-{os.getpid()}.h5"  # ours: alive, kept
    live.write_text("")
    prep(synthetic_root, tmp_path / "out.h5", prep_config(size=32, workers=1, limit=2), progress=False)
    assert not stale.exists() and live.exists()


def test_reading_only_the_crop_box_gives_the_same_rows(synthetic_root, tmp_path, monkeypatch):
    """Prep converts only the crop box's pixels of each PNG (the box is known from the palm label before reading):
    every stored array equals the one made from whole frames, for boxes inside the image and boxes cut by its
    edges (frames shifted so the hand sits at a corner), in both profiles."""
    from PIL import Image

    import hpe.prep as P
    from hpe.nyu import EVAL_JOINTS, PALM_JOINT, NYUSplit, encode_depth, read_depth, read_rgb
    split = NYUSplit(synthetic_root, "test")
    reads = []

    def whole(read):
        def call(path, frame=None, box=None):
            reads.append(box)
            return read(path, frame)
        return call

    tasks = P._split_tasks(split, prep_config(), 10 ** 9)[:6]
    for k, (u, v) in enumerate([(25.0, 30.0), (615.0, 455.0), (20.0, 460.0)]):  # the hand moved to a corner
        depth_file, rgb_file, frame, subject, uvd, xyz, cube = tasks[k]
        du, dv = int(u - uvd[PALM_JOINT, 0]), int(v - uvd[PALM_JOINT, 1])
        moved = [tmp_path / f"depth_1_{k:07d}.png", tmp_path / f"rgb_1_{k:07d}.png"]
        Image.fromarray(encode_depth(np.roll(read_depth(depth_file), (dv, du), (0, 1)))).save(moved[0])
        Image.fromarray(np.roll(read_rgb(rgb_file), (dv, du), (0, 1))).save(moved[1])
        tasks.append((*moved, frame, subject, uvd + [du, dv, 0], xyz, cube))
    for profile in ("thesis", "icip2018"):
        cfg = prep_config(profile)
        for task in tasks:
            boxed = P.process_frame(*task, cfg=cfg, joint_idx=np.array(EVAL_JOINTS))
            with monkeypatch.context() as m:
                m.setattr(P, "read_depth", whole(read_depth))
                m.setattr(P, "read_rgb", whole(read_rgb))
                full = P.process_frame(*task, cfg=cfg, joint_idx=np.array(EVAL_JOINTS))
            assert boxed.keys() == full.keys()
            for name in boxed:
                assert np.array_equal(boxed[name], full[name]), (profile, task[0], name)
    assert len(reads) == 2 * 2 * 9 and all(b is not None for b in reads)  # the box path was the one compared
    assert sum(b[0] < 0 or b[1] < 0 or b[2] > 640 or b[3] > 480 for b in reads) >= 6  # boxes cut by the edges
    depth = read_depth(split.depth_path(1), box=(600, 440, 700, 560))  # clipped to the image, zero elsewhere
    assert depth[:440].max() == 0 and depth[:, :600].max() == 0
    assert np.array_equal(depth[440:, 600:], read_depth(split.depth_path(1))[440:, 600:])
