"""Long steps say what they are doing: progress lines off a terminal, the resolved config before training."""
import io
import time
from pathlib import Path

from hpe.progress import Lines

REPO = Path(__file__).resolve().parents[1]


def test_lines_print_at_most_every_interval_and_at_the_end():
    buf = io.StringIO()
    bar = Lines(10, "prep train", "frame", every_s=0.05, file=buf)
    bar.update(3)
    assert buf.getvalue() == ""  # not yet due
    time.sleep(0.06)
    bar.update(2)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("prep train: 5/10 frames (50 %") and "s left" in lines[0]
    assert lines[-1].startswith("prep train: 5/10 frames")


def test_synth_and_prep_report_progress_when_piped(tmp_path, hpe_cli):
    """Under Make stderr is a pipe: tqdm would stay silent, hpe prints lines instead (at least the final one).
    Here stderr is pytest's capture, not a terminal either."""
    code, _, err = hpe_cli("synth", tmp_path / "s", "--train", "6", "--test", "3", "--workers", "1")
    assert code == 0, err
    assert "synth train: 6/6 frames (100 %" in err and "synth test: 3/3 frames" in err
    code, _, err = hpe_cli("prep", tmp_path / "s", tmp_path / "s.h5", "--size", "32", "--workers", "1")
    assert code == 0, err
    assert "prep test: 3/3 frames (100 %" in err
    code, _, err = hpe_cli("synth", tmp_path / "q", "--train", "2", "--test", "1", "--workers", "1", "--quiet")
    assert code == 0 and "frames (" not in err


def test_train_prints_the_resolved_config_unless_quiet(synthetic_h5, tmp_path, hpe_cli):
    args = ["train", REPO / "experiments/fig4.7/depthnet.toml", "--dry-run", "--data", synthetic_h5, "--progress",
            "epochs", "--set", "lr=0.005"]
    code, out, err = hpe_cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    block = out[:out.index("epoch 1/2")]
    for want in ("net6 (width 0.125", "inputs depth", "profile  thesis", "lr 0.005", "momentum 0.98", "batch 16",
                 "epochs <= 2", f"data     {synthetic_h5}", f"out      {tmp_path / 'a'}"):
        assert want in block, (want, block)
    code, out, _ = hpe_cli(*args, "--out", tmp_path / "b", "--quiet")
    assert code == 0 and "optim" not in out


def test_a_slow_epoch_prints_lines_in_epochs_mode(synthetic_h5, tmp_path, monkeypatch, capsys):
    """--progress epochs (what Make uses) stays one line per epoch, unless an epoch is slow: then a line every
    10 s (checked after each batch: on a machine loaded 7-fold a batch took up to 13 s, and a 20 s interval left
    33 s between lines), so that a loaded machine never looks hung."""
    import hpe.progress
    from hpe.train import train
    real = hpe.progress.Lines.__init__

    def fast(self, *a, **k):
        real(self, *a, **{**k, "every_s": 0.0})  # every batch is "slow"
    monkeypatch.setattr(hpe.progress.Lines, "__init__", fast)
    r = train({"data": str(synthetic_h5), "out": str(tmp_path / "r"), "max_epochs": 1, "width": 0.125,
               "fc_units": 64, "input_size": 32, "batch_size": 8, "progress": "epochs", "require_learning": False})
    assert r["status"] == "done"
    err = capsys.readouterr().err
    assert "epoch 1/1: 1/" in err and "batches (" in err
