"""The evaluation metrics (thesis 4.4.2) on hand-worked numbers."""
import numpy as np
import pytest

from hpe import DataError
from hpe.metrics import THRESHOLDS, joint_errors, normalised_mse, success_rate, summarise


def test_joint_errors_are_euclidean_per_joint():
    gt = np.zeros((2, 3, 3))
    pred = np.array([[[3, 4, 0], [0, 0, 0], [1, 2, 2]], [[0, 0, 12], [5, 0, 12], [-1, -1, -1]]], float)
    np.testing.assert_allclose(joint_errors(pred, gt), [[5, 0, 3], [12, 13, 3 ** 0.5]])
    np.testing.assert_allclose(joint_errors(gt + 1, gt + 1), 0)
    with pytest.raises(DataError, match=r"prediction shape \(2, 2, 3\) does not match ground truth \(2, 3, 3\)"):
        joint_errors(pred[:, :2], gt)
    bad = pred.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(DataError, match="NaN/inf values \\(first at frame 2\\)"):
        joint_errors(bad, gt)
    bad[0, 0, 1] = np.inf
    with pytest.raises(DataError, match="first at frame 1"):
        joint_errors(bad, gt)


def test_success_rate_is_the_fraction_of_frames_whose_worst_joint_is_within():
    """The thesis's definition: a frame succeeds at T when its MAXIMUM joint error is <= T (inclusive)."""
    e = np.array([[10.0, 20.0, 80.0], [0.0, 0.0, 0.0], [40.0, 41.0, 39.0], [80.5, 1.0, 1.0]])
    rate = success_rate(e)
    assert rate.shape == (81,) and (THRESHOLDS == np.arange(81)).all()
    assert rate[0] == 0.25 and rate[40] == 0.25 and rate[41] == 0.5 and rate[79] == 0.5 and rate[80] == 0.75
    np.testing.assert_allclose(success_rate(e, [0, 41, 80, 81], "max"), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(success_rate(e, [0, 27.5, 37, 40], "mean"), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(success_rate(e, [0, 1, 39, 80], "joint"), [3 / 12, 5 / 12, 8 / 12, 11 / 12])
    with pytest.raises(ValueError, match=r"unknown success-rate kind 'median' \(choose from max, mean, joint\)"):
        success_rate(e, kind="median")


def test_normalised_mse_is_per_coordinate():
    target = np.arange(12.0).reshape(2, 2, 3) / 10
    pred = target.copy()
    pred[0, 0, 0], pred[1, 1, 2] = pred[0, 0, 0] + 2.0, pred[1, 1, 2] - 4.0
    assert normalised_mse(pred, target) == pytest.approx((4 + 16) / 12)
    assert normalised_mse(pred.astype(np.float32), target) == pytest.approx((4 + 16) / 12)
    assert normalised_mse(target, target) == 0.0


def test_summarise():
    e = np.array([[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]])
    s = summarise(e, np.array([1, 2, 2]), names=("a", "b"))
    assert s["frames"] == 3 and s["mean_mm"] == 6.0 and s["success"] == "max"
    assert s["per_joint_mm"] == {"a": 5.0, "b": 7.0}
    assert s["per_subject_mm"] == {1: 2.0, 2: 8.0}
    assert s["success_rate"][3] == 1 / 3 and s["success_rate"][6] == 1 / 3 and s["success_rate"][7] == 2 / 3
    assert s["success_rate"][80] == 1.0 and len(s["success_rate"]) == 81
    assert summarise(e, kind="mean")["success_rate"][2] == 1 / 3 and "per_subject_mm" not in summarise(e)
