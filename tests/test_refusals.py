"""Issue 19's command-specific cases: evaluate refuses what cannot be a prediction file of the test list, predict
refuses bad settings and flags frames without a hand, search's exit status and interrupted trials, fetch's broken
downloads."""
import errno
import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpe import DataError
from hpe.baselines import bundled
from hpe.cli import main
from hpe.evaluate import collect, load_ground_truth
from hpe.nyu import read_joints_txt, write_joints_txt

REPO = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO / "hpe/reference/nyu/sample/depth_1_0000001.png")
RGB_SAMPLE = str(REPO / "hpe/reference/nyu/sample/rgb_1_0000001.png")


@pytest.fixture(scope="module")
def gt():
    return load_ground_truth()


@pytest.fixture(scope="module")
def feedback():
    return read_joints_txt(bundled("ICCV15_NYU_Feedback.txt"))


# --- evaluate ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transform, message", [
    (lambda p: np.where(np.arange(len(p))[:, None, None] == 5, p * [1, 1, 0], p),
     r"1 row\(s\) have zero or negative depth \(first: line 6\)"),
    (lambda p: np.where(np.arange(len(p))[:, None, None] == 9, p * [1, 1, -1], p), "zero or negative depth"),
    (lambda p: np.concatenate([p[1:], p[-1:]]), r"shifted by \+1 line\(s\)"),
    (lambda p: np.concatenate([p[:2], p[:-2]]), r"shifted by -2 line\(s\)"),
    (lambda p: p[np.random.default_rng(0).permutation(len(p))], "fit other frames far better .* shuffled"),
    (lambda p: p[:, [1, 0] + list(range(2, 14))], "joints P1 and P2 look exchanged"),
    (lambda p: p[:, list(range(12)) + [13, 12]], "joints W2 and C look exchanged"),
])
def test_evaluate_refuses_what_cannot_be_a_prediction_of_the_test_list(gt, feedback, tmp_path, transform, message):
    write_joints_txt(tmp_path / "bad.txt", transform(feedback))
    with pytest.raises(DataError, match=message):
        collect([("bad", tmp_path / "bad.txt")], gt)


def test_evaluate_names_nan_and_csv_files_and_checks_subject1_frames(feedback, tmp_path, capsys):
    lines = [" ".join(f"{v:.4f}" for v in row.ravel()) for row in feedback]
    (tmp_path / "nan.txt").write_text("\n".join(lines[:3] + [lines[3].replace(lines[3].split()[2], "nan", 1)]
                                                + lines[4:]) + "\n")
    (tmp_path / "p.csv").write_text("\n".join(line.replace(" ", ",") for line in lines) + "\n")
    for argv, message in ([["--pred", str(tmp_path / "nan.txt")], "nan.txt:4: NaN/inf value"],
                          [["--pred", str(tmp_path / "p.csv")], "p.csv:1: comma-separated values"],
                          [["--subject1-frames", "0"], "--subject1-frames 0 (subject1_frames= in Python): "],
                          [["--subject1-frames", "8252"], "must have 1-8251 of them"]):
        assert main(["evaluate", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_bundled_baselines_pass_every_check(gt):
    from hpe.baselines import THESIS_BASELINES
    methods = collect([(n, bundled(f)) for n, f in THESIS_BASELINES.items()], gt)
    assert len(methods) == 4


# --- predict -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--camera", "nan,588,320,240"], "every value must be a finite number"),
    (["--camera", "588,inf,320,240"], "every value must be a finite number"),
    (["--camera", "0,588,320,240"], "must be positive"),
    (["--camera=-588,588,320,240"], "must be positive"),
    (["--camera", "588,588,-1,240"], "must be positive"),
    (["--cube", "0"], "--cube 0.0: the cube edge must be a positive number"),
    (["--cube", "-300"], "--cube -300.0"),
    (["--cube", "nan"], "--cube nan"),
    (["--depth-scale", "inf"], "--depth-scale inf"),
])
def test_predict_refuses_bad_settings_and_leaves_no_out(tiny_runs, tmp_path, capsys, extra, message):
    out = tmp_path / "new" / "preds"
    assert main(["predict", "--run", str(tiny_runs / "done"), "--out", str(out), SAMPLE, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()


def test_predict_says_colour_frames_given_as_depth_look_like_colour(tiny_runs, tmp_path, capsys):
    assert main(["predict", "--run", str(tiny_runs / "done"), "--out", str(tmp_path / "p"), RGB_SAMPLE]) == 2
    assert "looks like a colour image, not a depth frame" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_frames_without_a_hand_are_flagged_and_counted(tiny_runs, tmp_path, capsys):
    Image.fromarray(np.full((480, 640), 800, np.uint16)).save(tmp_path / "wall.png")
    assert main(["predict", "--run", str(tiny_runs / "done"), "--out", str(tmp_path / "p"), "--quiet", SAMPLE,
                 str(tmp_path / "wall.png"), "--centre", "com"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 2 frames hold no hand-like object" in err
    rec = {Path(r["file"]).name: r for r in json.loads((tmp_path / "p" / "predictions.json").read_text())}
    assert rec["depth_1_0000001.png"]["hand_like"] is True and "no_hand" not in rec["depth_1_0000001.png"]
    assert rec["wall.png"]["hand_like"] is False and "fills 100% of the crop" in rec["wall.png"]["no_hand"]


def test_a_rerun_of_predict_replaces_the_previous_outputs(tiny_runs, synthetic_root, tmp_path):
    from hpe.predict import predict
    frames = sorted(str(p) for p in (synthetic_root / "test").glob("depth_*.png"))
    predict(tiny_runs / "done", frames[:4], tmp_path / "p", overlay=True, progress=False)
    assert len(list((tmp_path / "p" / "overlays").iterdir())) == 4
    predict(tiny_runs / "done", frames[:2], tmp_path / "p", progress=False)
    assert not (tmp_path / "p" / "overlays").exists()
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())) == 2


# --- search --------------------------------------------------------------------------------------------------------
SEARCH = dict(width=0.125, fc_units=64, input_size=32, batch_size=16, max_epochs=1, limit_train=16, device="cpu")


def _search_cmd(h5, out, *extra, **sets):
    return [sys.executable, "-m", "hpe", "search", "--data", str(h5), "--out", str(out), *extra] + sum(
        [["--set", f"{k}={v}"] for k, v in {**SEARCH, **sets}.items()], [])


@pytest.mark.parametrize("extra, message", [(["--samples", "0"], "--samples 0: must be at least 1"),
                                            (["--rounds", "0"], "--rounds 0: must be at least 1"),
                                            (["--max-trials", "0"], "--max-trials 0"),
                                            (["--shrink", "0"], "--shrink 0.0: must lie in (0, 1]"),
                                            (["--storage", "not a url"], "--storage not a url: cannot use"),
                                            (["--storage", "mysql+mysqldb://u@localhost/db"],
                                             "its database driver is not installed")])  # no MySQL driver is a dependency
def test_search_refuses_settings_that_are_no_search(synthetic_h5, tmp_path, capsys, extra, message):
    argv = _search_cmd(synthetic_h5, tmp_path / "s", *extra)[3:]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_read_only_storage_is_one_line(synthetic_h5, tmp_path, capsys):
    import sqlite3
    db = tmp_path / "ro.db"
    sqlite3.connect(db).close()
    url = f"sqlite:///file:{db}?mode=ro&uri=true"
    assert main(_search_cmd(synthetic_h5, tmp_path / "s", "--storage", url)[3:]) == 2
    err = capsys.readouterr().err
    assert f"--storage {url}: cannot use the study database" in err and len(err.strip().splitlines()) == 1, err


def test_search_that_learned_nothing_fails_with_a_line_per_trial(synthetic_h5, tmp_path, hpe_cli):
    code, out, err = hpe_cli(*_search_cmd(synthetic_h5, tmp_path / "s", "--rounds", "1", "--samples", "2")[3:])
    assert code == 3, err[-2000:]
    assert err.count("): failed, not-learned:") == 2 and "no trial completed (2 failed" in err
    doc = json.loads(out)
    assert doc["complete"] == 0 and "best_params" not in doc


def test_sigterm_fails_and_requeues_the_running_trial_at_once(synthetic_h5, tmp_path, hpe_cli):
    out = tmp_path / "s"
    cmd = _search_cmd(synthetic_h5, out, "--rounds", "1", "--samples", "1", "--quiet", max_epochs=60,
                      checkpoint_interval_s=0, require_learning="false")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = out / "trial-0000" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "Traceback" not in err, err
    import optuna
    study = optuna.load_study(study_name="hpe-search", storage=f"sqlite:///{out / 'study.db'}")
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {0: optuna.trial.TrialState.FAIL, 1: optuna.trial.TrialState.WAITING}  # no heartbeat wait
    rows = (out / "trials.csv").read_text().splitlines()  # written at the interruption too
    assert len(rows) == 3 and rows[1].startswith("0,1,FAIL") and "re-queued" in rows[1], rows
    code, out_, err = hpe_cli(*cmd[3:])  # rerun right after (in this process): the trial again
    assert code == 0, err[-2000:]
    assert json.loads(out_)["complete"] == 1
    assert (out / "trial-0000" / "result.json").is_file()  # it continued the interrupted trial's run


# --- fetch ---------------------------------------------------------------------------------------------------------
class _Broken(http.server.BaseHTTPRequestHandler):
    """Serves every file with a body cut short (truncated) or drops the connection (reset)."""
    mode = "truncate"

    def do_GET(self):
        if self.mode == "reset":
            self.request.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.request.close()
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"1 2 3\n" * 10)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("mode, message", [("truncate", "the connection closed after 60 bytes (truncated)"),
                                           ("reset", "cannot download")])
def test_fetch_names_a_broken_download_and_keeps_nothing_partial(tmp_path, capsys, mode, message):
    _Broken.mode = mode
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["baselines", "fetch", "--dest", str(tmp_path / "kit"), "--mirror",
                     f"http://127.0.0.1:{server.server_address[1]}", "--only", "DeepPrior", "--quiet"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "kit").exists()  # nothing fetched: the folder the command made is gone again


def test_fetch_on_a_full_disk_keeps_the_verified_files(tmp_path, monkeypatch, capsys):
    import hpe.baselines as B
    first, second = B.kit_results()[:2]
    monkeypatch.setattr(B.urllib.request, "urlopen", lambda url, timeout: _Body(url))
    monkeypatch.setattr(B, "verify", lambda data, entry: None)
    real = Path.write_bytes

    def fill(self, data):
        if second.name in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", fill)
    assert main(["baselines", "fetch", "--dest", str(tmp_path / "kit"), "--only", first.name, second.name,
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{second.name}: cannot write" in err and "the disk is full" in err
    assert [p.name for p in (tmp_path / "kit").iterdir() if p.name != ".hpe-outputs.json"] == [first.name]  # kept


class _Body:
    def __init__(self, url):
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def read(self):
        return b"data"


def test_fetch_refuses_a_dest_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["baselines", "fetch", "--dest", str(tmp_path / "f")]) == 2
    assert "output folder" in capsys.readouterr().err and (tmp_path / "f").read_text() == ""


def test_sigterm_during_a_command_is_one_line(tiny_runs, tmp_path):
    """A second look at SIGTERM outside train: predict is interrupted cleanly, no temporaries, no empty --out."""
    frames = [SAMPLE] * 4000  # far more work than the time from claiming --out to the signal
    p = subprocess.Popen([sys.executable, "-m", "hpe", "predict", "--run", str(tiny_runs / "done"), "--out",
                          str(tmp_path / "p"), "--quiet", "--centre", "com", *frames], stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not (tmp_path / "p").exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the output layer claims --out before any work: signal as soon as it exists
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0, "predict finished before the signal: the test checked nothing"
    assert p.returncode == 143 and err.strip().splitlines() == ["hpe predict: terminated; nothing half-written was "
                                                                "kept"], err
    assert not (tmp_path / "p").exists()


def test_second_careless_user_round_on_every_command(tmp_path, hpe_cli):
    """Issue 19's last careless-user round: each of these was a traceback or a result that was not one."""
    (tmp_path / "bench.json").write_text("[]")
    for args, message in ((["bench", "--report", tmp_path], "is not a benchmark's JSON object"),
                          (["bench", "--table", tmp_path], "is not a benchmark's JSON object"),
                          (["figure", "table4.3", "--out", tmp_path / "t"], "give the runs to tabulate"),
                          (["figure", "frame", "--out", tmp_path / "f", "--frame", "9999"], "--frame 9999"),
                          (["scale", "measure", "--out", tmp_path / "m.json", "--root", tmp_path, "--only", "prep"],
                           "--only prep needs --h5"),
                          (["scale", "measure", "--out", tmp_path / "m.json", "--h5", f"foo={tmp_path}"],
                           "the profile must be thesis or icip2018"),
                          (["scale", "measure", "--out", tmp_path / "m.json", "--root", tmp_path, "--workers", "0"],
                           "--workers 0: at least 1")):
        code, _, err = hpe_cli(*args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "t.png").exists()


def test_too_big_for_memory_and_an_empty_limit_are_one_line(tmp_path, hpe_cli, monkeypatch):
    """The last careless-user round: `train --set input_size=4096` died in a RuntimeError traceback from torch's
    allocator; `figure centres --limit 0` printed rows of nan."""
    import hpe.cli

    def too_big(a):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 34359738368 bytes.")
    monkeypatch.setattr(hpe.cli, "_cmd_nets", too_big)
    code, _, err = hpe_cli("nets")
    assert code == 2 and "out of memory" in err and "a smaller input_size" in err and len(err.splitlines()) == 1
    monkeypatch.undo()
    code, _, err = hpe_cli("figure", "centres", "--run", tmp_path, "--root", tmp_path, "--out", tmp_path / "c",
                           "--limit", "0")
    assert code == 2 and "--limit 0: at least 1" in err


def test_a_negative_synth_seed_and_a_foreign_scale_output_are_named(tmp_path, hpe_cli):
    """The last careless-user round: `synth --seed -1` said only "expected non-negative integer"; `scale measure
    --out` an existing HDF5 file said "'utf-8' codec can't decode byte 0x89" without naming it."""
    code, _, err = hpe_cli("synth", tmp_path / "s", "--train", "2", "--test", "2", "--seed", "-1")
    assert code == 2 and "--seed -1: a seed is a non-negative integer" in err and not (tmp_path / "s").exists()
    (tmp_path / "d.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (tmp_path / "root").mkdir()
    code, _, err = hpe_cli("scale", "measure", "--out", tmp_path / "d.h5", "--root", tmp_path / "root", "--only",
                           "generation")
    assert code == 2 and f"output {tmp_path / 'd.h5'} exists and holds an HDF5 file, not JSON" in err
    assert (tmp_path / "d.h5").read_bytes().startswith(b"\x89HDF")
