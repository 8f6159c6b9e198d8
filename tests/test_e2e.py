"""End to end through the make targets and the CLI, on tiny synthetic data.

Make runs in a copy of the project's Makefile, experiments/ and data_prep/ with VENV=none and PYTHONPATH set to
this checkout: the tests never install into, or re-point, any virtual environment, and edit only the copy."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    if shutil.which("make") is None:
        pytest.fail("make is not installed (apt-get install make; .ci/run does this)")
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(REPO / "Makefile", copy)
    for folder in ("experiments", "data_prep"):
        shutil.copytree(REPO / folder, copy / folder)
    return copy


def _make(project, *targets, **variables):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["make", "-C", str(project), *targets, "VENV=none", f"PYTHON={sys.executable}", "SYNTH_TRAIN=24",
            "SYNTH_TEST=12", "PRESET=experiments/presets/tiny.toml"] + [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


def test_make_reproduce_figures_tiny(project):
    """Figure 4.7's chain for real (data, prep, five runs, FusePred, the figure); the figure-only targets 4.1, 4.9 and
    4.10 through `make -n` (their commands are tested in test_figures.py; running them here cost 30 s of CI)."""
    r = _make(project, "reproduce-fig4.7")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "results/runs/synthetic-thesis/tiny/fig4.7/depthnet: epoch 1/2" in r.stdout  # one line per epoch
    out = project / "results" / "reproduce-fig4.7" / "synthetic-thesis-tiny"
    doc = json.loads((out / "fig4.7.json").read_text())
    assert set(doc["methods"]) == {"Depth-Net", "RGB-Net", "RGBD-Net", "FusePred-Net", "Fuse-Net"}
    for ext in ("png", "pdf", "csv"):
        assert (out / f"fig4.7.{ext}").is_file()
    assert b"/FontType3" not in (out / "fig4.7.pdf").read_bytes()  # TrueType fonts, not Type 3
    plan = _make(project, "-n", "reproduce-fig4.10", "reproduce-fig4.9", "reproduce-fig4.1", INSTALLED="")
    assert plan.returncode == 0, plan.stderr
    plan = plan.stdout.replace("\\\n", " ")
    assert " -m hpe train" not in plan  # the runs they draw on are up to date
    assert "figure qualitative" in plan and "--run results/runs/synthetic-thesis/tiny/fig4.7/depthnet" in plan
    assert all(f"--bundled {m}" in plan for m in ("DeepPrior", "DeepPrior-Refine", "Feedback", "DeepModel"))
    assert "results/reproduce-fig4.9/synthetic-thesis-tiny/fig4.9" in plan and "runs trained on synthetic" in plan
    assert plan.count("figure frame") == 2 and "data/synthetic/test/depth_1_0000001.png" in plan
    # Finished steps are reused: `make -q` (no interpreter started) finds every run up to date.  INSTALLED= drops
    # the order-only deps-check, a phony target that -q would always count as out of date.
    runs = "results/runs/synthetic-thesis/tiny"
    results = {m: f"{runs}/{m}/result.json" for m in ("fig4.7/depthnet", "fig4.7/rgbnet", "fig4.7/rgbdnet",
                                                         "fig4.7/fusepred", "fig4.8/fusenet-conv")}
    assert _make(project, "-q", *results.values(), INSTALLED="").returncode == 0
    # An edited row is out of date, and so is what is built on it (FusePred-Net); the rest is not.
    exp = project / "experiments" / "fig4.7" / "rgbnet.toml"
    exp.write_text(exp.read_text().replace("lr = 0.009", "lr = 0.008"))
    stale = {m for m, path in results.items() if _make(project, "-q", path, INSTALLED="").returncode != 0}
    assert stale == {"fig4.7/rgbnet", "fig4.7/fusepred"}
    plan = _make(project, "-n", "reproduce-fig4.7", INSTALLED="").stdout.replace("\\\n", " ").splitlines()
    trains = [line for line in plan if " -m hpe train" in line]
    assert len(trains) == 1 and "experiments/fig4.7/rgbnet.toml" in trains[0] and "--restart-if-changed" in trains[0]


def test_every_target_passes_the_profile(project):
    for target in ("search", "sweep-fusion", "reproduce-fig4.7", "leaderboard", "gpu-check"):
        r = _make(project, "-n", target, PROFILE="icip2018")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.replace("\\\n", " ").splitlines()  # join Make's continued lines
        trains = [line for line in lines if " -m hpe train" in line or " -m hpe search" in line
                  or " -m hpe sweep-fusion" in line]
        assert trains or target == "leaderboard", target
        assert all("profile=icip2018" in line and "synthetic-icip2018.h5" in line for line in trains), target
    r = _make(project, "-n", "reproduce-fig4.7", PRESET="experiments/presets/synthetic.toml")
    assert "results/runs/synthetic-thesis/synthetic/fig4.7" in r.stdout

    r = _make(project, "-n", "reproduce-centres", PROFILE="icip2018")
    lines = r.stdout.replace("\\\n", " ").splitlines()
    trains = [line for line in lines if " -m hpe train" in line]
    assert r.returncode == 0 and len(trains) == 3, r.stdout + r.stderr
    assert all("profile=icip2018" in line for line in trains)
    context = [line for line in lines if "--cube 600" in line]
    assert len(context) == 1 and "--profile icip2018" in context[0] and "synthetic-icip2018-context600.h5" in context[0]
    assert sum("--data data/synthetic-icip2018-context600.h5" in line for line in trains) == 1
    figure = next(line for line in lines if " -m hpe figure centres" in line)
    assert figure.count("--centre-run") == 2


@pytest.mark.slow
def test_make_reproduce_all_tiny(project):
    r = _make(project, "reproduce-all")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = project / "results" / "reproduce-table4.3" / "synthetic-thesis-tiny"
    for ext in ("csv", "md", "tex", "png", "pdf"):
        assert (table / f"table4.3.{ext}").is_file()


def test_cli_dry_run_and_nets(synthetic_h5, tmp_path, hpe_cli):
    r = subprocess.run([sys.executable, "-m", "hpe", "train", "experiments/fig4.8/fusenet-cat.toml", "--dry-run",
                        "--data", str(synthetic_h5), "--out", str(tmp_path / "dry"), "--quiet"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "done"
    # The full-size nets (built on the meta device: counted, not initialised): each count is the table formula's.
    from hpe.nets import list_nets, table_parameter_count
    code, out, _ = hpe_cli("nets")
    assert code == 0 and "151,904,394   Depth-Net" in out
    counts = {line.split()[0]: line.split()[3] for line in out.splitlines()[1:]}
    assert counts == {n: f"{table_parameter_count(n):,}" for n in list_nets()}
    code, _, err = hpe_cli("train", "--data", tmp_path / "missing.h5", "--out", tmp_path / "x")
    assert code == 2 and "missing prepared dataset" in err and len(err.splitlines()) == 1


def test_make_gpu_check_without_a_venv(project):
    """The one-call speed check a GPU session runs (`make gpu-check VENV=none`), here on a CPU at tiny size."""
    check = project / "check"
    r = _make(project, "gpu-check", CHECK_OUT=str(check), CHECK_EPOCHS=2, CHECK_BENCH_ARGS="--size tiny",
              CHECK_PRESET="experiments/presets/tiny.toml", CHECK_FAST_SET="precision=bf16 channels_last=True")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in check.iterdir()) == sorted(
        ["bench.json", "summary.txt", "reference-result.json", "reference-log.csv", "fast-result.json",
         "fast-log.csv"])
    bench = json.loads((check / "bench.json").read_text())
    assert bench["depthnet_thesis"]["fast"]["profile_top_ops"] and bench["depthnet_thesis"]["input_size"] == 32
    summary = (check / "summary.txt").read_text()
    assert "fast vs reference test error" in summary and "target train_images_per_s" in summary
    assert json.loads((check / "fast-result.json").read_text())["config"]["precision"] == "bf16"
