import inspect
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hpe import DataError
from hpe.config import TrainConfig, profile_section
from hpe.optim import LasagneMomentum
from hpe.run import RunDir
from hpe.train import LoopState, next_state, train

TINY = dict(width=0.125, fc_units=128, input_size=32, batch_size=8, progress="none", device="cpu")


def test_the_optimizer_leaves_torch_dynamo_unimported():
    """torch.optim.Optimizer's own add_param_group / zero_grad / state_dict import torch._dynamo on first call (two
    seconds of every `hpe train` start); LasagneMomentum's plain copies of them do not, and still round-trip."""
    code = ("import sys, torch\nfrom hpe.optim import LasagneMomentum\n"
            "w = torch.nn.Parameter(torch.ones(3)); opt = LasagneMomentum([w], 0.1, 0.9)\n"
            "w.grad = torch.ones(3); opt.step(); opt.zero_grad(); state = opt.state_dict()\n"
            "again = LasagneMomentum([w], 0.1, 0.9); again.load_state_dict(state)\n"
            "assert torch.equal(again.state[w]['velocity'], torch.full((3,), -0.1))\n"
            "print('torch._dynamo' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr
    # What the class body did at import, called here (mutation testing cannot switch code that ran at import).
    from torch.optim import Optimizer

    from hpe.optim import _plain
    assert _plain(Optimizer.zero_grad) is Optimizer.zero_grad.__wrapped__ and _plain(len) is len


def test_lasagne_momentum_arguments_and_groups():
    """The ranges the config allows, the lr the optimizer starts with, and a group without gradients skipped
    (not the end of the step)."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    for lr, mu in ((0.0, 0.9), (-0.1, 0.9), (0.1, -1e-9), (0.1, 1 + 1e-9), (float("nan"), 0.9)):
        with pytest.raises(ValueError, match=f"got lr {lr}, momentum {mu}"):
            LasagneMomentum([w], lr=lr, momentum=mu)
    for mu in (0.0, 1.0):
        LasagneMomentum([w], lr=1e-9, momentum=mu)
    assert LasagneMomentum([w], lr=0.1).defaults == {"lr": 0.1, "momentum": 0.9, "nesterov": False}  # Lasagne's
    frozen, live = torch.nn.Parameter(torch.tensor([3.0])), torch.nn.Parameter(torch.tensor([1.0]))
    opt = LasagneMomentum([{"params": [frozen]}, {"params": [live]}], lr=0.1, momentum=0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1] and opt.defaults["momentum"] == 0.5
    (live * 2).sum().backward()
    opt.step()  # v = -0.1 * 2 on the group with a gradient; the group without one is untouched
    assert live.item() == pytest.approx(0.8) and frozen.item() == 3.0
    opt.step()  # v = 0.5 * -0.2 - 0.2
    assert live.item() == pytest.approx(0.5)


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


def _schedule(val_curve, **cfg):
    """Feed a scripted validation curve through the schedule; returns (epoch counters, actions, final state)."""
    cfg = TrainConfig(**cfg)
    s, epochs, actions = LoopState(lr=cfg.lr), [], []
    for val in val_curve:
        if s.status != "running":
            break
        s = LoopState(**{**s.__dict__, "epoch": s.epoch + 1, "trained": s.trained + 1})
        epochs.append(s.epoch)
        s, action = next_state(s, val, cfg)
        actions.append(action)
    return epochs, actions, s


def test_thesis_schedule_halves_after_patience_epochs_and_stops_after_max_halvings():
    epochs, actions, s = _schedule([1.0, 0.9] + [0.95] * 30, patience=2, max_halvings=2, max_epochs=100, lr=1.0)
    assert epochs == list(range(1, 9))  # never rewound
    assert actions == ["improved", "improved", "wait", "halve", "wait", "halve", "wait", "stop"]
    assert (s.status, s.lr, s.halvings, s.best_epoch) == ("stopped", 0.25, 2, 2)
    assert s.reason == "early stop: no improvement for 2 epochs after 2 halvings"


def test_icip2018_schedule_is_the_authors_loop():
    """Worked out from the author's earlystopping.py / trainingtesting.py: 0-based e, halve when best_e + 5 < e,
    then e = best_e (re-run), at most 5 times, and stop at e = num_epochs - 1.  Here num_epochs = 12: best at
    epoch 2 (1-based), no improvement after; halving at epochs 8 (then re-run from 2), 8 again, ..."""
    prof = profile_section("icip2018", "train")
    cfg = {k: prof[k] for k in ("patience", "max_halvings", "on_plateau")}
    epochs, actions, s = _schedule([1.0, 0.5] + [0.9] * 200, max_epochs=12, lr=1.0, **cfg)
    rewound = [2, 3, 4, 5, 6, 7, 8]  # each halving re-runs epochs 2..8 (7 epochs) with half the lr
    assert epochs == [1] + rewound * 6
    assert actions.count("halve-restore") == 5 and actions[-1] == "stop"
    assert s.status == "stopped" and s.trained == 1 + 7 * 6 and s.lr == 1 / 32
    # Improving after a rewind, the counter runs on from the best epoch and the budget ends at max_epochs.
    curve = [1.0, 0.5] + [0.9] * 6 + list(np.linspace(0.4, 0.3, 11)) + [0.2] * 10
    epochs, actions, s = _schedule(curve, max_epochs=12, lr=1.0, **cfg)
    assert epochs == list(range(1, 9)) + list(range(2, 13))
    assert s.status == "done" and s.trained == 8 + 11 and s.lr == 0.5  # 19 epochs trained for a 12-epoch budget
    assert s.reason == "reached max_epochs = 12"


def _authors_loop(vals, num_epochs, patience, times):
    """The author's training loop (trainingtesting.py ``_training_loop_simple`` with earlystopping.py
    ``early_stopping_with_lr_decay``), restated as a test oracle over a given sequence of validation errors.
    His epoch ``e`` is 0-based and his patience P means "halve when best_e + P < e", i.e. hpe's patience = P + 1.
    Returns the 1-based epochs run, the number of halvings and how the loop ended."""
    e, back, best, best_e, epochs = 0, 0, math.inf, 0, []
    vals = iter(vals)
    while e < num_epochs:
        val = next(vals)
        epochs.append(e + 1)
        stop = go_back = False
        if val < best:
            best, best_e = val, e
        elif best_e + (patience - 1) < e:
            stop, go_back = True, back < times  # go back: lr halved and the best weights restored
        if go_back:
            back += 1
        if stop and not go_back:
            return epochs, back, "stopped"
        if e == num_epochs - 1:
            return epochs, back, "done"
        if go_back:
            e = best_e - 1
        e += 1
    return epochs, back, "done"


@pytest.mark.parametrize("curve", [
    [1.0, 0.5] + [0.9] * 60,                                          # best at 2, never again: 5 rewinds, stop
    [1.0, 0.5] + [0.9] * 6 + list(np.linspace(0.4, 0.3, 11)) + [0.2] * 10,  # improves after a rewind: budget ends
    [3, 2, 2, 1, 1, 1, 0.5, 0.6, 0.4, 0.7, 0.7, 0.3] + [0.35] * 30,  # ties are no improvement
])
@pytest.mark.parametrize("max_epochs", [3, 8, 12])
def test_next_state_replays_the_authors_loop(curve, max_epochs):
    """next_state under halve-restore-rewind, fed a scripted sequence of validation errors, runs the epochs the
    author's loop runs, halves as often and ends the same way (see _authors_loop)."""
    prof = profile_section("icip2018", "train")
    epochs, actions, s = _schedule(curve, max_epochs=max_epochs, lr=1.0,
                                   **{k: prof[k] for k in ("patience", "max_halvings", "on_plateau")})
    want_epochs, halvings, end = _authors_loop(curve, max_epochs, prof["patience"], prof["max_halvings"])
    assert (epochs, s.halvings, s.status, s.lr) == (want_epochs, halvings, end, 0.5 ** halvings)
    assert actions.count("halve-restore") + actions.count("halve") == halvings


def test_icip2018_training_restores_and_rewinds(synthetic_h5, tmp_path, monkeypatch):
    """A real tiny run whose validation error plateaus (lr 2 overshoots after the second epoch): at each
    halve-restore the next epoch starts from the best epoch's weights, re-runs the best epoch's number, at half
    the learning rate, and with the optimizer's velocity as the last update left it -- the author's
    earlystopping.py restores only the trainable parameters (set_all_param_values(..., trainable=True)); the
    Nesterov velocities live in Lasagne's update expressions, so he neither resets nor restores them.  The run's
    epochs and its end are those of the author's loop replayed on the same validation errors."""
    import hpe.train as ht
    calls = []
    real = ht.train_epoch

    def spy(net, opt, *args, **kw):
        snap = lambda: ({k: v.detach().clone() for k, v in net.state_dict().items()},
                        [opt.state[p]["velocity"].clone() if "velocity" in opt.state[p] else torch.zeros_like(p)
                         for g in opt.param_groups for p in g["params"]])
        (w0, v0), lr = snap(), opt.param_groups[0]["lr"]
        out = real(net, opt, *args, **kw)
        w1, v1 = snap()
        desc = inspect.signature(real).bind(net, opt, *args, **kw).arguments["desc"]  # "epoch E/MAX"
        calls.append(dict(epoch=int(desc.split()[1].split("/")[0]),
                          lr=lr, w0=w0, v0=v0, w1=w1, v1=v1))
        return out
    monkeypatch.setattr(ht, "train_epoch", spy)
    cfg = dict(limit_train=16, max_epochs=8, patience=2, max_halvings=2, on_plateau="halve-restore-rewind", lr=2.0,
               momentum=0.9, nesterov=True, dropout=0.0, deterministic=True, predict_test=False,
               require_learning=False, divergence_factor=1e30, **TINY)
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), **cfg))
    log = [line.split(",") for line in (tmp_path / "r" / "log.csv").read_text().splitlines()[1:]]
    vals = [float(row[5]) for row in log]
    assert [int(row[0]) for row in log] == [c["epoch"] for c in calls] and len(calls) == r["epochs_trained"]

    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)
    restores, best_i = 0, 0
    for i in range(1, len(calls)):
        prev, c = calls[i - 1], calls[i]
        if c["epoch"] <= prev["epoch"]:  # rewound: a halve-restore after calls[i - 1]
            restores += 1
            best = calls[best_i]
            assert c["epoch"] == best["epoch"]                      # the best epoch is re-run
            assert same(c["w0"], best["w1"])                        # from the best epoch's weights ...
            assert not same(c["w0"], prev["w1"])                    # ... not the plateau's
            assert c["lr"] == prev["lr"] / 2                        # at half the learning rate
            assert all(torch.equal(a, b) for a, b in zip(c["v0"], prev["v1"]))  # velocity kept as it was
            assert not all(torch.equal(a, b) for a, b in zip(c["v0"], best["v1"]))
        else:
            assert same(c["w0"], prev["w1"]) and c["lr"] == prev["lr"]
        if vals[i] < vals[best_i]:
            best_i = i
    assert restores >= 1, f"the validation errors {vals} never plateaued: nothing was restored"
    want_epochs, halvings, end = _authors_loop(vals, cfg["max_epochs"], cfg["patience"], cfg["max_halvings"])
    assert [c["epoch"] for c in calls] == want_epochs
    assert (r["status"], r["final_lr"], r["epochs"]) == (end, cfg["lr"] * 0.5 ** halvings, want_epochs[-1])
    assert r["best_epoch"] == calls[best_i]["epoch"] and r["best_val_mse"] == pytest.approx(vals[best_i])
    assert r["epochs_trained"] > r["epochs"]  # the rewinds trained more epochs than the counter shows


def test_overfits_a_few_frames(synthetic_h5, tmp_path):
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "run"), limit_train=8, max_epochs=100, patience=100,
                   lr=0.2, momentum=0.9, dropout=0.0, **{**TINY, "width": 0.5, "fc_units": 256, "batch_size": 2}))
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    first = float(rows[1].split(",")[3])
    assert r["status"] == "done" and r["train_mse"] < 0.2 * first
    for name in ("config.json", "log.csv", "checkpoint.pt", "best.pt", "result.json", "test_predictions.npz",
                 "test_predictions_uvd.txt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert len((tmp_path / "run" / "test_predictions_uvd.txt").read_text().splitlines()[0].split()) == 42
    # provenance in config.json and result.json
    prov = json.loads((tmp_path / "run" / "result.json").read_text())["provenance"]
    assert {"hpe_version", "torch", "cuda", "device", "command", "started", "finished"} <= set(prov)
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["data"]["fingerprint"] == r["data_fingerprint"] and "git_commit" in doc["provenance"]
    assert doc["preprocess"]["camera"][0] == pytest.approx(588.036865)


def test_a_run_that_learned_nothing_is_not_done(synthetic_h5, tmp_path):
    bad = dict(data=str(synthetic_h5), limit_train=16, max_epochs=1, lr=1e-9, **TINY)
    r = train({**bad, "out": str(tmp_path / "strict")})
    assert r["status"] == "not-learned" and r["reason"].startswith(  # with a test split, the test error decides
        f"test error {r['test_mean_mm']:.5g} is not below the mean training pose's {r['mean_pose_mm']:.5g}")
    r = train({**bad, "out": str(tmp_path / "relaxed"), "require_learning": False})
    assert r["status"] == "done"
    p = subprocess.run([sys.executable, "-m", "hpe", "train", "--quiet"] + _sets(
        data=synthetic_h5, out=tmp_path / "cli", limit_train=16, max_epochs=1, lr=1e-9, **TINY), capture_output=True,
        text=True)
    assert p.returncode == 3 and "not-learned" in p.stderr


def test_an_early_stopped_run_is_held_to_the_validation_floor(synthetic_h5, tmp_path):
    """The not-learned rule also covers runs that stopped early, and without a test split it compares the validation
    MSE with the mean training pose's.  lr 1e-30 leaves the weights as they were: the validation error never
    improves, so the run stops after its first epoch of patience."""
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), limit_train=16, max_epochs=5, patience=1,
                   max_halvings=0, lr=1e-30, momentum=0.0, predict_test=False, **TINY))
    assert r["epochs"] == 2 and r["status"] == "not-learned"
    assert r["reason"].startswith(f"validation MSE {r['best_val_mse']:.5g} is not below the mean training pose's "
                                  f"{r['mean_pose_val_mse']:.5g}")
    # The floor is the mean pose of the frames trained on (the first 16), scored on the validation split -- not the
    # validation split's own mean (a careless user's mutant that no test caught).
    from hpe.dataset import load_split
    from hpe.metrics import normalised_mse
    train_j = load_split(synthetic_h5, "train", False, 32, limit=16).joints.numpy()
    val_j = load_split(synthetic_h5, "val", False, 32).joints.numpy()
    floor = normalised_mse(np.broadcast_to(train_j.mean(0), val_j.shape), val_j)
    assert r["mean_pose_val_mse"] == pytest.approx(floor, rel=1e-6)
    assert floor != pytest.approx(normalised_mse(np.broadcast_to(val_j.mean(0), val_j.shape), val_j), rel=1e-3)


def _sets(**kv):
    out = []
    for k, v in kv.items():
        out += ["--data", str(v)] if k == "data" else ["--out", str(v)] if k == "out" else ["--set", f"{k}={v}"]
    return out


def test_divergence_keeps_best(synthetic_h5, tmp_path):
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), limit_train=16, max_epochs=6, lr=1e6,
                   momentum=0.99, **TINY))
    assert r["status"] == "diverged" and "loss" in r["reason"]
    assert (tmp_path / "r" / "result.json").is_file()


def _cmd(h5, out, **over):
    sets = {**dict(width=0.125, fc_units=128, input_size=32, batch_size=4, max_epochs=4, deterministic=True,
                   patience=10, limit_train=24, predict_test=False, checkpoint_interval_s=0, require_learning=False),
            **over}
    return [sys.executable, "-m", "hpe", "train", "--data", str(h5), "--out", str(out), "--quiet", "--resume",
            "--device", "cpu"] + sum([["--set", f"{k}={v}"] for k, v in sets.items()], [])


def _start_and_wait_for_checkpoint(cmd, ckpt):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    return p


# `hpe train` that stops itself (SIGSTOP) when it starts an epoch with a checkpoint on disk: the parent then
# kills it at that exact point, mid-run with the lock held, whatever the speed of the machine.
_STOP_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
import hpe.train as ht
from hpe.cli import main
real, ckpt = ht.train_epoch, sys.argv[1]

def train_epoch(*args, **kw):
    if os.path.exists(ckpt):
        os.kill(os.getpid(), signal.SIGSTOP)
    return real(*args, **kw)
ht.train_epoch = train_epoch
sys.exit(main(sys.argv[2:]))
"""


def test_kill9_and_resume_matches_uninterrupted(synthetic_h5, tmp_path, hpe_cli):
    # The uninterrupted reference and the settings checks run in this process (the same code without an interpreter
    # start each); the run that is killed and the one that resumes it are real processes.
    assert hpe_cli(*_cmd(synthetic_h5, tmp_path / "ref")[3:])[0] == 0
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    cmd = _cmd(synthetic_h5, tmp_path / "cut")
    assert cmd[1:3] == ["-m", "hpe"]
    p = subprocess.Popen([sys.executable, "-c", _STOP_AFTER_FIRST_CHECKPOINT, str(ckpt)] + cmd[3:],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status = os.waitpid(p.pid, os.WUNTRACED)  # returns once it has stopped itself (or, wrongly, ended)
    assert os.WIFSTOPPED(status), f"hpe train ended ({status}) instead of reaching epoch 2: {p.stderr.read()}"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert torch.load(ckpt, weights_only=False)["state"]["epoch"] == 1  # killed during epoch 2
    subprocess.run(cmd, check=True, capture_output=True)  # the lock died with it
    a = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=False)
    b = torch.load(ckpt, weights_only=False)
    assert a["state"]["epoch"] == b["state"]["epoch"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    code, _, err = hpe_cli(*_cmd(synthetic_h5, tmp_path / "cut", lr=0.5)[3:])
    assert code == 2 and "trained with other settings (lr)" in err
    code, out, _ = hpe_cli(*_cmd(synthetic_h5, tmp_path / "cut", lr=0.5)[3:], "--restart-if-changed")
    assert code == 0 and "starting" in out


def test_a_second_writer_is_refused_at_once(synthetic_h5, tmp_path, hpe_cli):
    out = tmp_path / "busy"
    p = _start_and_wait_for_checkpoint(_cmd(synthetic_h5, out, max_epochs=400), out / "checkpoint.pt")
    try:
        t = time.time()
        code, _, err = hpe_cli(*_cmd(synthetic_h5, out)[3:])  # the second writer: this process
        assert code == 2 and f"another hpe process (pid {p.pid}) is writing {out}" in err
        assert time.time() - t < 60
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert not [f for f in out.iterdir() if ".tmp-" in f.name]  # SIGTERM cleaned up like Ctrl-C


def test_resume_refuses_other_data(synthetic_h5, synthetic_root, tmp_path, hpe_cli):
    from hpe.prep import prep, prep_config
    assert hpe_cli(*_cmd(synthetic_h5, tmp_path / "r", max_epochs=1)[3:])[0] == 0
    other = tmp_path / "other.h5"
    prep(synthetic_root, other, prep_config(size=64, workers=1, val_seed=5), progress=False)  # same path shape
    os.replace(synthetic_h5, tmp_path / "orig.h5")
    try:
        os.replace(other, synthetic_h5)
        code, _, err = hpe_cli(*_cmd(synthetic_h5, tmp_path / "r", max_epochs=1)[3:])
        assert code == 2 and "holds different data (fingerprint" in err and str(synthetic_h5) in err
    finally:
        os.replace(tmp_path / "orig.h5", synthetic_h5)


def test_bad_prepared_files_are_named(synthetic_h5, tmp_path):
    import shutil
    broken = tmp_path / "broken.h5"
    shutil.copy(synthetic_h5, broken)
    with h5py.File(broken, "a") as h5:
        del h5["val/joints"]
        del h5.attrs["rgb_std"]
    with pytest.raises(DataError, match=f"{broken} lacks the attribute\\(s\\) rgb_std"):
        train(dict(data=str(broken), out=str(tmp_path / "x"), **TINY))
    with h5py.File(broken, "a") as h5:
        h5.attrs["rgb_std"] = [1.0, 1.0, 1.0]
    with pytest.raises(DataError, match="lacks the dataset\\(s\\) val/joints"):
        train(dict(data=str(broken), out=str(tmp_path / "x"), **TINY))
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="cannot read .*junk.h5 as a prepared HDF5 file"):
        train(dict(data=str(tmp_path / "junk.h5"), out=str(tmp_path / "x"), **TINY))


def test_an_empty_test_split_is_refused_before_training(synthetic_h5, tmp_path):
    import shutil
    empty = tmp_path / "empty.h5"
    shutil.copy(synthetic_h5, empty)
    with h5py.File(empty, "a") as h5:
        for name in list(h5["test"]):
            h5["test"][name].resize(0, axis=0)
    with pytest.raises(DataError, match="the test split has no frames"):
        train(dict(data=str(empty), out=str(tmp_path / "r"), **TINY))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("bad, message", [
    (dict(net="net42"), "unknown net"),
    (dict(inputs="depth+rgb", fusion_layer="conv12"), "out of range"),
    (dict(device="gpu"), "unknown device 'gpu'"),
    (dict(device="cuda:64"), "cuda:64' asked for, but"),
])
def test_bad_configs_fail_at_once(bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(dict(data="nowhere.h5", out=str(tmp_path / "r"), **bad))


def test_checkpoints_are_rate_limited_and_best_survives_a_kill_between_writes(synthetic_h5, tmp_path):
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), limit_train=16, max_epochs=3, patience=10,
                   predict_test=False, checkpoint_interval_s=1e9, require_learning=False, **TINY))
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["epoch"] == 3 and ck["state"]["status"] == "done"  # the last epoch is always saved
    assert len((tmp_path / "r" / "log.csv").read_text().splitlines()) == 4  # the log is written every epoch
    run = RunDir(tmp_path / "r")
    assert not run.best_prev.exists()
    best = torch.load(run.best, weights_only=False)
    assert best["epoch"] == r["best_epoch"] == ck["state"]["best_epoch"]
    # Killed after a new best.pt but before its checkpoint: the checkpoint's best is still in best.prev.pt.
    os.replace(run.best, run.best_prev)
    torch.save({**best, "epoch": best["epoch"] + 1, "model": {}}, run.best)
    assert run.load_best(ck["state"]["best_epoch"]).keys() == best["model"].keys()
    run.best_prev.unlink()
    with pytest.raises(DataError, match="best weights of epoch"):
        run.load_best(ck["state"]["best_epoch"])


def _train_args(h5, out, **over):
    sets = {**dict(width=0.125, fc_units=128, input_size=32, batch_size=8, max_epochs=2, dropout=0.0, patience=10,
                   limit_train=24, predict_test=False, deterministic=True, require_learning=False), **over}
    return ["-m", "hpe", "train", "--data", str(h5), "--out", str(out), "--quiet", "--device", "cpu"] + sum(
        [["--set", f"{k}={v}"] for k, v in sets.items()], [])


def test_ddp_two_processes_match_one(synthetic_h5, tmp_path, hpe_cli):
    """torchrun, 2 CPU processes (gloo), global batch 8 = 2 x 4, against one process (this one) with batch 8."""
    assert hpe_cli(*_train_args(synthetic_h5, tmp_path / "one")[2:])[0] == 0
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
                       + _train_args(synthetic_h5, tmp_path / "two"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert a["state"]["epoch"] == b["state"]["epoch"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    la, lb = a["state"]["rows"][-1]["train_loss"], b["state"]["rows"][-1]["train_loss"]
    assert abs(la - lb) < 1e-4 * la


def test_fast_switches_and_centre_jitter_run(synthetic_h5, tmp_path):
    """bf16 autocast + channels_last + centre jitter train and predict."""
    r = train(dict(data=str(synthetic_h5), out=str(tmp_path / "fast"), limit_train=16, max_epochs=1,
                   precision="bf16", channels_last=True, centre_jitter_mm=10.0, require_learning=False, **TINY))
    assert r["status"] == "done" and np.isfinite(r["test_mean_mm"])


def test_split_too_big_for_the_device_is_one_clear_error(synthetic_h5, tmp_path, monkeypatch):
    from hpe.dataset import SplitData

    def no_room(self, device):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(SplitData, "to", no_room)
    with pytest.raises(DataError, match=r"'train' split of .* does not fit in the free memory"):
        train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), **TINY))


def test_a_step_that_cannot_fit_in_memory_is_refused_and_leaves_no_run(synthetic_h5, tmp_path, monkeypatch):
    """On a CPU the kernel kills a process that allocates too much (exit 137, no message, a config.json-only run
    folder): a step whose lower bound exceeds the memory left is refused before the first step instead, and a run
    that fails before its first checkpoint leaves no folder."""
    import hpe.train as tr
    cfg = TrainConfig(**{**TINY, "data": str(synthetic_h5)})
    weights = 4 * 3 * sum(p.numel() for p in tr.build_model(cfg, 14).parameters())
    bound = tr.step_bytes_lower_bound(cfg, 14)
    assert weights < bound < weights + 4 * cfg.batch_size * 200_000  # the outputs of one 32 px batch, and no more
    double = tr.step_bytes_lower_bound(TrainConfig(**{**TINY, "batch_size": 16}), 14)
    assert double - weights == pytest.approx(2 * (bound - weights))  # activations scale with the batch
    monkeypatch.setattr(tr, "_available_memory", lambda: bound - 1)
    with pytest.raises(DataError, match=r"needs at least .* GiB, this machine has .* GiB available"):
        train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), **TINY))
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(tr, "_available_memory", lambda: bound + 1)
    assert train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), max_epochs=1, require_learning=False,
                      **TINY))["status"] == "done"


def test_a_run_failing_before_its_first_checkpoint_leaves_no_folder(synthetic_h5, tmp_path, monkeypatch):
    import hpe.train as tr

    def fails(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(tr, "_loop", fails)
    with pytest.raises(RuntimeError, match="allocate"):
        train(dict(data=str(synthetic_h5), out=str(tmp_path / "r"), **TINY))
    assert not (tmp_path / "r").exists()  # config.json was written, and removed with the folder
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(RuntimeError, match="allocate"):
        train(dict(data=str(synthetic_h5), out=str(tmp_path / "mine"), **TINY))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]  # not claimed by train either
