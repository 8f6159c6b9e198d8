"""Random-search hyperparameter optimisation (thesis 4.4.3; Bergstra & Bengio 2012) with Optuna.

Rounds of random samples; each round shrinks every range around the best configuration so far (in log space
for log-uniform parameters), selected on the validation split.  The study lives in an SQL database: an SQLite
file in the run folder by default, or any URL (``postgresql://...``) so workers on many machines share it.
Start more workers with the same command.  Heartbeats mark a killed worker's trial failed and re-queue it.
Trial k samples with seed ``seed + k``, so a study is reproducible whichever worker runs which trial.  A setup
error (missing data file, bad ``--set``, unknown range) stops the search before any trial, or at the first trial
it breaks; such trials do not count towards a round, so the search runs them once the setup is fixed.  A trial
whose run diverged or learned nothing is failed, never the best.  Ctrl-C or SIGTERM of a worker fails its running
trial and re-queues it at once (no waiting for the heartbeat's grace period).  Each finished trial is one line.
"""
from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hpe import DataError
from hpe.atomic import write_json

try:
    import optuna
except ModuleNotFoundError as exc:  # an optional dependency: pip install 'hpe[search]'
    raise DataError("hpe search needs Optuna: pip install 'hpe[search]' (or pip install optuna)") from exc

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats are "experimental" in Optuna and meant for study.optimize; we drive them ourselves (see _Heartbeat).
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
_Retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback


def _retry(callback, max_retry: int | None):
    """A retry callback, without optuna 4's FutureWarning (printed on every search; the callback does the job)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return callback(max_retry=max_retry)


# name: (low, high, log) - the thesis's initial ranges (4.4.3).  log = True samples as eq. 4.19 does for the
# learning rate, lr ~ 10^U(log10 a, log10 b); the thesis samples momentum the same way and dropout linearly.
THESIS_RANGES = {"lr": (1e-3, 1e-1, True), "momentum": (0.8, 1.0, True), "dropout": (0.0, 0.1, False)}
SETUP_ERRORS = (DataError, ValueError, FileNotFoundError, FileExistsError)


@dataclass
class SearchConfig:
    rounds: int = 3
    samples: int = 50
    shrink: float = 0.5          # each round's range width = shrink x the previous width, centred on the best
    ranges: dict = field(default_factory=lambda: dict(THESIS_RANGES))
    seed: int = 0
    study: str = "hpe-search"
    storage: str | None = None   # None: sqlite file in the output folder
    heartbeat_s: int = 60
    dry_run: bool = False        # --dry-run: one round of two tiny trials, to check the path; marked in best.json


def round_ranges(ranges: dict, best: dict | None, r: int, shrink: float) -> dict:
    """Ranges for round ``r`` (0-based): the initial ones shrunk r times around ``best``, clipped to the initial."""
    if best is None or r == 0:
        return dict(ranges)
    out = {}
    for name, (lo, hi, log) in ranges.items():
        f = (lambda x: math.log(x)) if log else (lambda x: x)
        g = (lambda x: math.exp(x)) if log else (lambda x: x)
        a, b = f(lo), f(hi)
        half = (b - a) * shrink ** r / 2
        c = min(max(f(best[name]), a + half), b - half)
        out[name] = (g(c - half), g(c + half), log)
    return out


def storage_url(cfg: SearchConfig, out: Path) -> str:
    return cfg.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def _storage_error(url: str, exc: Exception) -> DataError:
    if isinstance(exc, ImportError):  # the URL is fine, its database driver is not installed (psycopg2 for postgresql)
        return DataError(f"--storage {url}: its database driver is not installed ({exc}): pip install "
                         f"'hpe[postgres]' for PostgreSQL (psycopg2-binary), or the driver the URL names")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"--storage {url}: cannot use the study database ({first}): give a writable database URL, e.g. "
                     f"sqlite:///path/study.db or postgresql://user@host/db")


def _storage(cfg: SearchConfig, out: Path):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    url = storage_url(cfg, out)
    try:
        make_url(url)
    except ArgumentError as exc:
        raise _storage_error(url, exc) from None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=cfg.heartbeat_s, grace_period=2 * cfg.heartbeat_s,
                heartbeat_stale_trial_callback=_retry(_Retry, max_retry=1))
        except Exception as exc:  # workers starting together race to create the schema: the loser retries
            if attempt == 4 or isinstance(exc, ImportError):  # a missing driver stays missing
                raise _storage_error(url, exc) from None
            time.sleep(0.5 + attempt)


def _state(study) -> tuple[dict[int, int], dict | None]:
    """Trials per round (running or finished; a stale trial that was re-queued is not counted, so a worker
    asks again and ``study.ask`` hands it the re-queued copy first) and the best params so far."""
    trials = study.get_trials(deepcopy=False)
    requeued = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    counts: dict[int, int] = {}
    for t in trials:
        if "round" not in t.user_attrs or t.state in (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.WAITING):
            continue
        if t.state == optuna.trial.TrialState.FAIL and (t.number in requeued or "setup_error" in t.user_attrs):
            continue
        counts[t.user_attrs["round"]] = counts.get(t.user_attrs["round"], 0) + 1
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value).params if done else None
    return counts, best


class _Heartbeat:
    """Records the trial's heartbeat while it trains (Optuna only does this itself inside study.optimize)."""

    def __init__(self, storage, trial_id: int, interval: float):
        import threading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True)

    def _beat(self, storage, trial_id, interval):
        while True:
            storage.record_heartbeat(trial_id)
            if self._stop.wait(interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _open_study(cfg: SearchConfig, out: Path):
    storage = _storage(cfg, out)
    for attempt in range(5):
        try:
            return optuna.create_study(study_name=cfg.study, storage=storage, direction="minimize",
                                       sampler=optuna.samplers.RandomSampler(seed=cfg.seed), load_if_exists=True)
        except Exception as exc:  # workers starting together race to create the study: the loser retries
            if attempt == 4:
                raise _storage_error(storage_url(cfg, out), exc) from None
            time.sleep(0.5 + attempt)


def _check_same_search(study, base: dict, cfg: SearchConfig, out: Path) -> None:
    """A study is one search: resumed or joined with other rounds, samples, ranges or settings, its rounds would
    mix trials sampled under two definitions (a careless user's --samples 3 after --samples 2 relabelled rounds).
    The first worker records the definition; later ones must match it (device, data path, progress may differ)."""
    from hpe.config import RUNTIME_KEYS
    here = {"rounds": cfg.rounds, "samples": cfg.samples, "shrink": cfg.shrink, "seed": cfg.seed,
            "ranges": {k: list(v) for k, v in sorted(cfg.ranges.items())},
            "settings": {k: v for k, v in sorted(base.items()) if k not in RUNTIME_KEYS}}
    here = json.loads(json.dumps(here, default=str))
    recorded = study.user_attrs.get("search")
    if recorded is None:
        study.set_user_attr("search", here)
        return
    differ = [f"{k}: {recorded.get(k)} there, {here[k]} here" for k in here
              if k != "settings" and here[k] != recorded.get(k)]
    mine, theirs = here["settings"], recorded.get("settings", {})
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if keys:
        differ.append(f"settings {', '.join(keys)} differ")
    if differ:
        raise ValueError(f"study '{cfg.study}' at {storage_url(cfg, out)} is another search ({'; '.join(differ)}): "
                         f"rerun it as it was started, or give a new --out / --study")


def check_search_config(cfg: SearchConfig, max_trials: int | None) -> None:
    """Settings that cannot describe a search are refused before anything is opened."""
    no_search = "zero trials is no search"
    for name, value, ok, why in (
            ("--rounds", cfg.rounds, cfg.rounds >= 1, no_search),
            ("--samples", cfg.samples, cfg.samples >= 1, no_search),
            ("--max-trials", max_trials, max_trials is None or max_trials >= 1, no_search),
            ("--heartbeat", cfg.heartbeat_s, cfg.heartbeat_s >= 1,
             "seconds between a worker's signs of life; its trial is failed after two missed")):
        if not ok:
            raise ValueError(f"{name} {value}: must be at least 1 ({why})")
    if cfg.seed < 0:
        raise ValueError(f"--seed {cfg.seed}: a seed is a non-negative integer")
    if not 0 < cfg.shrink <= 1:
        raise ValueError(f"--shrink {cfg.shrink}: must lie in (0, 1] (the factor each round narrows the ranges by)")


def preflight(base: dict, cfg: SearchConfig):
    """Fail before any trial if the setup cannot work: ranges for keys that are not numbers of the config, or a
    base config (at the middle of every range) that does not build."""
    from dataclasses import fields

    from hpe.config import TrainConfig, build_train_config
    floats = {f.name for f in fields(TrainConfig) if f.type in ("float", float)}
    for name, (lo, hi, log) in cfg.ranges.items():
        if name not in floats:
            raise ValueError(f"--range {name}: not a numeric hyperparameter of the config "
                             f"(choose from {', '.join(sorted(floats))})")
        if not lo < hi or (log and lo <= 0):
            raise ValueError(f"--range {name}:{lo}:{hi}: needs low < high (and low > 0 for a log range)")
    mid = {k: (lo * hi) ** 0.5 if log else (lo + hi) / 2 for k, (lo, hi, log) in cfg.ranges.items()}
    return build_train_config([("search base", {**base, **mid})])


# Said at the start, after every trial that learned nothing and in best.json, when the settings switch the
# not-learned rule off (the tiny preset does, for smoke tests): such a search's best may have learned nothing.
NOT_REQUIRED = ("require_learning = false in these settings (the tiny preset's, for smoke tests?): trials that do "
                "not beat the mean pose complete, and the best may have learned nothing")


DRY_RUN = ("a dry run (--dry-run): tiny trials on 64 frames check that the search runs; their numbers mean nothing "
           "(a new --out for the real search)")


def search(base: dict, out: Path, cfg: SearchConfig | None = None, max_trials: int | None = None,
           say=lambda line: print(line, file=sys.stderr, flush=True)) -> dict:
    """Run (or join, or resume) a study: this worker trains trials until every round is full.  ``say`` gets one
    line per finished trial."""
    from sqlalchemy.exc import SQLAlchemyError
    cfg = cfg or SearchConfig()
    check_search_config(cfg, max_trials)
    learning_required = preflight(base, cfg).require_learning
    warning = DRY_RUN if cfg.dry_run else None if learning_required else NOT_REQUIRED
    if warning:
        say(f"hpe search: warning: {warning}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = _open_study(cfg, out)
    _check_same_search(study, base, cfg, out)
    try:
        _work(study, base, out, cfg, max_trials, say)
    except SQLAlchemyError as exc:  # e.g. a read-only SQLite file that opened but cannot take a trial
        raise _storage_error(storage_url(cfg, out), exc) from None
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: trials.csv and best.json still say what finished so far
        report(study, out, warning)
        raise
    return report(study, out, warning)


def _work(study, base: dict, out: Path, cfg: SearchConfig, max_trials: int | None, say) -> None:
    from hpe.train import train
    ran = 0
    while max_trials is None or ran < max_trials:
        # Trials whose worker stopped beating are failed and re-queued once (RetryFailedTrialCallback).
        optuna.storages.fail_stale_trials(study)
        counts, best = _state(study)
        r = next((i for i in range(cfg.rounds) if counts.get(i, 0) < cfg.samples), None)
        if r is None:
            break
        trial = study.ask()  # takes a re-queued trial first, with its original params and round
        study.sampler = optuna.samplers.RandomSampler(seed=cfg.seed + trial.number)  # reproducible per trial
        frozen = study._storage.get_trial(trial._trial_id)
        r = frozen.user_attrs.get("round", r)
        trial.set_user_attr("round", r)
        ranges = round_ranges(cfg.ranges, best, r, cfg.shrink)
        params = {k: trial.suggest_float(k, lo, hi, log=log) for k, (lo, hi, log) in ranges.items()}
        # A re-queued trial continues the killed one's run folder from its last checkpoint.
        origin = frozen.system_attrs.get("failed_trial", trial.number)
        run_dir = out / f"trial-{origin:04d}"
        with _Heartbeat(study._storage, trial._trial_id, cfg.heartbeat_s):
            try:
                res = train({**base, **params, "out": str(run_dir), "progress": "none", "predict_test": False},
                            resume=True)
            except SETUP_ERRORS as exc:  # the setup is wrong, not the trial: stop and say so
                trial.set_user_attr("setup_error", str(exc))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM: failed and re-queued now, not two heartbeats later
                trial.set_user_attr("reason", "its worker was interrupted; re-queued")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                requeue = _retry(optuna.storages.RetryFailedTrialCallback, max_retry=None)
                requeue(study, study._storage.get_trial(trial._trial_id))
                raise
            except Exception as exc:  # a crashing trial is recorded with its reason; the search goes on
                res = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        trial.set_user_attr("status", res["status"])
        shown = ", ".join(f"{k} {v:.4g}" for k, v in params.items())
        if res["status"] not in ("done", "stopped") or res.get("best_val_mse") is None:  # never the best
            trial.set_user_attr("reason", res.get("reason", res["status"]))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            say(f"trial {trial.number} (round {r + 1}): failed, {res['status']}: {res.get('reason', '')} ({shown})")
        else:  # a re-queued copy carries the interrupted trial's reason: say what happened instead
            floor = res.get("mean_pose_val_mse")
            nothing = (f"learned nothing: not below the mean pose's {floor:.6g}"  # only with require_learning = false
                       if floor is not None and not res["best_val_mse"] < floor else "")
            continued = ("" if origin == trial.number else
                         f"continued trial {origin}'s run after its worker was interrupted")
            trial.set_user_attr("reason", "; ".join(filter(None, [continued, nothing])))
            study.tell(trial, res["best_val_mse"])
            say(f"trial {trial.number} (round {r + 1}): val_mse {res['best_val_mse']:.6g} ({shown})"
                + (f" -- {nothing}" if nothing else ""))
        ran += 1


def report(study, out: Path, warning: str | None = None) -> dict:
    """CSV of all trials, a plot of validation error against each hyperparameter per round, the best config."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    from hpe.plots import plt, save, write_csv
    trials = study.get_trials(deepcopy=False)
    # Rounds counted from 1, as the terminal lines and the plot's legend say ("trial 3 (round 2)"); trial numbers are
    # optuna's own, from 0, everywhere (they name trials in the study's storage).
    rows = [[t.number, t.user_attrs["round"] + 1 if "round" in t.user_attrs else "", t.state.name,
             "" if t.value is None else f"{t.value:.6g}",
             *(f"{t.params.get(k, float('nan')):.6g}" for k in THESIS_RANGES), t.user_attrs.get("reason", "")]
            for t in trials]
    write_csv(out / "trials.csv", ["trial", "round", "state", "val_mse", *THESIS_RANGES, "reason"], rows)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    result = {**({"dry_run": True} if warning == DRY_RUN else {}), "trials": len(trials), "complete": len(done),
              "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
              **({"warning": warning} if warning else {})}
    if done:
        best = min(done, key=lambda t: t.value)
        result.update(best_value=best.value, best_params=best.params, best_trial=best.number)
        fig, axes = plt.subplots(1, len(THESIS_RANGES), figsize=(6.3, 2.4), layout="constrained")  # text width
        for ax, k in zip(axes, THESIS_RANGES):
            for r in sorted({t.user_attrs.get("round", 0) for t in done}):
                pts = [(t.params[k], t.value) for t in done if t.user_attrs.get("round", 0) == r and k in t.params]
                if pts:
                    ax.scatter(*zip(*pts), s=14, label=f"round {r + 1}")
            if THESIS_RANGES[k][2]:
                # Readable ticks on a log axis: 1-2-5 per decade over a wide range (lr), round values over a
                # narrow one (momentum 0.8-1), where a log axis would show no labelled tick at all.
                ax.set_xscale("log")
                lo, hi = ax.get_xlim()
                ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)) if hi / lo > 10 else MaxNLocator(5))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.set_xlabel(k)
            ax.set_ylabel("validation MSE")
            if ax.get_legend_handles_labels()[0]:  # a hyperparameter not searched has no points (and no legend)
                ax.legend()
        save(fig, out / "search")
    write_json(out / "best.json", result)
    return result
