import csv
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from glob import glob
from pathlib import Path

import pytest

from hpe import DataError
from hpe.search import SearchConfig, round_ranges, search

# One epoch on 16 frames learns nothing (a not-learned trial is failed, never the best): these tests are about the
# search's mechanics, so its trials accept such runs.
BASE = dict(width=0.125, fc_units=64, input_size=32, batch_size=16, max_epochs=1, limit_train=16, device="cpu",
            require_learning=False)


def test_round_ranges_shrink_around_best():
    r = round_ranges({"lr": (1e-3, 1e-1, True), "dropout": (0.0, 0.1, False)}, {"lr": 1e-2, "dropout": 0.09}, 1, 0.5)
    assert r["lr"][0] == pytest.approx(10 ** -2.5) and r["lr"][1] == pytest.approx(10 ** -1.5)
    assert r["dropout"][1] == pytest.approx(0.1) and r["dropout"][0] == pytest.approx(0.05)  # clipped inside


def test_tiny_search_embedded_storage_and_resume(synthetic_h5, tmp_path):
    cfg = SearchConfig(rounds=2, samples=2, ranges={"lr": (1e-3, 1e-1, True), "momentum": (0.8, 1.0, True),
                                                    "dropout": (0.0, 0.1, False)})
    base = {**BASE, "data": str(synthetic_h5)}
    first = search(base, tmp_path, cfg, max_trials=1)  # a worker stopped early ...
    assert first["trials"] == 1
    said = []
    res = search(base, tmp_path, cfg, say=said.append)  # ... and the study resumes where it stopped
    assert res["trials"] == 4 and res["complete"] + res["failed"] == 4
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert [r["round"] for r in rows] == ["1", "1", "2", "2"]  # counted from 1, as the terminal lines say
    assert (tmp_path / "search.png").is_file() and (tmp_path / "best.json").is_file()
    # BASE switches the not-learned rule off (a careless user's tiny preset did): said at the start, in best.json,
    # and on each trial that did not beat the mean pose (one epoch of a tiny net: none does).
    assert said[0].startswith("hpe search: warning: require_learning = false") and "warning" in res
    assert json.loads((tmp_path / "best.json").read_text())["warning"] == res["warning"]
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert done and all("learned nothing: not below the mean pose's" in r["reason"] for r in done)
    assert sum("-- learned nothing" in line for line in said) == sum(r["state"] == "COMPLETE" for r in rows[1:])


def test_a_study_resumed_as_another_search_is_refused(synthetic_h5, tmp_path):
    """A careless user reran a finished study with --samples 3 instead of 2: the new trials were labelled with the
    old rounds.  The study records its definition; another one is refused before any trial, naming what differs."""
    base = {**BASE, "data": str(synthetic_h5)}
    cfg = SearchConfig(rounds=1, samples=1, ranges={"lr": (1e-3, 1e-1, True)})
    assert search(base, tmp_path, cfg)["trials"] == 1
    with pytest.raises(ValueError, match=r"is another search \(samples: 1 there, 2 here\): rerun it as it was"):
        search(base, tmp_path, SearchConfig(rounds=1, samples=2, ranges={"lr": (1e-3, 1e-1, True)}))
    with pytest.raises(ValueError, match=r"another search \(settings dropout differ\)"):
        search({**base, "dropout": 0.2}, tmp_path, cfg)
    same = search({**base, "device": "cpu", "progress": "none"}, tmp_path, cfg)  # runtime keys may differ
    assert same["trials"] == 1


def test_setup_errors_stop_the_search_before_any_trial(synthetic_h5, tmp_path, hpe_cli):
    cfg = SearchConfig(rounds=1, samples=2)
    with pytest.raises(DataError, match="missing prepared dataset"):
        search({**BASE, "data": str(tmp_path / "nope.h5")}, tmp_path / "a", cfg)
    with pytest.raises(ValueError, match="batch_size = 0"):
        search({**BASE, "data": str(synthetic_h5), "batch_size": 0}, tmp_path / "b", cfg)
    with pytest.raises(ValueError, match="--range lrate: not a numeric hyperparameter"):
        search({**BASE, "data": str(synthetic_h5)}, tmp_path / "c", SearchConfig(ranges={"lrate": (0.1, 1, True)}))
    assert not (tmp_path / "a" / "study.db").exists()
    code, _, err = hpe_cli("search", "--data", tmp_path / "nope.h5", "--out", tmp_path / "d", "--quiet")
    assert code == 2 and err.startswith("hpe search: error: ") and len(err.splitlines()) == 1


def test_a_dry_run_is_two_tiny_trials_marked_as_such(synthetic_h5, tmp_path, hpe_cli):
    """--dry-run ran the whole search (150 trials) and wrote an unmarked best.json: now one round of two tiny trials,
    and best.json says it means nothing."""
    code, out, err = hpe_cli("search", "--data", synthetic_h5, "--out", tmp_path / "s", "--dry-run", "--quiet",
                             "--set", "device=cpu")
    assert code == 0, err
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["dry_run"] is True and best["trials"] == 2 and "a dry run (--dry-run)" in best["warning"]
    assert "hpe search: warning: a dry run" in err


def test_a_setup_failure_mid_search_stops_it_and_does_not_fill_the_round(synthetic_h5, tmp_path, monkeypatch):
    import hpe.train
    real, calls = hpe.train.train, []

    def flaky(config, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise DataError("the data file went away")
        return real(config, **kw)
    monkeypatch.setattr(hpe.train, "train", flaky)
    cfg = SearchConfig(rounds=1, samples=2)
    with pytest.raises(DataError, match="went away"):
        search({**BASE, "data": str(synthetic_h5)}, tmp_path, cfg)
    res = search({**BASE, "data": str(synthetic_h5)}, tmp_path, cfg)  # fixed: the round still gets its 2 samples
    assert res["complete"] == 2 and res["trials"] == 3
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_sampling_is_reproducible_per_trial(synthetic_h5, tmp_path):
    cfg = SearchConfig(rounds=1, samples=2, seed=7)
    params = []
    for out in ("a", "b"):
        search({**BASE, "data": str(synthetic_h5)}, tmp_path / out, cfg)
        rows = csv.DictReader(open(tmp_path / out / "trials.csv"))
        params.append([(r["lr"], r["momentum"], r["dropout"]) for r in rows])
    assert params[0] == params[1] and params[0][0] != params[0][1]


def test_diverging_trial_is_failed_with_reason(synthetic_h5, tmp_path):
    cfg = SearchConfig(rounds=1, samples=1, ranges={"lr": (1e6, 1e7, True), "momentum": (0.98, 0.99, False),
                                                    "dropout": (0.0, 0.01, False)})
    res = search({**BASE, "data": str(synthetic_h5), "max_epochs": 6, "batch_size": 4}, tmp_path, cfg)
    assert res["failed"] == 1
    row = next(csv.DictReader(open(tmp_path / "trials.csv")))
    assert row["state"] == "FAIL" and row["reason"]


def _pg_bin():
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres(tmp_path):
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not installed (apt-get install postgresql; .ci/run does this)")
    import psycopg2  # noqa: F401  (a test dependency: pip install -e '.[test]')
    import tempfile
    home = Path(tempfile.mkdtemp(prefix="hpe-pg-"))  # pytest's tmp dirs are private to root
    data = home / "pg"
    run_as = [] if getpass.getuser() != "root" else ["runuser", "-u", "postgres", "--"]
    if run_as:
        os.chmod(home, 0o755)
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-U", "hpe", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {home} -h 127.0.0.1",
                             "-l", str(home / "pg.log"), "-w", "start"], check=True, capture_output=True)
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "hpe", "hpe"], check=True)
        yield f"postgresql+psycopg2://hpe@127.0.0.1:{port}/hpe"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_share_a_postgres_study(synthetic_h5, tmp_path, postgres):
    out = tmp_path / "search"
    cmd = [sys.executable, "-m", "hpe", "search", "--data", str(synthetic_h5), "--out", str(out),
           "--storage", postgres, "--rounds", "2", "--samples", "3", "--quiet"] + sum(
        [["--set", f"{k}={v}"] for k, v in BASE.items()], [])
    # The same command in both (trial k samples with --seed + k whichever worker runs it; another --seed would be
    # another search, refused)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    import optuna
    study = optuna.load_study(study_name="hpe-search", storage=postgres)
    trials = study.get_trials()
    # None lost: every round got its samples (two workers may each start the last one of a round: one extra) ...
    rounds = [t.user_attrs["round"] for t in trials]
    assert rounds.count(0) >= 3 and rounds.count(1) >= 3 and len(trials) <= 8
    assert all(t.state.is_finished() for t in trials)
    # ... and none run twice: one run folder per trial number
    assert sorted(p.name for p in out.glob("trial-*")) == sorted(f"trial-{t.number:04d}" for t in trials)


def test_killed_worker_trial_is_failed_and_requeued(synthetic_h5, tmp_path, hpe_cli):
    out = tmp_path / "search"
    cmd = [sys.executable, "-m", "hpe", "search", "--data", str(synthetic_h5), "--out", str(out), "--rounds", "1",
           "--samples", "2", "--heartbeat", "1", "--quiet"] + sum(
        [["--set", f"{k}={v}"] for k, v in
         {**BASE, "max_epochs": 40, "limit_train": 24, "checkpoint_interval_s": 0}.items()], [])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "trial-0000" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)  # mid-trial
    p.wait()
    assert ckpt.exists()
    time.sleep(2.5)  # past the grace period (2 heartbeats)
    code, _, err = hpe_cli(*cmd[3:])  # the rerun, in this process
    assert code == 0, err[-2000:]
    import optuna
    study = optuna.load_study(study_name="hpe-search", storage=f"sqlite:///{out / 'study.db'}")
    trials = {t.number: t for t in study.get_trials()}
    assert trials[0].state == optuna.trial.TrialState.FAIL  # the killed worker's trial ...
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE  # ... ran again, once
    assert retry[0].params == trials[0].params
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials.values()) == 2
    assert (out / "trial-0000" / "result.json").is_file()  # continued in the killed trial's folder
