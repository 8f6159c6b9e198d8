import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from hpe.optim import LasagneMomentum
from hpe.train import train

TINY = dict(width=0.125, fc_units=128, input_size=32, batch_size=8, progress=False, device="cpu")


def test_lasagne_updates():
    """classical: v = mu v - lr g, w += v; nesterov: w += mu v - lr g; the velocity keeps the old lr when halved."""
    for nesterov in (False, True):
        w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        opt = LasagneMomentum([w], lr=0.1, momentum=0.9, nesterov=nesterov)
        v, ref = np.zeros(2), np.array([1.0, -2.0])
        for lr in (0.1, 0.1, 0.05):
            opt.param_groups[0]["lr"] = lr
            g = 2 * ref  # gradient of sum(w^2)
            opt.zero_grad()
            (w ** 2).sum().backward()
            opt.step()
            v = 0.9 * v - lr * g
            ref = ref + (0.9 * v - lr * g if nesterov else v)
            np.testing.assert_allclose(w.detach().numpy(), ref, rtol=1e-5)


def test_overfits_a_few_frames(synthetic_h5, tmp_path):
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "run"), limit_train=8, max_epochs=100, patience=100,
                   lr=0.2, momentum=0.9, dropout=0.0, **{**TINY, "width": 0.5, "fc_units": 256, "batch_size": 2}))
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    first = float(rows[1].split(",")[2])
    assert r["status"] == "done" and r["train_mse"] < 0.2 * first
    for name in ("config.json", "log.csv", "checkpoint.pt", "best.pt", "result.json", "test_predictions.npz",
                 "test_predictions_uvd.txt"):
        assert (tmp_path / "run" / name).is_file(), name
    line = (tmp_path / "run" / "test_predictions_uvd.txt").read_text().splitlines()[0].split()
    assert len(line) == 42


@pytest.mark.parametrize("bad, message", [
    (dict(net="net42"), "unknown net"),
    (dict(inputs="depth+rgb", fusion_layer="conv12"), "out of range"),
    (dict(inputs="thermal"), "unknown inputs"),
    (dict(lr=-1.0), "lr must be positive"),
    (dict(bogus=1), "unknown config keys: bogus"),
    (dict(device="gpu"), "unknown device 'gpu'"),
    (dict(device="cuda:64"), "cuda:64' asked for, but"),
])
def test_bad_configs_fail_at_once(bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(dict(data="nowhere.h5", out=str(tmp_path / "r"), **bad))


def test_divergence_keeps_best(synthetic_h5, tmp_path):
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), limit_train=16, max_epochs=6, lr=1e6,
                   momentum=0.99, **TINY))
    assert r["status"] == "diverged" and "loss" in r["reason"]
    assert (tmp_path / "r" / "result.json").is_file()


def _cmd(h5, out):
    return [sys.executable, "-m", "hpe", "train", "--data", str(h5), "--out", str(out), "--quiet", "--resume",
            "--device", "cpu"] + sum([["--set", f"{k}={v}"] for k, v in dict(
                width=0.125, fc_units=128, input_size=32, batch_size=4, max_epochs=4, deterministic=True,
                patience=10, limit_train=24, predict_test=False, checkpoint_interval_s=0).items()], [])


def test_kill9_and_resume_matches_uninterrupted(synthetic_h5, tmp_path):
    subprocess.run(_cmd(synthetic_h5, tmp_path / "ref"), check=True, capture_output=True)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    p = subprocess.Popen(_cmd(synthetic_h5, tmp_path / "cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert ckpt.exists()
    assert torch.load(ckpt, weights_only=False)["epoch"] < 4
    subprocess.run(_cmd(synthetic_h5, tmp_path / "cut"), check=True, capture_output=True)
    a = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=False)
    b = torch.load(ckpt, weights_only=False)
    assert a["epoch"] == b["epoch"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with pytest.raises(subprocess.CalledProcessError):  # a different config refuses to resume
        subprocess.run(_cmd(synthetic_h5, tmp_path / "cut") + ["--set", "lr=0.5"], check=True, capture_output=True)


def test_checkpoints_are_rate_limited_and_best_survives_a_kill_between_writes(synthetic_h5, tmp_path):
    from hpe.train import _load_best, _Run
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), limit_train=16, max_epochs=3, patience=10,
                   predict_test=False, checkpoint_interval_s=1e9, **TINY))
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert ck["epoch"] == 3 and ck["status"] == "done"  # the last epoch is always saved
    assert len((tmp_path / "r" / "log.csv").read_text().splitlines()) == 4  # the log is written every epoch
    assert not (tmp_path / "r" / "best.prev.pt").exists()
    run = _Run(tmp_path / "r")
    best = torch.load(run.best, weights_only=False)
    assert best["epoch"] == r["best_epoch"] == ck["best_epoch"]
    # Killed after a new best.pt but before its checkpoint: the checkpoint's best is still in best.prev.pt.
    os.replace(run.best, run.best_prev)
    torch.save({**best, "epoch": best["epoch"] + 1, "model": {}}, run.best)
    assert _load_best(run, ck["best_epoch"]).keys() == best["model"].keys()
    run.best_prev.unlink()
    with pytest.raises(Exception, match="best weights of epoch"):
        _load_best(run, ck["best_epoch"])


def _train_args(h5, out, **over):
    sets = dict(width=0.125, fc_units=128, input_size=32, batch_size=8, max_epochs=2, dropout=0.0, patience=10,
                limit_train=24, predict_test=False, deterministic=True, **over)
    return ["-m", "hpe", "train", "--data", str(h5), "--out", str(out), "--quiet", "--device", "cpu"] + sum(
        [["--set", f"{k}={v}"] for k, v in sets.items()], [])


def test_ddp_two_processes_match_one(synthetic_h5, tmp_path):
    """torchrun, 2 CPU processes (gloo), global batch 8 = 2 x 4, against one process with batch 8."""
    subprocess.run([sys.executable] + _train_args(synthetic_h5, tmp_path / "one"), check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
                       + _train_args(synthetic_h5, tmp_path / "two"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    assert abs(a["rows"][-1]["train_loss"] - b["rows"][-1]["train_loss"]) < 1e-4 * a["rows"][-1]["train_loss"]


def test_fast_switches_run(synthetic_h5, tmp_path):
    """bf16 autocast + channels_last (+ compile where a compiler backend exists) train and predict."""
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "fast"), limit_train=16, max_epochs=1,
                   precision="bf16", channels_last=True, **TINY))
    assert r["status"] == "done" and np.isfinite(r["test_mean_mm"])
    with pytest.raises(ValueError, match="precision must be"):
        train(dict(data=str(synthetic_h5), out=str(tmp_path / "x"), precision="fp8"))


def test_split_too_big_for_the_device_is_one_clear_error(synthetic_h5, tmp_path, monkeypatch):
    from hpe import DataError
    from hpe.data import SplitData

    def no_room(self, device):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(SplitData, "to", no_room)
    with pytest.raises(DataError, match=r"'train' split of .* does not fit in the free memory"):
        train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), **TINY))
