"""Property-based tests (hypothesis) of the inverse pairs, over random cameras, cubes and poses: uvd <-> xyz,
normalise <-> denormalise, the crop box <-> paste geometry, kit-format write <-> read, and the training schedule
against the author's loop over random validation curves."""
import math

import numpy as np
import pytest

try:
    from hypothesis import example, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays
except ModuleNotFoundError:  # a test dependency: fail, saying how to install it (never skip)
    pytest.fail("hypothesis is not installed: pip install -e '.[test]' (or make venv)", pytrace=False)

from hpe.camera import Camera
from hpe.crop import paste_geometry, crop_box, crop_hand, denormalise_joints, normalise_joints
from hpe.nyu import read_joints_txt, write_joints_txt
from tests.test_train import _authors_loop, _schedule

FAST = settings(max_examples=60, deadline=None)

cameras = st.builds(Camera, fx=st.floats(100, 1000), fy=st.floats(100, 1000), cx=st.floats(0, 640),
                    cy=st.floats(0, 480))
finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def poses(draw, frames=st.integers(1, 4), joints=st.integers(1, 14)):
    """(N, J, 3) camera-frame joints in mm in front of the camera."""
    n, j = draw(frames), draw(joints)
    xy = draw(arrays(np.float64, (n, j, 2), elements=st.floats(-800, 800, **finite)))
    z = draw(arrays(np.float64, (n, j, 1), elements=st.floats(200, 3000, **finite)))
    return np.concatenate([xy, z], axis=-1)


@FAST
@given(cam=cameras, xyz=poses())
def test_uvd_xyz_round_trip(cam, xyz):
    uvd = cam.xyz_to_uvd(xyz)
    np.testing.assert_allclose(cam.uvd_to_xyz(uvd), xyz, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cam.xyz_to_uvd(cam.uvd_to_xyz(uvd)), uvd, rtol=0, atol=1e-6)
    # eqs. 4.3-4.5 term by term: the depth is z, u grows with x, v falls with y (NYU's flipped y)
    np.testing.assert_array_equal(uvd[..., 2], xyz[..., 2])
    np.testing.assert_allclose((uvd[..., 0] - cam.cx) * xyz[..., 2], cam.fx * xyz[..., 0], atol=1e-6 * cam.fx * 800)
    np.testing.assert_allclose((cam.cy - uvd[..., 1]) * xyz[..., 2], cam.fy * xyz[..., 1], atol=1e-6 * cam.fy * 800)


@FAST
@given(xyz=poses(), data=st.data())
def test_normalise_denormalise_round_trip(xyz, data):
    n = len(xyz)
    centre = data.draw(arrays(np.float64, (n, 3), elements=st.floats(-500, 2000, **finite)))
    cube = data.draw(arrays(np.float64, (n,), elements=st.floats(50, 1000, **finite)))
    norm = normalise_joints(xyz, centre, cube)
    np.testing.assert_allclose(denormalise_joints(norm, centre, cube), xyz, rtol=0, atol=1e-9 * 4000)
    # eqs. 4.7-4.9: the centre maps to 0, a point half a cube edge further along an axis to 1
    np.testing.assert_allclose(normalise_joints(centre[:, None] + cube[:, None, None] / 2, centre, cube), 1.0)
    np.testing.assert_allclose(normalise_joints(centre[:, None], centre, cube), 0.0, atol=1e-12)
    clipped = normalise_joints(xyz, centre, cube, clip=True)
    assert np.abs(clipped).max() <= 1
    inside = np.abs(norm) <= 1
    np.testing.assert_array_equal(clipped[inside], norm[inside])


@FAST
@given(w=st.integers(1, 700), h=st.integers(1, 700), size=st.integers(8, 256), rule=st.sampled_from(["round", "floor"]))
def test_paste_geometry_keeps_the_aspect_and_centres(w, h, size, rule):
    """Both rules keep the aspect ratio (the short side rounded, or floored as the author's code does) and centre
    the resized crop on the canvas to within a pixel."""
    nw, nh, ox, oy = paste_geometry(w, h, size, rule)
    assert max(nw, nh) == size and 1 <= min(nw, nh) <= size
    s = size / max(w, h)
    slack = 0.5 + 1e-9 if rule == "round" else 1.0
    assert abs(nw - w * s) <= slack or nw == 1
    assert abs(nh - h * s) <= slack or nh == 1
    if rule == "floor":
        assert (nw <= w * s + 1e-9 or nw == 1) and (nh <= h * s + 1e-9 or nh == 1)
    assert abs(size - nw - 2 * ox) <= 1 and abs(size - nh - 2 * oy) <= 1


@FAST
@example(cam=Camera(), u=3.0, v=470.0, zc=1050.0, cube=600.0, size=96)  # the box reaches past both edges
@example(cam=Camera(), u=636.0, v=2.0, zc=1050.0, cube=600.0, size=96)
@given(cam=cameras, u=st.floats(0, 639.9), v=st.floats(0, 479.9), zc=st.floats(1000, 1100),
       cube=st.floats(220, 600), size=st.integers(8, 96))
def test_crop_reads_the_pixels_its_transform_names(cam, u, v, zc, cube, size):
    """A depth image whose value encodes its pixel's position (1000 + u mod 10 + 10 (v mod 10) mm, all inside the
    cube so none is clamped): each crop pixel holds the value of the image pixel its inverse transform lands on,
    the background (+1) where that lies outside the image, and the box is the cube's projection."""
    vv, uu = np.mgrid[0:480, 0:640]
    depth = (1000 + uu % 10 + 10 * (vv % 10)).astype(np.uint16)
    crop = crop_hand(depth, np.array([u, v, zc]), cube, size, camera=cam)
    box = crop_box(np.array([u, v, zc]), cube, cam)
    np.testing.assert_array_equal(crop.box, box)
    assert box[0] <= u < box[2] and box[1] <= v < box[3]
    assert abs((box[2] - box[0]) - cube * cam.fx / zc) <= 1 and abs((box[3] - box[1]) - cube * cam.fy / zc) <= 1
    nw, nh, ox, oy = paste_geometry(int(box[2] - box[0]), int(box[3] - box[1]), size)
    inv = np.linalg.inv(crop.transform.astype(np.float64))
    cols, rows = np.meshgrid(np.arange(ox, ox + nw), np.arange(oy, oy + nh))
    src = inv @ np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    su, sv = np.floor(src[0] + 0.5 + 1e-4).astype(int), np.floor(src[1] + 0.5 + 1e-4).astype(int)
    got = crop.depth[rows.ravel(), cols.ravel()].astype(np.float64)
    inside = (su >= 0) & (su < 640) & (sv >= 0) & (sv < 480)
    want = 1000 + su % 10 + 10 * (sv % 10)
    np.testing.assert_allclose(got[inside] * (cube / 2) + zc, want[inside], atol=1e-2)
    assert (got[~inside] == 1).all()
    pasted = np.zeros((size, size), bool)
    pasted[oy:oy + nh, ox:ox + nw] = True
    assert (crop.depth[~pasted] == 1).all()  # the canvas outside the paste is background


@FAST
@given(uvd=arrays(np.float64, st.tuples(st.integers(1, 5), st.just(14), st.just(3)),
                  elements=st.floats(-1000, 5000, **finite)))
def test_kit_format_write_read_round_trip(uvd, tmp_path_factory):
    path = tmp_path_factory.mktemp("kit") / "pred.txt"
    write_joints_txt(path, uvd)
    back = read_joints_txt(path)
    assert back.shape == uvd.shape
    np.testing.assert_allclose(back, uvd, rtol=0, atol=5e-5 + 1e-12)  # written with 4 decimals
    assert len(path.read_text().splitlines()) == len(uvd)


@settings(max_examples=150, deadline=None)
@given(vals=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.4, 0.5]), min_size=60, max_size=60),
       patience=st.integers(1, 4), max_halvings=st.integers(0, 3), max_epochs=st.integers(1, 12))
def test_next_state_is_the_authors_loop_on_any_curve(vals, patience, max_halvings, max_epochs):
    """halve-restore-rewind over random validation curves (few distinct values, so ties and plateaus are common):
    the epochs run, the halvings and the end are those of the author's loop."""
    epochs, _, s = _schedule(vals, patience=patience, max_halvings=max_halvings, max_epochs=max_epochs, lr=1.0,
                             on_plateau="halve-restore-rewind")
    assert s.status != "running", "60 epochs were not enough to end"
    want_epochs, halvings, end = _authors_loop(vals, max_epochs, patience, max_halvings)
    assert (epochs, s.halvings, s.status, s.lr) == (want_epochs, halvings, end, 0.5 ** halvings)
    assert s.best_val == min(vals[:len(epochs)]) and s.trained == len(epochs)
    assert not math.isinf(s.best_val)
