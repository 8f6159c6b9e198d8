import shutil

import h5py
import numpy as np
import pytest

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.crop import denormalise_joints
from hpe.prep import SCHEMA, PrepConfig, prep


def test_schema_and_split(synthetic_h5):
    with h5py.File(synthetic_h5) as h5:
        assert h5.attrs["profile"] == "thesis" and h5.attrs["test_subject1_frames"] == 5
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


def test_icip2018_profile(synthetic_root, tmp_path):
    out = tmp_path / "icip.h5"
    prep(synthetic_root, out, PrepConfig(profile="icip2018", size=32, workers=1, limit=8), progress=False)
    with h5py.File(out) as h5:
        assert h5.attrs["cube_mm_subject2"] == 261.0
        assert set(np.unique(h5["test/cube"][:])) == {300.0, 261.0}


def test_failed_run_keeps_earlier_file(synthetic_root, tmp_path):
    root = tmp_path / "nyu"
    shutil.copytree(synthetic_root, root)
    out = tmp_path / "good.h5"
    prep(root, out, PrepConfig(size=32, workers=1), progress=False)
    before = out.read_bytes()
    p = root / "test" / "rgb_1_0000009.png"
    p.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"rgb_1_0000009.png \(frame 9\)"):
        prep(root, out, PrepConfig(size=32, workers=2), progress=False)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".good.h5.tmp*"))
    stats = prep(root, tmp_path / "skip.h5", PrepConfig(size=32, workers=2, skip_bad=True), progress=False)
    assert stats["skipped"] == 1 and stats["test_frames"] == 15
