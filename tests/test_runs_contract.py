"""The one run-folder contract (hpe/run.py: open_run) in every command that reads a run: predict, export, figure
table4.3 / qualitative / compare / centres, evaluate of a run folder and fusepred.  Unfinished, not-learned and
diverged runs are refused unless --allow-unfinished (and then the outputs say so); a run is used only with the data
it was trained on and only in a role it fits."""
import json

import pytest

from hpe.cli import main

REPO_SAMPLE = "hpe/reference/nyu/sample/depth_1_0000001.png"


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("state, why", [("unfinished", "is unfinished (no result.json"),
                                        ("not_learned", "is not-learned (test error"),
                                        ("diverged", "is diverged (")])
def test_every_reader_refuses_a_run_that_is_not_finished(tiny_runs, synthetic_h5, tmp_path, capsys, state, why):
    run = str(tiny_runs / state)
    commands = [["predict", "--run", run, "--out", str(tmp_path / "p"), REPO_SAMPLE],
                ["export", "--run", run, "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
                ["evaluate", "--pred", run, "--gt", str(synthetic_h5)],
                ["figure", "qualitative", "--run", run, "--data", str(synthetic_h5), "--out", str(tmp_path / "q")],
                ["figure", "table4.3", "--method", f"net6={run}", "--out", str(tmp_path / "t")],
                ["figure", "compare", "--method", f"x={run}", "--gt", str(synthetic_h5), "--out", str(tmp_path / "c")]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = _err(capsys)
        assert why in err and "--allow-unfinished" in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, no empty --out left


def test_allow_unfinished_uses_the_run_and_the_outputs_say_so(tiny_runs, synthetic_h5, tmp_path, capsys):
    run = str(tiny_runs / "unfinished")
    assert main(["predict", "--run", run, "--out", str(tmp_path / "p"), REPO_SAMPLE, "--allow-unfinished",
                 "--quiet"]) == 0
    assert "is unfinished" in _err(capsys)
    rec = json.loads((tmp_path / "p" / "predictions.json").read_text())[0]
    assert any("is unfinished" in w for w in rec["warnings"])
    assert main(["export", "--run", run, "--format", "torchscript", "--out", str(tmp_path / "m.pt"),
                 "--allow-unfinished"]) == 0
    import torch
    extra = {"hpe.json": ""}
    torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["hpe.json"])["hpe_run"]["status"] == "unfinished"
    assert main(["evaluate", "--pred", run, "--gt", str(synthetic_h5), "--allow-unfinished", "--json",
                 str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert "is unfinished" in doc["methods"]["unfinished"]["warning"] and doc["notes"]


def test_a_run_is_used_only_with_its_own_data(tiny_runs, other_h5, tmp_path, capsys):
    run = str(tiny_runs / "done")
    assert main(["figure", "qualitative", "--run", run, "--data", str(other_h5), "--out", str(tmp_path / "q")]) == 2
    err = _err(capsys)
    assert "was trained on" in err and "holds other data" in err and str(other_h5) in err
    assert main(["evaluate", "--pred", run, "--gt", str(other_h5)]) == 2
    assert "holds other data" in _err(capsys)
    assert not list(tmp_path.iterdir())


def test_a_run_in_a_role_it_does_not_fit_is_refused(tiny_runs, tmp_path, capsys):
    done, rgb, centre = (str(tiny_runs / n) for n in ("done", "rgb", "centre"))
    cases = [
        (["figure", "table4.3", "--method", f"net1={done}", "--out", str(tmp_path / "t")],
         "has net = 'net6', but this role needs 'net1'"),
        (["figure", "table4.3", "--method", f"net6={done}", "--method", f"net6={done}", "--out", str(tmp_path / "t")],
         "--method net6 given twice"),
        (["figure", "table4.3", "--method", f"depthnet={done}", "--out", str(tmp_path / "t")],
         "the label must be a net of table 4.3"),
        (["fusepred", "experiments/fig4.7/fusepred.toml", "--depth-run", rgb, "--rgb-run", done, "--out",
          str(tmp_path / "f")], "--depth-run"),
        (["fusepred", "experiments/fig4.7/fusepred.toml", "--depth-run", done, "--rgb-run", done, "--out",
          str(tmp_path / "f")], "--rgb-run"),
        (["predict", "--run", done, "--centre-run", done, "--out", str(tmp_path / "p"), REPO_SAMPLE],
         "--centre-run"),
        (["predict", "--run", centre, "--out", str(tmp_path / "p"), REPO_SAMPLE], "regresses the hand centre only"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = _err(capsys)
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not list(tmp_path.iterdir())


def test_fusepred_of_fitting_runs_is_a_run_that_evaluate_reads(tiny_runs, synthetic_h5, tmp_path, capsys):
    out = tmp_path / "fused"
    assert main(["fusepred", "experiments/fig4.7/fusepred.toml", "--depth-run", str(tiny_runs / "done"),
                 "--rgb-run", str(tiny_runs / "rgb"), "--out", str(out)]) == 0
    assert main(["evaluate", "--pred", str(out), "--gt", str(synthetic_h5)]) == 0
    assert "fused" in capsys.readouterr().out
