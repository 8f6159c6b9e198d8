import numpy as np
import pytest

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.crop import (
    centre_of_mass,
    crop_box,
    crop_hand,
    denormalise_joints,
    find_centre,
    hand_mask,
    normalise_joints,
    segment_nearest,
    standardise_rgb,
)
from hpe.nyu import EVAL_JOINTS, PALM_JOINT, PALM_SLOT, NYUSplit, read_depth, read_joints_txt, read_rgb


def _round_trip_px(uvd, cube=300.0):
    xyz = NYU_CAMERA.uvd_to_xyz(uvd)
    centre = NYU_CAMERA.uvd_to_xyz(uvd[..., PALM_SLOT, :])
    norm = normalise_joints(xyz, centre, cube)
    back = NYU_CAMERA.xyz_to_uvd(denormalise_joints(norm, centre, cube))
    return np.abs(back - uvd)[..., :2].max(), norm


def test_round_trip_real_frame(nyu_labels):
    uvd = read_joints_txt(nyu_labels)[:1]
    err, norm = _round_trip_px(uvd)
    assert err < 0.01
    assert np.abs(norm).max() < 1


def test_round_trip_synthetic(synthetic_root):
    s = NYUSplit(synthetic_root, "test")
    err, _ = _round_trip_px(s.joints.uvd[:, EVAL_JOINTS])
    assert err < 0.01


def test_crop_real_frame(sample_frame, nyu_labels):
    depth = read_depth(sample_frame[0])
    rgb = read_rgb(sample_frame[1])
    palm = read_joints_txt(nyu_labels)[0, PALM_SLOT]
    c = crop_hand(depth, palm, 300.0, 128, rgb)
    assert c.depth.shape == (128, 128) and c.rgb.shape == (128, 128, 3)
    assert c.depth.min() >= -1 and c.depth.max() == 1.0
    m = hand_mask(c.depth)
    assert 0.15 < m.mean() < 0.7
    # eq. 4.6 at the palm pixel: (752 - 778.3) / 150
    col, row = (c.transform @ [palm[0], palm[1], 1])[:2]
    assert abs(c.depth[int(round(row)), int(round(col))] - (752 - 778.3) / 150) < 0.05
    # box: u_c -/+ 150 fx / d_c
    box = crop_box(palm, 300.0)
    assert box[2] - box[0] == pytest.approx(300 * NYU_CAMERA.fx / palm[2], abs=1.5)


def test_centres_agree(synthetic_root):
    s = NYUSplit(synthetic_root, "train")
    depth = read_depth(s.depth_path(2))
    palm = s.joints.uvd[1, PALM_JOINT]
    com = find_centre(depth, "com", 300.0, palm)
    seg = segment_nearest(depth, 300.0)
    assert np.linalg.norm(com[:2] - palm[:2]) < 40
    assert seg is not None and np.linalg.norm(seg[:2] - com[:2]) < 40
    with pytest.raises(ValueError, match="needs the ground-truth palm"):
        find_centre(depth, "palm", 300.0)
    assert np.allclose(find_centre(depth, "com", 300.0), seg)  # without labels: around the nearest object
    assert centre_of_mass(np.zeros_like(depth), palm, 300.0) is None


def test_bad_centres():
    depth = np.full((480, 640), 2001, np.uint16)
    with pytest.raises(DataError, match="outside the 640x480 image"):
        crop_hand(depth, np.array([700.0, 100.0, 800.0]), 300.0)
    with pytest.raises(DataError, match="not a valid depth"):
        crop_hand(depth, np.array([300.0, 100.0, 0.0]), 300.0)
    with pytest.raises(DataError, match="no depth pixels"):
        find_centre(depth, "segment", 300.0)


def test_icip2018_clips():
    norm = normalise_joints(np.array([[[0, 0, 1200.0]]]), np.array([[0, 0, 800.0]]), 300.0, clip=True)
    assert norm.max() == 1.0


def test_hand_mask_rules():
    """hand: every pixel nearer than the background; hand-not-front (the author's) also drops the front face."""
    norm = np.array([[-1.0, -0.5, 0.0, 0.99, 1.0]], np.float32)
    np.testing.assert_array_equal(hand_mask(norm), [[True, True, True, True, False]])
    np.testing.assert_array_equal(hand_mask(norm, "hand-not-front"), [[False, True, True, True, False]])
    import torch
    assert hand_mask(torch.from_numpy(norm), "hand-not-front").tolist() == [[False, True, True, True, False]]


def test_depth_in_front_of_the_cube_is_clamped_to_its_front_face():
    """Eq. 4.6 with the clamp: nearer than the cube's front face reads -1, inside the cube (d - d_c) / (cube / 2),
    behind it or missing +1."""
    depth = np.zeros((480, 640), np.uint16)
    depth[200:280, 280:320] = 500    # 450 mm in front of the front face (950 mm)
    depth[200:280, 320:360] = 1000   # inside the cube
    depth[280:300, 280:360] = 1400   # behind the back face (1250 mm)
    c = crop_hand(depth, np.array([320.0, 240.0, 1100.0]), 300.0, 64)
    np.testing.assert_allclose(np.unique(c.depth), [-1.0, (1000 - 1100) / 150, 1.0], rtol=1e-6)
    col, row = (c.transform @ [300, 240, 1])[:2]
    assert c.depth[int(round(row)), int(round(col))] == -1.0


def test_crop_centre_limits():
    """The centre must lie inside the image (u < width, v < height) at a depth from the sensor's minimum to its
    maximum plus the cube; the default crop is 128 px."""
    depth = np.full((480, 640), 1000, np.uint16)
    for u, v in ((640.0, 100.0), (100.0, 480.0), (-0.01, 100.0)):
        with pytest.raises(DataError, match="outside the 640x480 image"):
            crop_hand(depth, np.array([u, v, 800.0]), 300.0)
    assert crop_hand(depth, np.array([639.99, 479.99, 800.0]), 300.0).depth.shape == (128, 128)
    crop_hand(depth, np.array([320.0, 240.0, 10.0]), 300.0, 16)    # DEPTH_MIN_MM: accepted
    crop_hand(depth, np.array([320.0, 240.0, 1800.0]), 300.0, 16)  # DEPTH_MAX_MM + cube: accepted
    for zc in (9.99, 1800.01):
        with pytest.raises(DataError, match="not a valid depth"):
            crop_hand(depth, np.array([320.0, 240.0, zc]), 300.0, 16)


def test_standardise_rgb_eqs_4_10_to_4_12():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)
    mask = np.array([[True, False]])
    out = standardise_rgb(rgb, mask, np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 8.0]))
    np.testing.assert_allclose(out, [[[4.5, 4.5, 3.375], [-0.5, -0.5, -0.375]]])
    assert out.dtype == np.float64 or out.dtype == np.float32
    assert standardise_rgb(rgb, mask, np.zeros(3, np.float32), np.ones(3, np.float32)).dtype == np.float32


def test_an_empty_crop_box_is_refused():
    """A cube so small that its projection is under a pixel wide (or high) leaves nothing to crop; one pixel is
    enough."""
    depth = np.full((480, 640), 1000, np.uint16)
    for u, v in ((320.5, 240.9), (320.9, 240.5)):  # 0 x 1 and 1 x 0 pixels
        with pytest.raises(DataError, match=r"empty crop box \[\d+, \d+, \d+, \d+\] for centre depth 1000.0 mm"):
            crop_hand(depth, np.array([u, v, 1000.0]), 0.5, 8)
    c = crop_hand(depth, np.array([320.9, 240.9, 1000.0]), 0.5, 8)  # 1 x 1 pixel
    assert (c.box[2:] - c.box[:2]).tolist() == [1, 1] and (c.depth == 0).all()


def test_crop_output_types_and_the_rgb_resampling():
    """Crop's documented types (float32 depth and transform, int32 box, uint8 RGB or None) and its RGB: the box's
    pixels (zero outside the image) resized bilinearly onto the canvas."""
    from PIL import Image
    depth = np.full((480, 640), 1000, np.uint16)
    c = crop_hand(depth, np.array([5.0, 240.0, 1000.0]), 300.0, 32)
    assert c.rgb is None and c.depth.dtype == np.float32 and c.transform.dtype == np.float32
    assert c.box.dtype == np.int32
    rgb = np.random.default_rng(0).integers(1, 256, (480, 640, 3), dtype=np.uint8)
    c = crop_hand(depth, np.array([5.0, 240.0, 1000.0]), 300.0, 32, rgb)
    assert c.rgb.dtype == np.uint8 and c.rgb.shape == (32, 32, 3)
    u0, v0, u1, v1 = (int(b) for b in c.box)
    region = np.zeros((v1 - v0, u1 - u0, 3), np.uint8)
    region[:, -u0:] = rgb[v0:v1, :u1]  # the box starts left of the image
    want = np.asarray(Image.fromarray(region).resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(c.rgb, want)


def test_a_box_over_the_images_last_row_and_column_reads_them():
    """A crop whose box runs past the bottom-right corner samples the image's last row and column themselves (and
    background beyond): depths that differ from row to row and column to column, at one source pixel per crop pixel."""
    vv, uu = np.mgrid[0:480, 0:640]
    depth = (690 + vv % 20 + 0 * uu).astype(np.uint16)  # 690..709 mm: every row inside the cube, 478 and 479 differ
    cube = 2 * 64 * 700 / NYU_CAMERA.fx  # a 128-pixel box across at 700 mm: one source pixel per crop pixel
    crop = crop_hand(depth, np.array([600.5, 440.5, 700.0]), cube, 128)
    box = crop.box
    assert box[2] - box[0] == 128 and box[2] > 640 and box[3] > 480
    inside = crop.depth[:, :, None] < 1
    last_row = max(j for j in range(128) if inside[j].any())
    assert np.allclose(crop.depth[last_row][inside[last_row, :, 0]], (709 - 700) / (cube / 2))  # row 479 itself
    depth_cols = (690 + uu % 20 + 0 * vv).astype(np.uint16)
    crop = crop_hand(depth_cols, np.array([600.5, 440.5, 700.0]), cube, 128)
    inside = crop.depth < 1
    last_col = max(i for i in range(128) if inside[:, i].any())
    assert np.allclose(crop.depth[:, last_col][inside[:, last_col]], (639 % 20 + 690 - 700) / (cube / 2))  # column 639
