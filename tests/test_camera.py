import numpy as np

from hpe.camera import NYU_CAMERA, Camera


def test_round_trip_exact_any_leading_shape():
    rng = np.random.default_rng(0)
    xyz = rng.uniform([-300, -300, 300], [300, 300, 1500], size=(4, 5, 14, 3))
    back = NYU_CAMERA.uvd_to_xyz(NYU_CAMERA.xyz_to_uvd(xyz))
    assert back.shape == xyz.shape
    assert np.abs(back - xyz).max() < 1e-6


def test_principal_point_and_y_flip():
    uvd = NYU_CAMERA.xyz_to_uvd(np.array([0.0, 100.0, 1000.0]))
    assert uvd[0] == 320.0 and uvd[1] < 240.0  # y up in the camera frame -> smaller row
    x = NYU_CAMERA.uvd_to_xyz(np.array([320 + 588.036865, 240.0, 1000.0]))
    np.testing.assert_allclose(x, [1000.0, 0.0, 1000.0])


def test_constants():
    assert abs(NYU_CAMERA.fx - 640 / 1.08836710) < 1e-3
    assert abs(NYU_CAMERA.fy - 480 / 0.817612648) < 1e-3


def test_another_cameras_intrinsics_are_used_each_in_its_place():
    """Eqs. 4.3-4.5 with four different intrinsics, worked by hand: u = fx x / z + cx, v = cy - fy y / z, d = z."""
    cam = Camera(fx=500.0, fy=400.0, cx=300.0, cy=200.0)
    uvd = cam.xyz_to_uvd(np.array([[100.0, 50.0, 1000.0], [-40.0, -80.0, 800.0]]))
    np.testing.assert_allclose(uvd, [[350.0, 180.0, 1000.0], [275.0, 240.0, 800.0]])
    np.testing.assert_allclose(cam.uvd_to_xyz(uvd), [[100.0, 50.0, 1000.0], [-40.0, -80.0, 800.0]])
    np.testing.assert_allclose(cam.uvd_to_xyz(np.array([300.0, 200.0, 650.0])), [0.0, 0.0, 650.0])


def test_float64_whatever_the_input():
    """float32 or integer input is computed in float64 (the 1e-6 mm round trip needs it)."""
    xyz32 = np.array([[123.4, -56.7, 987.6]], np.float32)
    uvd = NYU_CAMERA.xyz_to_uvd(xyz32)
    assert uvd.dtype == np.float64 and NYU_CAMERA.uvd_to_xyz(uvd.astype(np.float32)).dtype == np.float64
    np.testing.assert_allclose(NYU_CAMERA.uvd_to_xyz(uvd), xyz32.astype(np.float64), atol=1e-9)
    assert NYU_CAMERA.uvd_to_xyz(np.array([320, 240, 1000])).dtype == np.float64
