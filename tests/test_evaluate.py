"""The one evaluation path, on the bundled NYU ground truth and baselines (nothing skipped for want of data)."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hpe import DataError
from hpe.baselines import THESIS_BASELINES, bundled
from hpe.camera import NYU_CAMERA
from hpe.evaluate import collect, format_table, load_ground_truth, summaries
from hpe.metrics import joint_errors, success_rate
from hpe.nyu import EVAL_JOINTS, JOINT_ORDERS, read_joints_txt, read_tompson, write_joints_txt

GOLDEN = {"DeepPrior": 20.750, "DeepPrior-Refine": 19.726, "DeepModel": 17.036, "Feedback": 15.973}


@pytest.fixture(scope="module")
def gt():
    return load_ground_truth()  # the bundled labels


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_baseline_means(gt, name):
    pred = NYU_CAMERA.uvd_to_xyz(read_joints_txt(bundled(THESIS_BASELINES[name])))
    assert pred.shape == (8252, 14, 3)
    assert round(joint_errors(pred, gt.xyz).mean(), 3) == GOLDEN[name]


def test_cli_defaults_to_the_bundled_labels(tmp_path):
    feedback = bundled("ICCV15_NYU_Feedback.txt")
    r = subprocess.run([sys.executable, "-m", "hpe", "evaluate", "--pred", str(feedback), "--json",
                        str(tmp_path / "e.json"), "--csv", str(tmp_path / "e.csv")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "nyu_test_groundtruth_label.txt" in r.stdout and "15.973" in r.stdout
    assert r.stdout.splitlines()[2].split()[:2] == ["method", "mean"]  # a header row
    doc = json.loads((tmp_path / "e.json").read_text())["methods"]["ICCV15_NYU_Feedback"]
    assert f"{doc['mean_mm']:.3f}" == "15.973" and set(doc["per_subject_mm"]) == {"1", "2"}
    assert "ICCV15_NYU_Feedback,15.97" in (tmp_path / "e.csv").read_text()


def test_xyz_files_score_the_same(gt, tmp_path):
    xyz = NYU_CAMERA.uvd_to_xyz(read_joints_txt(bundled("ICCV15_NYU_Feedback.txt")))
    write_joints_txt(tmp_path / "feedback_xyz.txt", xyz)
    m = collect([("Feedback", tmp_path / "feedback_xyz.txt")], gt, fmt="xyz")[0]
    assert f"{m.errors.mean():.3f}" == "15.973"
    with pytest.raises(DataError, match="looks like an xyz file \\(pass --format xyz\\)"):
        collect([("Feedback", tmp_path / "feedback_xyz.txt")], gt, fmt="uvd")


@pytest.mark.parametrize("transform, message", [
    (lambda p: p * np.array([1, 1, 0.001]), "depths in metres"),
    (lambda p: p + np.array([0, 0, 2500]), "depths lie outside 100-3000 mm"),
    (lambda p: p * np.array([20, 20, 1]), "u, v lie far outside the 640x480 image"),
    (lambda p: np.roll(p, 1000, axis=0), r"fit better shifted by -1000 line\(s\) \(15.4 mm against 196.0 mm"),
    (lambda p: p[:, [EVAL_JOINTS.index(j) for j in JOINT_ORDERS["fusenet"]]],
     "48.6 mm in the declared joint order, but 16.0 mm read in the 'fusenet' order: pass --joint-order fusenet"),
])
def test_implausible_files_are_refused_with_the_likely_cause(gt, tmp_path, transform, message):
    write_joints_txt(tmp_path / "bad.txt", transform(read_joints_txt(bundled("ICCV15_NYU_Feedback.txt"))))
    with pytest.raises(DataError, match=message):
        collect([("bad", tmp_path / "bad.txt")], gt)


def test_implausible_rules_at_their_bounds():
    """The xyz-as-uvd rule needs more than 5 % negative u AND every |u|, |v| under 400; metres means a median depth
    under 10.  Just inside each bound the rule stays quiet, just past it, it speaks."""
    from hpe.evaluate import _implausible
    n = 100
    pred = np.tile(np.array([300.0, 200.0, 800.0]), (n, 14, 1))
    assert _implausible(pred, "uvd", NYU_CAMERA) is None
    five = pred.copy()
    five[:5, :, 0] = -1.0  # exactly 5 % negative u: quiet
    assert _implausible(five, "uvd", NYU_CAMERA) is None
    six = pred.copy()
    six[:6, :, 0] = -1.0
    assert _implausible(six, "uvd", NYU_CAMERA) == ("many u values are negative: it looks like an xyz file "
                                                    "(pass --format xyz)")
    zero = pred.copy()
    zero[:, :, 0] = 0.0  # u = 0 is a pixel column, not a negative coordinate
    assert _implausible(zero, "uvd", NYU_CAMERA) is None
    wide = six.copy()
    wide[0, 0, 1] = 400.0  # one |v| at 400: not all under 400, so not the xyz rule
    assert "xyz file" not in (_implausible(wide, "uvd", NYU_CAMERA) or "")
    inside = six.copy()
    inside[0, 0, 1] = 399.9
    assert "xyz file" in _implausible(inside, "uvd", NYU_CAMERA)
    v_neg = pred.copy()
    v_neg[:50, :, 1] = -1.0  # negative v alone is not the xyz rule (it reads u)
    assert "xyz file" not in (_implausible(v_neg, "uvd", NYU_CAMERA) or "")
    metres = pred.copy()
    metres[..., 2] = 10.0  # a median of exactly 10 is not "under 10"; it fails the depth range instead
    assert "metres" not in _implausible(metres, "uvd", NYU_CAMERA)
    metres[..., 2] = 9.99
    assert "depths in metres" in _implausible(metres, "uvd", NYU_CAMERA)
    xyz = np.tile(np.array([10.0, -20.0, 10.0]), (n, 14, 1))  # xyz: the metres rule reads z
    assert "metres" not in (_implausible(xyz, "xyz", NYU_CAMERA) or "")
    xyz[..., 2] = 9.99
    assert _implausible(xyz, "xyz", NYU_CAMERA) == "the median z is 9.99: coordinates in metres? (hpe wants mm)"
    # u, v far outside the image: more than 1 % of the values past -W, 2W, -H or 2H, each bound on its own
    for axis, edge, past in ((0, -640.0, -640.01), (0, 1280.0, 1280.01), (1, -480.0, -480.01), (1, 960.0, 960.01)):
        far = pred.copy()
        far[:2, :, axis] = edge  # on the bound: inside
        assert _implausible(far, "uvd", NYU_CAMERA) is None, (axis, edge)
        far[:2, :, axis] = past  # 2 % past it
        assert "lie far outside the 640x480 image" in _implausible(far, "uvd", NYU_CAMERA), (axis, past)
        far[1, :, axis] = 300.0 if axis == 0 else 200.0  # exactly 1 %: tolerated
        assert _implausible(far, "uvd", NYU_CAMERA) is None, (axis, past)
    # depths outside 100-3000 mm: more than 1 % of them
    deep = pred.copy()
    deep[:2, :, 2] = 100.0
    deep[2:4, :, 2] = 3000.0  # on the bounds: inside
    assert _implausible(deep, "uvd", NYU_CAMERA) is None
    deep[:2, :, 2] = 5000.0
    assert _implausible(deep, "uvd", NYU_CAMERA) == ("2.0% of the depths lie outside 100-3000 mm (wrong units or "
                                                     "format?)")
    half = pred.copy()
    half[:50, :, 2] = 5000.0
    assert _implausible(half, "uvd", NYU_CAMERA).startswith("50.0% of the depths lie outside")
    deep[1, :, 2] = 800.0  # exactly 1 %: tolerated
    assert _implausible(deep, "uvd", NYU_CAMERA) is None


def test_summaries_carry_source_warning_published_and_subjects(gt):
    from hpe.evaluate import Method
    xyz = read_joints_txt(bundled("ICCV15_NYU_Feedback.txt"))
    m = Method("Feedback", NYU_CAMERA.uvd_to_xyz(xyz), "feedback.txt", published_mm=15.973, warning="unfinished run")
    m.errors = joint_errors(m.xyz, gt.xyz)
    s = summaries([m], gt, success="mean")["Feedback"]
    assert s["source"] == "feedback.txt" and s["warning"] == "unfinished run" and s["published_mm"] == 15.973
    assert s["success"] == "mean" and set(s["per_subject_mm"]) == {1, 2} and s["agrees_with_published"] is True
    from hpe.evaluate import PUBLISHED_TOLERANCE_MM
    exact = Method("exact", gt.xyz, "gt", published_mm=PUBLISHED_TOLERANCE_MM)
    exact.errors = np.zeros(gt.xyz.shape[:2])  # mean 0.0: the published mean sits exactly at the tolerance
    assert summaries([exact], gt)["exact"]["agrees_with_published"] is False  # agreeing is strictly within
    m.published_mm, m.warning = None, None
    plain = summaries([m], gt)["Feedback"]
    assert "warning" not in plain and "published_mm" not in plain and plain["success"] == "max"


def test_other_joint_orders(gt, tmp_path):
    kit = read_joints_txt(bundled("ICCV15_NYU_Feedback.txt"))
    order = JOINT_ORDERS["fusenet"]
    write_joints_txt(tmp_path / "fusenet.txt", kit[:, [EVAL_JOINTS.index(j) for j in order]])
    m = collect([("f", tmp_path / "fusenet.txt")], gt, joint_order=order)[0]
    assert f"{m.errors.mean():.3f}" == "15.973"


def _run_folder(folder, pred_uvd, data="data/x.h5", fingerprint="f00", status="done", **config):
    """A run folder as `hpe train` leaves it, as far as evaluate reads it."""
    import json as _json
    folder.mkdir()
    (folder / "config.json").write_text(_json.dumps({"config": {"data": data, **config},
                                                     "data": {"fingerprint": fingerprint}}))
    if status:
        (folder / "result.json").write_text(_json.dumps({"status": status, "reason": "reached max_epochs"}))
    if pred_uvd is not None:
        write_joints_txt(folder / "test_predictions_uvd.txt", pred_uvd)
    return folder


def test_files_that_are_not_the_test_lists_predictions(gt, tmp_path):
    """What load_method refuses after the plausibility rules, each with its exact message: rows without a depth
    (uvd) or z (xyz), two joints exchanged, a block pasted twice (a kit file, with its published mean, is exempt: the
    kit's files are as published), and a mean error no hand pose method has."""
    from hpe.evaluate import load_method
    p = read_joints_txt(bundled("ICCV15_NYU_Feedback.txt"))

    def refused(arr, fmt="uvd", published=None):
        write_joints_txt(tmp_path / "p.txt", arr)
        with pytest.raises(DataError) as exc:
            load_method("p", tmp_path / "p.txt", gt, fmt, published_mm=published)
        return str(exc.value)

    zero = p.copy()
    zero[3, 0, 2] = 0.0
    assert "1 row(s) have zero or negative depth (first: line 4)" in refused(zero)
    xyz = NYU_CAMERA.uvd_to_xyz(p)
    xyz[3, 0, 2] = -1.0
    assert "1 row(s) have zero or negative z (first: line 4)" in refused(xyz, "xyz")
    swapped = p[:, [0, 1, 2, 3, 5, 4] + list(range(6, 14))]
    message = refused(swapped)
    assert re.search(r"p\.txt is not a prediction file of \S+ as given: joints \S+ and \S+ look exchanged: mean "
                     r"error \d+\.\d mm as given, \d+\.\d mm with the two swapped", message), message
    pasted = np.concatenate([p[:100], p[200:300], p[200:]])
    assert "repeat" in refused(pasted)
    write_joints_txt(tmp_path / "kit.txt", pasted)
    assert load_method("kit", tmp_path / "kit.txt", gt, published_mm=16.0).errors.shape == (len(p), 14)
    far = p + np.array([0.0, 0.0, 200.0])
    assert refused(far).endswith("is implausible for a hand pose method: another joint order (--joint-order), "
                                 "another test set or frame order, or the wrong --format?")


def test_a_run_folder_is_scored_through_the_run_contract(gt, synthetic_h5, tmp_path):
    """evaluate --pred RUN: its test_predictions_uvd.txt scored as the file itself would be, under the run-folder
    contract (unfinished refused unless allowed, then carried as a warning), with the data check for a prepared
    ground truth and a hint naming the run's data when the frames do not match."""
    from hpe.dataset import fingerprint, open_prepared
    from hpe.evaluate import load_method
    feedback = read_joints_txt(bundled("ICCV15_NYU_Feedback.txt"))
    run = _run_folder(tmp_path / "run", feedback)
    m = load_method("ours", run, gt)
    assert m.name == "ours" and m.warning is None and m.source == str(run / "test_predictions_uvd.txt")
    assert np.array_equal(m.errors, load_method("file", bundled("ICCV15_NYU_Feedback.txt"), gt).errors)
    unfinished = _run_folder(tmp_path / "unf", feedback, status=None)
    with pytest.raises(DataError, match=f"--pred {unfinished} is unfinished .* pass --allow-unfinished"):
        load_method("u", unfinished, gt)
    assert "is unfinished" in load_method("u", unfinished, gt, allow_unfinished=True).warning
    with pytest.raises(DataError, match=f"--pred {unfinished} is unfinished"):  # its file, named instead: the same
        load_method("u", unfinished / "test_predictions_uvd.txt", gt)
    write_joints_txt(unfinished / "mine.txt", feedback)  # any other file in the folder is just a file
    assert load_method("f", unfinished / "mine.txt", gt).warning is None
    with pytest.raises(DataError, match=f"--method {unfinished} is unfinished"):
        load_method("u", unfinished, gt, flag="--method")
    empty = _run_folder(tmp_path / "empty", None)
    with pytest.raises(DataError, match=f"no test predictions in run folder {empty} .missing test_predictions_uvd"
                                        r"\.txt\): the run finished without writing them"):
        load_method("e", empty, gt)
    trial = _run_folder(tmp_path / "trial", None, predict_test=False)  # how `hpe search` trains its trials
    with pytest.raises(DataError, match="trained with predict_test = false, as `hpe search` trains its trials; "
                                        "train its settings with `hpe train`"):
        load_method("t", trial, gt)
    with pytest.raises(DataError, match="missing test_predictions_uvd.txt.: finish the run first"):
        load_method("u", _run_folder(tmp_path / "unf2", None, status=None), gt, allow_unfinished=True)
    # Scored against a file that is not its data: the run's own data is named, not "shuffled" or "implausible".
    shuffled = _run_folder(tmp_path / "shuffled", feedback[np.random.default_rng(0).permutation(len(feedback))],
                           data="data/synthetic.h5")
    with pytest.raises(DataError, match=f"{shuffled}/test_predictions_uvd.txt does not fit .*shuffled.*: the run "
                                        "was trained on data/synthetic.h5, give --gt with that file"):
        load_method("s", shuffled, gt)
    far = _run_folder(tmp_path / "far", feedback + [0.0, 0.0, 400.0], data="data/synthetic.h5")
    with pytest.raises(DataError, match=r"mean error \d+\.\d mm against .*: the run was trained on data/synthetic"):
        load_method("f", far, gt)
    short = _run_folder(tmp_path / "short", feedback[:12], data="data/synthetic.h5")
    with pytest.raises(DataError, match="12 frames do not match the ground truth's 8252 .*: the run was trained on "
                                        "data/synthetic.h5, give --gt"):
        load_method("s", short, gt)
    h5_gt = load_ground_truth(synthetic_h5)
    with pytest.raises(ValueError, match="--subject1-frames 30 .* records each test frame's subject; drop the option"):
        load_ground_truth(synthetic_h5, 30)  # it was silently ignored
    fp = fingerprint(open_prepared(synthetic_h5))
    mine = _run_folder(tmp_path / "mine", h5_gt.uvd, data=str(synthetic_h5), fingerprint=fp)
    assert load_method("m", mine, h5_gt).errors.max() < 1e-3  # its own labels back: the data check passed
    other = _run_folder(tmp_path / "other", h5_gt.uvd, data="data/other.h5", fingerprint="0123")
    with pytest.raises(DataError, match=f"--pred {other} was trained on data/other.h5 .* holds other data"):
        load_method("o", other, h5_gt)
    with pytest.raises(DataError, match="missing prediction file: "):
        load_method("x", tmp_path / "nope.txt", gt)
    with pytest.raises(DataError, match=r"ground-truth file .*empty is a folder: give the file in it \(e\.g\."):
        load_ground_truth(empty)  # it was called "missing"
    with pytest.raises(DataError, match=r"12 frames do not match .*\.h5\)$"):  # no hint: --gt was given
        load_method("s", _run_folder(tmp_path / "short2", h5_gt.uvd[:12], data=str(synthetic_h5), fingerprint=fp),
                    h5_gt)


def test_files_of_the_wrong_kind_are_named(gt, tmp_path):
    shutil.copy(bundled("sample/depth_1_0000001.png"), tmp_path / "pred.txt")
    with pytest.raises(DataError, match="pred.txt is a PNG image, not a text file"):
        collect([("x", tmp_path / "pred.txt")], gt)
    mat = tmp_path / "pred.mat"
    import gzip
    mat.write_bytes(gzip.decompress(bundled("test_predictions.mat").read_bytes()))
    with pytest.raises(DataError, match="pred.mat is a MATLAB .mat file"):
        collect([("x", mat)], gt)
    with pytest.raises(DataError, match="missing ground-truth file: .*nope.txt"):
        load_ground_truth(tmp_path / "nope.txt")
    r = subprocess.run([sys.executable, "-m", "hpe", "evaluate", "--pred", str(mat)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "MATLAB" in r.stderr


def test_reader_formats_and_errors(tmp_path):
    row = " ".join(["1.5"] * 42)
    (tmp_path / "crlf.txt").write_bytes((row + " \r\n" + row + " \r\n").encode())
    assert read_joints_txt(tmp_path / "crlf.txt").shape == (2, 14, 3)
    (tmp_path / "short.txt").write_text(row + "\n" + " ".join(["1"] * 41) + "\n")
    with pytest.raises(DataError, match="short.txt:2: expected 42 numbers \\(14 joints x 3\\), got 41"):
        read_joints_txt(tmp_path / "short.txt")
    (tmp_path / "nan.txt").write_text(row.replace("1.5", "nan", 1) + "\n")
    with pytest.raises(DataError, match="nan.txt:1: NaN"):
        read_joints_txt(tmp_path / "nan.txt")


def test_success_rates_three_ways():
    e = np.array([[1.0, 30.0], [5.0, 5.0]])
    np.testing.assert_allclose(success_rate(e, [0, 5, 29, 30]), [0, 0.5, 0.5, 1.0])  # the frame's max (thesis)
    np.testing.assert_allclose(success_rate(e, [5, 15.5], "mean"), [0.5, 1.0])
    np.testing.assert_allclose(success_rate(e, [1, 5, 30], "joint"), [0.25, 0.75, 1.0])


def test_bundled_baselines_agree_with_their_published_means(gt):
    found = collect([], gt, baselines=bundled("KIT_MANIFEST.tsv").parent)
    assert sorted(m.name for m in found) == sorted(GOLDEN)
    res = summaries(found, gt)
    assert all(r["agrees_with_published"] for r in res.values())
    table = format_table(res)
    assert table.index("Feedback") < table.index("DeepModel") < table.index("DeepPrior-Refine")  # sorted by mean


def test_tompson_lift_on_real_frame(nyu_labels, sample_frame, tmp_path):
    depth_dir = tmp_path / "test"
    depth_dir.mkdir()
    shutil.copy(sample_frame[0], depth_dir)
    gt = read_joints_txt(nyu_labels)[:1]
    uvd = read_tompson(bundled("test_predictions.mat"), depth_dir, gt)
    assert uvd.shape == (1, 14, 3)
    import gzip
    import io

    from scipy.io import loadmat
    raw = loadmat(io.BytesIO(gzip.decompress(bundled("test_predictions.mat").read_bytes())))["pred_joint_uvconf"]
    uv = raw[0, 0][list(EVAL_JOINTS), :2]
    np.testing.assert_allclose(uvd[0, :, :2], uv, atol=1e-4)
    from hpe.nyu import read_depth
    d = read_depth(depth_dir / "depth_1_0000001.png")
    for j in range(14):
        u, v = int(uv[j, 0]), int(uv[j, 1])
        expect = d[v, u] if abs(float(d[v, u]) - gt[0, 13, 2]) <= 150 else gt[0, j, 2]
        assert uvd[0, j, 2] == pytest.approx(expect)
    err = joint_errors(NYU_CAMERA.uvd_to_xyz(uvd), NYU_CAMERA.uvd_to_xyz(gt)).mean()
    assert err < 40


def test_a_synthetic_roots_labels_know_their_subjects(synthetic_root):
    """A synthetic test joint_data.mat has its own subject split (its sidecar), not NYU's 2,440 frames."""
    import json

    from hpe.evaluate import load_ground_truth
    side = json.loads((synthetic_root / "hpe_synthetic.json").read_text())
    gt = load_ground_truth(synthetic_root / "test" / "joint_data.mat")
    assert (gt.subjects == 1).sum() == side["test_subject1_frames"] and len(gt.subjects) == side["test_frames"]
    assert (load_ground_truth(synthetic_root / "test" / "joint_data.mat", 2).subjects == 1).sum() == 2
