"""End to end through the make targets and the CLI, on tiny synthetic data."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _make(tmp_path, *targets, **variables):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {**os.environ, "PYTHON": sys.executable}
    args = ["make", "-C", str(REPO), *targets, f"DATA_DIR={tmp_path}/data", f"RESULTS={tmp_path}/results",
            "SYNTH_TRAIN=24", "SYNTH_TEST=12", "PRESET=experiments/presets/tiny.toml",
            f"VENV={Path(sys.executable).parent.parent}"] + [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


def test_make_reproduce_fig47_tiny(tmp_path):
    r = _make(tmp_path, "reproduce-fig4.7", "reproduce-fig4.10")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "results" / "reproduce-fig4.7" / "synthetic-thesis"
    doc = json.loads((out / "fig4.7.json").read_text())
    assert set(doc["methods"]) == {"Depth-Net", "RGB-Net", "RGBD-Net", "FusePred-Net", "Fuse-Net"}
    for ext in ("png", "pdf", "csv"):
        assert (out / f"fig4.7.{ext}").is_file()
    assert list((tmp_path / "results" / "reproduce-fig4.10").rglob("*fig4.11-subject2.png"))
    # finished steps are reused: a second run trains nothing
    again = _make(tmp_path, "reproduce-fig4.7")
    assert again.returncode == 0 and "hpe train" not in again.stdout


@pytest.mark.slow
def test_make_reproduce_all_tiny(tmp_path):
    r = _make(tmp_path, "reproduce-all")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "results" / "reproduce-table4.3" / "synthetic-thesis" / "table4.3.csv").is_file()


def test_cli_dry_run_and_nets(synthetic_h5, tmp_path):
    r = subprocess.run([sys.executable, "-m", "hpe", "train", "experiments/fig4.8/fusenet-cat.toml", "--dry-run",
                        "--data", str(synthetic_h5), "--out", str(tmp_path / "dry"), "--quiet"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "done"
    r = subprocess.run([sys.executable, "-m", "hpe", "nets"], capture_output=True, text=True)
    assert "151,904,394" in r.stdout and "Depth-Net" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hpe", "train", "--data", str(tmp_path / "missing.h5"),
                        "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing prepared dataset" in r.stderr and len(r.stderr.splitlines()) == 1


def test_make_gpu_check_without_a_venv(tmp_path):
    """The one-call speed check a GPU session runs (`make gpu-check VENV=none`), here on a CPU at tiny size."""
    r = _make(tmp_path, "gpu-check", VENV="none", CHECK_OUT=f"{tmp_path}/check", CHECK_EPOCHS=2,
              CHECK_PRESET="experiments/presets/tiny.toml", CHECK_FAST_SET="precision=bf16 channels_last=True")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check = tmp_path / "check"
    assert sorted(p.name for p in check.iterdir()) == sorted(
        ["bench.json", "summary.txt", "reference-result.json", "reference-log.csv", "fast-result.json",
         "fast-log.csv"])
    bench = json.loads((check / "bench.json").read_text())
    assert bench["depthnet_thesis"]["fast"]["profile_top_ops"]
    summary = (check / "summary.txt").read_text()
    assert "fast vs reference test error" in summary and "target train_images_per_s" in summary
    assert json.loads((check / "fast-result.json").read_text())["config"]["precision"] == "bf16"
