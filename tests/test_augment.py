"""Centre jitter re-centres a stored crop as an exact re-crop would."""
import h5py
import numpy as np
import torch

from hpe.augment import jitter_centres, jitter_split, random_offsets
from hpe.camera import NYU_CAMERA
from hpe.crop import crop_frame, normalise_joints
from hpe.dataset import load_split
from hpe.nyu import NYUSplit, read_depth


def _stored(h5_path, row: int):
    """A test frame as prep stored it: frame number, depth crop, centre, normalised and mm joints."""
    with h5py.File(h5_path) as h5:
        g = h5["test"]
        return (int(g["frame"][row]), g["depth"][row], g["centre_xyz"][row], g["joints"][row],
                g["joints_xyz"][row])


def test_jittered_crop_equals_the_exact_re_crop(synthetic_root, synthetic_h5):
    split = NYUSplit(synthetic_root, "test")
    frame, stored, centre, joints, xyz = _stored(synthetic_h5, 2)
    for delta in ([12.0, -8.0, 0.0], [0.0, 0.0, 20.0], [-15.0, 10.0, -10.0]):
        delta = np.array(delta)
        exact = crop_frame(read_depth(split.depth_path(frame)), None, NYU_CAMERA.xyz_to_uvd(centre + delta), 300.0,
                           stored.shape[-1])["depth"].astype(np.float32)
        d, _, y = jitter_centres(torch.from_numpy(stored)[None, None], None, torch.from_numpy(joints).view(1, -1),
                                 torch.from_numpy(centre)[None], torch.tensor([300.0]),
                                 torch.from_numpy(delta)[None].float())
        a = d[0, 0].numpy()
        # Content the old crop did not hold (beyond its sides or its back face) is unknown: background.
        outside = (a == 1) & (exact < 1)
        assert outside.mean() < 0.05
        # Elsewhere the crops agree up to resampling twice: a neighbouring pixel on a sloped surface (< 7.5 mm).
        known = ~outside
        assert (np.abs(a - exact)[known] < 0.05).mean() > 0.97, delta
        assert np.abs(a - exact)[known & (exact < 1)].mean() < 0.02, delta  # under 3 mm on average over the hand
        np.testing.assert_allclose(y.view(-1, 3).numpy(), normalise_joints(xyz, centre + delta, 300.0), atol=1e-5)


def test_scaled_crop_equals_the_exact_crop_with_a_larger_cube(synthetic_root, synthetic_h5):
    """A cube 1.15 times as large around the same centre: the hand looks like a 0.87 times smaller one."""
    split = NYUSplit(synthetic_root, "test")
    frame, stored, centre, joints, xyz = _stored(synthetic_h5, 4)
    k = 1.15
    exact = crop_frame(read_depth(split.depth_path(frame)), None, NYU_CAMERA.xyz_to_uvd(centre), 300.0 * k,
                       stored.shape[-1])["depth"].astype(np.float32)
    d, _, y = jitter_centres(torch.from_numpy(stored)[None, None], None, torch.from_numpy(joints).view(1, -1),
                             torch.from_numpy(centre)[None], torch.tensor([300.0]), torch.zeros(1, 3),
                             scale=torch.tensor([k]))
    a = d[0, 0].numpy()
    known = ~((a == 1) & (exact < 1))
    assert (np.abs(a - exact)[known] < 0.05).mean() > 0.97
    np.testing.assert_allclose(y.view(-1, 3).numpy(), normalise_joints(xyz, centre, 300.0 * k), atol=1e-5)


def test_offsets_and_fixed_jittered_splits(synthetic_h5):
    gen = torch.Generator().manual_seed(0)
    d = random_offsets(20000, 40.0, gen, "cpu")
    assert abs(d.mean()) < 0.5 and 15 < d.std() < 30  # a scale mixture: N(0, s^2), s uniform in 0-40 mm
    data = load_split(synthetic_h5, "val", need_rgb=True, input_size=64)
    a, b = jitter_split(data, 30.0, seed=1), jitter_split(data, 30.0, seed=1)
    assert torch.equal(a.depth, b.depth) and a.rgb.dtype == torch.uint8
    moved = np.linalg.norm(a.meta["centre_xyz"] - data.meta["centre_xyz"], axis=1)
    assert moved.mean() > 5 and np.array_equal(a.meta["joints_xyz"], data.meta["joints_xyz"])
