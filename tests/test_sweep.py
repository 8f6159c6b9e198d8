"""A sweep of bad command lines and faults over every command, as a careless user would type them.

Each case runs the real command line (in-process, ``hpe.cli.main``) and must end as expected: the exit status,
one error line ``hpe CMD: error: ...`` naming what is wrong (argparse's usage errors: its usage, then one such
line), never a traceback, and no temporary file, lock or empty output folder left behind.  The cases and what
each printed are recorded in ``tests/data/sweep_outcomes.txt``:
``HPE_SWEEP_RECORD=tests/data/sweep_outcomes.txt pytest tests/test_sweep.py`` rewrites it.
"""
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[1]
REF = REPO / "hpe" / "reference" / "nyu"
FUSEPRED = str(REPO / "experiments" / "fig4.7" / "fusepred.toml")

# (id, argv with {placeholders}, exit status, what stderr must contain)
CASES = [
    # synth
    ("synth-root-is-file", "synth {tmp}/afile", 2, "is a file"),
    ("synth-zero-train", "synth {tmp}/ds --train 0", 2, "need at least one training and one test frame"),
    ("synth-non-empty", "synth {root}", 2, "is not empty: hpe synth never writes into an existing dataset"),
    ("synth-read-only", "synth /proc/hpe-ds", 2, "cannot write /proc/hpe-ds"),
    ("synth-bad-int", "synth {tmp}/ds --test ten", 2, "argument --test: invalid int value"),
    # prep
    ("prep-missing-root", "prep {tmp}/nothing {tmp}/o.h5", 2, "nothing"),
    ("prep-out-is-folder", "prep {root} {tmp}", 2, "is a folder; give a file name"),
    ("prep-parent-is-file", "prep {root} {tmp}/afile/o.h5", 2, "afile is a file, not a folder"),
    ("prep-cube-zero", "prep {root} {tmp}/o.h5 --cube 0", 2, "cube"),
    ("prep-val-fraction", "prep {root} {tmp}/o.h5 --val-fraction 1.5", 2, "val_fraction"),
    ("prep-size-zero", "prep {root} {tmp}/o.h5 --size 0", 2, "size = 0: must be >= 8"),
    ("prep-read-only", "prep {root} /proc/hpe.h5", 2, "cannot write /proc/hpe.h5"),
    # nets
    ("nets-size-zero", "nets --input-size 0", 2, "must be positive"),
    ("nets-joints-negative", "nets --joints -3", 2, "must be positive"),
    # train
    ("train-missing-data", "train --data {tmp}/missing.h5 --out {tmp}/r", 2, "missing prepared dataset"),
    ("train-out-is-file", "train --data {h5} --out {tmp}/afile", 2, "afile is a file"),
    ("train-lr-nan", "train --data {h5} --out {tmp}/r --set lr=nan", 2, "lr"),
    ("train-batch-zero", "train --data {h5} --out {tmp}/r --set batch_size=0", 2, "batch_size = 0"),
    ("train-unknown-key", "train --data {h5} --out {tmp}/r --set nosuchkey=1", 2, "nosuchkey"),
    ("train-set-no-equals", "train --data {h5} --out {tmp}/r --set lr", 2, "lr"),
    ("train-png-as-data", "train --data {sample} --out {tmp}/r", 2, "depth_1_0000001.png"),
    ("train-existing-run", "train --data {h5} --out {run} --set max_epochs=1", 2, "already holds a run"),
    ("train-missing-experiment", "train {tmp}/nope.toml --data {h5} --out {tmp}/r", 2, "nope.toml"),
    ("train-no-gpu", "train --data {h5} --out {tmp}/r --device cuda:7", 2, "cuda:7"),
    ("train-resume-other-settings", "train --data {other} --out {run} --resume", 2, "was trained with other settings"),
    # sweep-fusion, search
    ("sweep-out-is-file", "sweep-fusion --data {h5} --out {tmp}/afile", 2, "afile is a file"),
    ("sweep-bad-layer", "sweep-fusion --data {h5} --out {tmp}/sw --layers conv99 --set width=0.125", 2, "conv99"),
    ("search-zero-samples", "search --data {h5} --out {tmp}/s --samples 0", 2, "--samples 0: must be at least 1"),
    ("search-zero-rounds", "search --data {h5} --out {tmp}/s --rounds 0", 2, "--rounds 0: must be at least 1"),
    ("search-bad-storage", "search --data {h5} --out {tmp}/s --storage nonsense", 2, "--storage nonsense"),
    ("search-storage-without-driver", "search --data {h5} --out {tmp}/s --storage mysql+mysqldb://u@localhost/db", 2,
     "its database driver is not installed"),
    ("search-range-reversed", "search --data {h5} --out {tmp}/s --range lr:1:0:log", 2, "needs low < high"),
    ("search-range-unknown", "search --data {h5} --out {tmp}/s --range lrate:0.1:1:log", 2, "lrate"),
    ("search-range-garbled", "search --data {h5} --out {tmp}/s --range lr:a:b:log", 2, "--range lr:a:b:log"),
    ("search-missing-data", "search --data {tmp}/missing.h5 --out {tmp}/s", 2, "missing prepared dataset"),
    ("search-out-is-file", "search --data {h5} --out {tmp}/afile", 2, "afile is a file"),
    # evaluate
    ("eval-missing-file", "evaluate --pred {tmp}/missing.txt", 2, "missing.txt"),
    ("eval-csv", "evaluate --pred {tmp}/preds.csv", 2, "comma-separated values"),
    ("eval-nan", "evaluate --pred {tmp}/nan.txt", 2, "NaN/inf value"),
    ("eval-zero-depth", "evaluate --pred {tmp}/zero.txt", 2, "zero or negative depth"),
    ("eval-uvd-as-xyz", "evaluate --pred {fb} --format xyz", 2, "the wrong --format?"),
    ("eval-shifted", "evaluate --pred {tmp}/shifted.txt", 2, "shifted by +1 line(s)"),
    ("eval-shuffled", "evaluate --pred {tmp}/shuffled.txt", 2, "shuffled"),
    ("eval-swapped", "evaluate --pred {tmp}/swapped.txt", 2, "look exchanged"),
    ("eval-names-mismatch", "evaluate --pred {fb} --name a --name b", 2, "2 --name labels for 1 --pred files"),
    ("eval-same-name", "evaluate --pred {fb} --pred {fb}", 2, "two methods are called"),
    ("eval-subject1-zero", "evaluate --subject1-frames 0", 2, "--subject1-frames 0"),
    ("eval-subject1-too-many", "evaluate --subject1-frames 99999", 2, "--subject1-frames 99999"),
    ("eval-json-is-folder", "evaluate --pred {fb} --json {tmp}", 2, "is a folder; give a file name"),
    ("eval-csv-parent-file", "evaluate --pred {fb} --csv {tmp}/afile/x.csv", 2, "afile is a file"),
    ("eval-joint-order", "evaluate --pred {fb} --joint-order 1,2,3", 2, "joint"),
    ("eval-unfinished-run", "evaluate --pred {unf} --gt {h5}", 2, "is unfinished"),
    ("eval-run-other-data", "evaluate --pred {run} --gt {other}", 2, "holds other data"),
    ("eval-run-without-gt", "evaluate --pred {run}", 2, "the run was trained on"),
    ("eval-png-as-text", "evaluate --pred {sample}", 2, "depth_1_0000001.png"),
    ("eval-tompson-no-depth", "evaluate --tompson bundled", 2, "need --depth-dir"),
    ("eval-nothing", "evaluate --gt {fb}", 2, "nothing to evaluate"),
    # fusepred
    ("fusepred-roles-swapped", "fusepred {fusepred} --depth-run {rgbrun} --rgb-run {run} --out {tmp}/f", 2,
     "--depth-run"),
    ("fusepred-same-run", "fusepred {fusepred} --depth-run {run} --rgb-run {run} --out {tmp}/f", 2, "--rgb-run"),
    ("fusepred-not-learned", "fusepred {fusepred} --depth-run {nl} --rgb-run {rgbrun} --out {tmp}/f", 2,
     "is not-learned"),
    ("fusepred-missing-toml", "fusepred {tmp}/no.toml --depth-run {run} --rgb-run {rgbrun} --out {tmp}/f", 2,
     "no.toml"),
    ("fusepred-out-is-file", "fusepred {fusepred} --depth-run {run} --rgb-run {rgbrun} --out {tmp}/afile", 2,
     "afile is a file"),
    # baselines
    ("fetch-dest-is-file", "baselines fetch --dest {tmp}/afile", 2, "afile is a file"),
    ("fetch-unknown-only", "baselines fetch --dest {tmp}/kit --only nonsense", 2, "--only nonsense"),
    ("fetch-mirror-a-path", "baselines fetch --dest {tmp}/kit --mirror {tmp}/kitcopy", 2, "give a URL (for a local"),
    ("fetch-nothing-listening", "baselines fetch --dest {tmp}/kit --mirror http://127.0.0.1:9 --only DeepPrior "
     "--quiet", 1, "cannot download"),
    ("fetch-dest-read-only", "baselines fetch --dest /proc/hpe-kit", 2, "/proc/hpe-kit"),
    # figure
    ("frame-out-is-folder", "figure frame --out {tmp}", 2, "is a folder; give a file name prefix"),
    ("frame-zero", "figure frame --out {tmp}/f --frame 0", 2, "--frame 0"),
    ("frame-too-late", "figure frame --out {tmp}/f --frame 99999", 2, "--frame 99999"),
    ("frame-rgb-as-depth", "figure frame --out {tmp}/f --depth {rgbsample}", 2, "looks like a colour image"),
    ("frame-missing-depth", "figure frame --out {tmp}/f --depth {tmp}/nope.png", 2, "nope.png"),
    ("compare-no-equals", "figure compare --out {tmp}/c --method x", 2, "must look like NAME=PATH"),
    ("compare-missing-run", "figure compare --out {tmp}/c --method x={tmp}/missing", 2, "missing"),
    ("compare-diverged", "figure compare --out {tmp}/c --method x={div} --gt {h5}", 2, "is diverged"),
    ("table-wrong-net", "figure table4.3 --out {tmp}/t --method net1={run}", 2, "this role needs 'net1'"),
    ("table-twice", "figure table4.3 --out {tmp}/t --method net6={run} --method net6={run}", 2, "given twice"),
    ("table-not-a-net", "figure table4.3 --out {tmp}/t --method depthnet={run}", 2, "net1 ... net9"),
    ("qualitative-other-data", "figure qualitative --run {run} --data {other} --out {tmp}/q", 2, "holds other data"),
    ("qualitative-diverged", "figure qualitative --run {div} --data {h5} --out {tmp}/q", 2, "is diverged"),
    ("centres-centre-as-pose", "figure centres --run {centre} --root {root} --out {tmp}/c", 2,
     "this role needs 'pose'"),
    ("centres-pose-as-centre", "figure centres --run {run} --root {root} --out {tmp}/c --centre-run {run}", 2,
     "--centre-run"),
    # bench
    ("bench-json-is-folder", "bench --json {tmp}", 2, "is a folder; give a file name"),
    ("bench-report-missing", "bench --report {tmp}/nope", 2, "nope"),
    ("bench-no-gpu", "bench --device cuda:3", 2, "cuda:3"),
    # predict
    ("predict-camera-nan", "predict --run {run} --out {tmp}/p {sample} --camera nan,588,320,240", 2, "finite"),
    ("predict-camera-zero", "predict --run {run} --out {tmp}/p {sample} --camera 0,0,320,240", 2, "positive"),
    ("predict-cube-zero", "predict --run {run} --out {tmp}/p {sample} --cube 0", 2, "--cube 0.0"),
    ("predict-cube-nan", "predict --run {run} --out {tmp}/p {sample} --cube nan", 2, "--cube nan"),
    ("predict-centre-two", "predict --run {run} --out {tmp}/p {sample} --centre 1,2", 2, "--centre 1,2"),
    ("predict-rgb-as-depth", "predict --run {run} --out {tmp}/p {rgbsample}", 2, "looks like a colour image"),
    ("predict-out-is-file", "predict --run {run} --out {tmp}/afile {sample}", 2, "afile is a file"),
    ("predict-unfinished", "predict --run {unf} --out {tmp}/p {sample}", 2, "is unfinished"),
    ("predict-no-frames", "predict --run {run} --out {tmp}/p {tmp}/none*.png", 2, "no depth frames found"),
    ("predict-batch-zero", "predict --run {run} --out {tmp}/p {sample} --batch-size 0", 2, "--batch-size 0"),
    ("predict-depth-scale", "predict --run {run} --out {tmp}/p {sample} --depth-scale 0", 2, "--depth-scale 0"),
    ("predict-not-a-run", "predict --run {tmp} --out {tmp}/p {sample}", 2, "is not a run folder"),
    ("predict-npy-3d", "predict --run {run} --out {tmp}/p {tmp}/cube.npy", 2, "2-D array"),
    # export
    ("export-out-is-folder", "export --run {run} --out {tmp}", 2, "is a folder; give a file name"),
    ("export-not-learned", "export --run {nl} --out {tmp}/m.onnx", 2, "is not-learned"),
    ("export-missing-run", "export --run {tmp}/missing --out {tmp}/m.onnx", 2, "no such run folder"),
    ("export-read-only", "export --run {run} --format torchscript --out /proc/m.pt", 2, "cannot write /proc/m.pt"),
    # session 6: messages that named the wrong option, outputs that meant something else
    ("search-zero-heartbeat", "search --data {h5} --out {tmp}/s --heartbeat 0", 2,
     "--heartbeat 0: must be at least 1 (seconds between"),
    ("predict-negative-refine", "predict --run {run} --out {tmp}/p {sample} --refine-steps -3", 2,
     "--refine-steps -3: must be 0 or more"),
    ("predict-batch-zero", "predict --run {run} --out {tmp}/p {sample} --batch-size 0", 2,
     "--batch-size 0: must be at least 1"),
    ("figure-frame-out-slash", "figure frame --out {tmp}/figs/", 2, "ends in '/', a folder: give a file name"),
    ("eval-json-slash", "evaluate --pred {fb} --json {tmp}/new/", 2, "ends in '/', a folder"),
    ("export-format-suffix", "export --run {run} --format torchscript --out {tmp}/m.onnx", 2,
     "is named like onnx but --format torchscript"),
    ("export-run-is-file", "export --run {tmp}/afile --out {tmp}/m.pt --format torchscript", 2,
     "no such run folder (it is a file)"),
    ("train-out-is-predict-folder", "train --data {h5} --out {tmp}/preds --set max_epochs=1", 2,
     "holds the outputs of hpe predict: hpe train's outputs would mix"),
    ("predict-out-is-a-run", "predict --run {run} --out {rgbrun} {sample}", 2,
     "holds the outputs of hpe train: hpe predict's outputs would mix"),
    ("predict-out-is-a-search", "predict --run {run} --out {tmp}/search {sample}", 2,
     "holds the outputs of hpe search: hpe predict's outputs would mix"),
    ("search-out-is-predictions", "search --data {h5} --out {tmp}/preds --samples 1", 2,
     "holds the outputs of hpe predict: hpe search's outputs would mix"),
    ("fusepred-joint-out-is-a-run", "fusepred {fusepred} --training joint --data {h5} --out {run}", 2,
     "holds the outputs of hpe train: hpe fusepred's outputs would mix"),
    ("train-tensorboard-is-a-file", "train --data {h5} --out {tmp}/r --tensorboard {tmp}/afile", 2,
     "afile is a file; give a folder"),
    ("fusepred-profiles-disagree", "fusepred {fusepred} --depth-run {run} --rgb-run {rgbrun} --set profile=icip2018 "
     "--out {tmp}/fp", 2, "the profiles disagree: --set profile says icip2018, run "),
    ("eval-block-pasted-twice", "evaluate --pred {tmp}/pasted.txt", 2,
     "100 rows repeat an earlier row exactly (first: line 201 = line 101)"),
    ("eval-one-pose-for-half", "evaluate --pred {tmp}/constant.txt", 2, "4125 rows repeat an earlier row exactly"),
    ("train-fusepred-under-thesis", "train {fusepred} --data {h5} --out {tmp}/fp", 2,
     "is FusePred-Net fused from two trained runs under profile thesis"),
    ("compare-same-name", "figure compare --method a={fb} --method a={fb} --out {tmp}/c", 2,
     "give each --method its own NAME"),
    ("compare-nothing", "figure compare --out {tmp}/c", 2, "give --method NAME=PATH"),
    # session 12: silently ignored options, files replaced that were not the command's, misnamed errors
    ("fusepred-set-ignored", "fusepred {fusepred} --depth-run {run} --rgb-run {rgbrun} --set lr=5 --out {tmp}/f", 2,
     "--set lr: FusePred-Net trained independently (thesis 4.3.3) fuses the two trained runs and trains nothing"),
    ("fusepred-other-data", "fusepred {fusepred} --depth-run {run} --rgb-run {rgbrun} --data {other} --out {tmp}/f",
     2, "holds other data"),
    ("predict-rgb-for-a-depth-net", "predict --run {run} --out {tmp}/p {sample} --rgb {rgbsample}", 2,
     "is a net on depth only (inputs = 'depth'), it would read no colour"),
    ("export-over-a-dataset", "export --run {run} --out {tmp}/data.h5", 2,
     "output {tmp}/data.h5 exists and holds an HDF5 file, not an ONNX model"),
    ("eval-json-over-notes", "evaluate --pred {fb} --json {tmp}/notes.txt", 2, "exists and holds text, not JSON"),
    ("prep-over-an-image", "prep {root} {tmp}/wall.png", 2, "exists and holds a PNG image, not an HDF5 file"),
    ("eval-uv-swapped", "evaluate --pred {tmp}/uvswapped.txt", 2, "u and v look exchanged: mean error 136.3 mm"),
    ("eval-blank-name", "evaluate --pred {fb} --name=", 2, "--name '': a label must be non-blank"),
    ("compare-blank-name", "figure compare --method ={fb} --out {tmp}/c", 2, "--method '': a label must be non-blank"),
    ("compare-no-path", "figure compare --method a= --out {tmp}/c", 2, "--method 'a=': no PATH after '='"),
    ("search-negative-seed", "search --data {h5} --out {tmp}/s --seed -3", 2,
     "--seed -3: a seed is a non-negative integer"),
    ("train-unknown-option", "train --data {h5} --out {tmp}/r --epochs 3", 2,
     "hpe train: error: unrecognized arguments: --epochs"),
    ("fetch-unknown-option", "baselines fetch --dest {tmp}/kit --bogus", 2,
     "hpe baselines fetch: error: unrecognized arguments: --bogus"),
    ("train-out-is-a-dataset", "train --data {h5} --out {root} --set max_epochs=1", 2,
     "{root} holds the outputs of hpe synth: hpe train's outputs would mix"),
    ("predict-out-is-a-dataset", "predict --run {run} --out {root} {sample}", 2, "holds the outputs of hpe synth"),
    ("predict-out-is-an-nyu-root", "predict --run {run} --out {tmp}/nyu {sample}", 2,
     "holds a dataset (train/, test/ with joint_data.mat)"),
    ("predict-cube-in-metres", "predict --run {run} --out {tmp}/p {sample} --cube 0.3", 2,
     "--cube 0.3: the cube edge must lie in 50-1000 mm"),
    ("predict-cube-huge", "predict --run {run} --out {tmp}/p {sample} --cube 1e9", 2, "--cube 1e+09: the cube edge"),
    ("predict-a-pen", "predict --run {run} --out {tmp}/p {tmp}/pen.png", 2,
     "covers 250 pixels of the frame, too thin to show in the 64 px crop: not a hand?"),
    ("predict-noise", "predict --run {run} --out {tmp}/p {tmp}/noise.png", 2,
     "no object found to centre the crop on (2.3% of the pixels lie in 10-1500 mm, scattered"),
    # right, with what the user should know
    ("ok-eval-json-new-folders", "evaluate --pred {fb} --json {tmp}/new/sub/t.json", 0, ""),
    ("ok-figure-out-with-suffix", "figure compare --bundled DeepPrior --out {tmp}/c.png", 0, ""),
    ("ok-predict-wall-flagged", "predict --run {run} --out {tmp}/p {tmp}/wall.png --centre com --quiet", 0,
     "hold no hand-like object"),
    ("ok-predict-allow-unfinished", "predict --run {unf} --out {tmp}/p {sample} --allow-unfinished --quiet", 0,
     "is unfinished"),
]


@pytest.fixture(scope="module")
def places(tiny_runs, synthetic_h5, synthetic_root, other_h5):
    return {"run": tiny_runs / "done", "rgbrun": tiny_runs / "rgb", "centre": tiny_runs / "centre",
            "nl": tiny_runs / "not_learned", "div": tiny_runs / "diverged", "unf": tiny_runs / "unfinished",
            "h5": synthetic_h5, "other": other_h5, "root": synthetic_root, "fusepred": FUSEPRED,
            "sample": REF / "sample" / "depth_1_0000001.png", "rgbsample": REF / "sample" / "rgb_1_0000001.png",
            "fb": REF / "ICCV15_NYU_Feedback.txt.gz"}


@pytest.fixture(scope="module")
def careless_files(tmp_path_factory) -> Path:
    """The careless user's files, made once (formatting 8,252-row prediction files took 1.6 s a case) and copied
    into each case's own folder."""
    folder = tmp_path_factory.mktemp("careless")
    _files(folder)
    return folder


def _files(tmp: Path) -> None:
    """The careless user's files: a plain file where a folder is expected, bad prediction files, a wall."""
    from PIL import Image

    from hpe.nyu import read_joints_txt, write_joints_txt
    (tmp / "afile").write_text("not a folder")
    (tmp / "preds").mkdir()  # what `hpe predict --out` left: not a run folder
    (tmp / "preds" / "predictions.json").write_text("{}")
    (tmp / "preds" / ".hpe-outputs.json").write_text('{"command": "predict", "files": ["predictions.json"]}')
    (tmp / "search").mkdir()  # what `hpe search --out` left (before manifests: its study and table)
    (tmp / "search" / "trials.csv").write_text("number,state\n")
    p = read_joints_txt(REF / "ICCV15_NYU_Feedback.txt.gz")
    lines = [" ".join(f"{v:.4f}" for v in row.ravel()) for row in p]
    (tmp / "preds.csv").write_text("\n".join(x.replace(" ", ",") for x in lines) + "\n")
    (tmp / "nan.txt").write_text("\n".join(lines[:7] + ["nan " + lines[7].split(" ", 1)[1]] + lines[8:]) + "\n")
    write_joints_txt(tmp / "zero.txt", np.where(np.arange(len(p))[:, None, None] == 3, p * [1, 1, 0], p))
    write_joints_txt(tmp / "shifted.txt", np.concatenate([p[1:], p[-1:]]))
    write_joints_txt(tmp / "shuffled.txt", p[np.random.default_rng(1).permutation(len(p))])
    write_joints_txt(tmp / "swapped.txt", p[:, [0, 1, 2, 3, 5, 4] + list(range(6, 14))])
    write_joints_txt(tmp / "pasted.txt", np.concatenate([p[:100], p[200:300], p[200:]]))  # 100-199 lost
    write_joints_txt(tmp / "constant.txt", np.where(np.arange(len(p))[:, None, None] % 2 == 0, p[:1], p))
    write_joints_txt(tmp / "uvswapped.txt", p[..., [1, 0, 2]])  # written row, column instead of column, row
    (tmp / "data.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(504))  # the signature is what is checked
    (tmp / "notes.txt").write_text("the user's notes\n")
    (tmp / "nyu" / "test").mkdir(parents=True)  # a real NYU root (no hpe sidecar)
    (tmp / "nyu" / "test" / "joint_data.mat").write_bytes(b"MATLAB 5.0")
    Image.fromarray(np.full((480, 640), 800, np.uint16)).save(tmp / "wall.png")
    pen = np.zeros((480, 640), np.uint16)
    pen[100:352, 320] = 700  # 1 px wide: far less than a pixel of a 64 px crop of a 300 mm cube
    Image.fromarray(pen).save(tmp / "pen.png")
    noise = np.random.default_rng(0).integers(0, 65535, (480, 640)).astype(np.uint16)
    Image.fromarray(noise).save(tmp / "noise.png")
    np.save(tmp / "cube.npy", np.zeros((4, 4, 4)))


def _leftovers(*folders: Path) -> list[str]:
    found = []
    for folder in folders:
        for p in Path(folder).rglob("*"):
            if ".tmp-" in p.name or p.name.endswith(".lock") or ".old-" in p.name or p.name == ".lock":
                found.append(str(p))
    return found


def _generic(text: str, places: dict, tmp: Path) -> str:
    """Paths replaced by their placeholders, so that the record does not depend on where the test ran."""
    for key, value in sorted(places.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(value), "{" + key + "}")
    text = text.replace(str(tmp), "{tmp}").replace(str(REPO) + "/", "")
    return re.sub(r"pid \d+", "pid N", text)


_RECORD: list[str] = []


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_sweep(case, places, careless_files, tmp_path, hpe_cli):
    name, template, status, message = case
    shutil.copytree(careless_files, tmp_path, dirs_exist_ok=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    argv = template.format(tmp=tmp_path, **places).split()
    code, out, err = hpe_cli(*argv)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert code == status, (argv, code, err[-2000:])
    message = message.format(tmp=tmp_path, **places)
    assert message in err, (message, err)
    lines = [line for line in err.strip().splitlines() if line]
    if status == 2:
        error_lines = [line for line in lines if line.startswith("hpe ") and ": error: " in line]
        assert len(error_lines) == 1 and lines[-1] == error_lines[0], err  # usage lines may precede it
        if not err.startswith("usage:"):
            assert len(lines) == 1, err
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing new: no file, no empty --out
    assert not _leftovers(tmp_path, *(Path(str(places[k])).parent for k in ("run", "h5", "root")))
    outcome = lines[-1] if lines else (out.strip().splitlines() or [""])[0]
    _RECORD.append(f"{name}\thpe {_generic(template, places, tmp_path)}\texit {code}\t"
                   f"{_generic(outcome, {k: str(v) for k, v in places.items()}, tmp_path)}")


def test_sweep_record(tmp_path):
    """Writes the record when asked (HPE_SWEEP_RECORD=path), and checks that there are at least 60 bad cases."""
    assert sum(status != 0 for _, _, status, _ in CASES) >= 60
    target = os.environ.get("HPE_SWEEP_RECORD")
    if target and _RECORD:
        Path(target).write_text("# case\tcommand\texit status\twhat it printed (last line of stderr, or stdout)\n"
                                + "\n".join(_RECORD) + "\n")
