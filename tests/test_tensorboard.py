"""--tensorboard: log.csv's per-epoch scalars in TensorBoard event files, one set per run or search trial."""
import csv

import pytest

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from hpe.tracking import SCALARS  # noqa: E402
from hpe.train import train  # noqa: E402

TINY = {"width": 0.125, "fc_units": 64, "input_size": 32, "batch_size": 8, "limit_train": 16,
        "require_learning": False, "progress": "none", "device": "cpu"}


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_the_log_csv_values(synthetic_h5, tmp_path, monkeypatch):
    import hpe.train
    out, tb = tmp_path / "runs" / "depthnet", tmp_path / "tb"
    cfg = {"data": str(synthetic_h5), "out": str(out), "max_epochs": 4, "tensorboard": str(tb),
           "checkpoint_interval_s": 0.0, **TINY}
    real = hpe.train._report_epoch

    def killed_at_3(cfg, run, row, state):  # after epoch 3 is logged, before its checkpoint: like a kill -9
        if row["trained"] == 3:
            raise KeyboardInterrupt
        real(cfg, run, row, state)
    monkeypatch.setattr(hpe.train, "_report_epoch", killed_at_3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(hpe.train, "_report_epoch", real)
    assert train(cfg, resume=True)["status"] == "done"
    rows = list(csv.DictReader((out / "log.csv").open()))
    got = scalars(tb / "runs" / "depthnet")
    assert set(got) == set(SCALARS.values())
    for key, tag in SCALARS.items():  # each epoch once (the killed run's epoch 3 purged), the log's values
        assert [s for s, _ in got[tag]] == [int(r["trained"]) for r in rows] == [1, 2, 3, 4]
        assert [v for _, v in got[tag]] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)


def test_cli_option_and_missing_folder_errors(synthetic_h5, tmp_path, capsys):
    from hpe.cli import main
    args = ["train", "experiments/fig4.7/depthnet.toml", "--dry-run", "--data", str(synthetic_h5), "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "mse/val" in scalars(tmp_path / "tb" / tmp_path.name / "a")
    (tmp_path / "file").write_text("x")
    assert main(args + ["--out", str(tmp_path / "b"), "--tensorboard", str(tmp_path / "file")]) == 2
    assert "hpe train: error: --tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before the run folder was written


def test_a_search_writes_one_scalar_set_per_trial(synthetic_h5, tmp_path, capsys):
    from hpe.search import SearchConfig, search
    out, tb = tmp_path / "search", tmp_path / "tb"
    res = search({"data": str(synthetic_h5), "max_epochs": 1, "tensorboard": str(tb), **TINY}, out,
                 SearchConfig(rounds=1, samples=2))
    assert res["trials"] == 2
    trials = sorted(p.name for p in (tb / "search").iterdir())
    assert trials == ["trial-0000", "trial-0001"]
    for t in trials:
        rows = list(csv.DictReader((out / t / "log.csv").open()))
        assert [v for _, v in scalars(tb / "search" / t)["lr"]] == pytest.approx([float(r["lr"]) for r in rows])
    printed = capsys.readouterr().err  # hpe search reports trials on stderr
    assert printed.count("trial ") == 2 and "(round 1): val_mse" in printed  # one line per finished trial
