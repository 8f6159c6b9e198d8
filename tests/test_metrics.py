import shutil

import numpy as np
import pytest

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.evaluate import evaluate_files
from hpe.metrics import joint_errors, read_tompson, read_uvd_txt, success_rate

GOLDEN = {"CVWW15_NYU_Prior.txt": 20.750, "CVWW15_NYU_Prior-Refinement.txt": 19.726,
          "IJCAI16_NYU_DeepModel.txt": 17.036, "ICCV15_NYU_Feedback.txt": 15.973}


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_baseline_means(baselines, name):
    gt = NYU_CAMERA.uvd_to_xyz(read_uvd_txt(baselines / "nyu_test_groundtruth_label.txt"))
    pred = NYU_CAMERA.uvd_to_xyz(read_uvd_txt(baselines / name))
    assert pred.shape == (8252, 14, 3)
    assert round(joint_errors(pred, gt).mean(), 3) == GOLDEN[name]


def test_cli_table_json_csv(baselines, tmp_path, capsys):
    res = evaluate_files([baselines / "ICCV15_NYU_Feedback.txt"], baselines / "nyu_test_groundtruth_label.txt",
                         json_path=tmp_path / "e.json", csv_path=tmp_path / "e.csv")
    r = res["ICCV15_NYU_Feedback"]
    assert f"{r['mean_mm']:.3f}" == "15.973"
    assert set(r["per_subject_mm"]) == {1, 2} and r["success_rate"][80] > r["success_rate"][20]
    assert "15.973" in capsys.readouterr().out
    assert (tmp_path / "e.json").is_file() and "ICCV15_NYU_Feedback,15.97" in (tmp_path / "e.csv").read_text()


def test_reader_formats_and_errors(tmp_path):
    row = " ".join(["1.5"] * 42)
    (tmp_path / "crlf.txt").write_bytes((row + " \r\n" + row + " \r\n").encode())
    assert read_uvd_txt(tmp_path / "crlf.txt").shape == (2, 14, 3)
    (tmp_path / "short.txt").write_text(row + "\n" + " ".join(["1"] * 41) + "\n")
    with pytest.raises(DataError, match="short.txt:2: expected 42 numbers, got 41"):
        read_uvd_txt(tmp_path / "short.txt")
    (tmp_path / "nan.txt").write_text(row.replace("1.5", "nan", 1) + "\n")
    with pytest.raises(DataError, match="nan.txt:1: NaN"):
        read_uvd_txt(tmp_path / "nan.txt")


def test_success_rate_uses_max_joint_error():
    e = np.array([[1.0, 30.0], [5.0, 5.0]])
    np.testing.assert_allclose(success_rate(e, [0, 5, 29, 30]), [0, 0.5, 0.5, 1.0])


def test_tompson_lift_on_real_frame(baselines, tmp_path):
    depth_dir = tmp_path / "test"
    depth_dir.mkdir()
    shutil.copy(baselines / "sample" / "depth_1_0000001.png", depth_dir)
    gt = read_uvd_txt(baselines / "nyu_test_groundtruth_label.txt")[:1]
    uvd = read_tompson(baselines / "test_predictions.mat", depth_dir, gt)
    assert uvd.shape == (1, 14, 3)
    uv_txt = np.loadtxt(baselines / "derived" / "TOG14_NYU_Tompson_uvconf.txt", max_rows=1).reshape(14, 3)
    np.testing.assert_allclose(uvd[0, :, :2], uv_txt[:, :2], atol=1e-4)
    from hpe.nyu import read_depth
    d = read_depth(depth_dir / "depth_1_0000001.png")
    for j in range(14):
        u, v = int(uv_txt[j, 0]), int(uv_txt[j, 1])
        expect = d[v, u] if abs(float(d[v, u]) - gt[0, 13, 2]) <= 150 else gt[0, j, 2]
        assert uvd[0, j, 2] == pytest.approx(expect)
    err = joint_errors(NYU_CAMERA.uvd_to_xyz(uvd), NYU_CAMERA.uvd_to_xyz(gt)).mean()
    assert err < 40
