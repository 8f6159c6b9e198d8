"""``hpe scale``: the NYU-size dress rehearsal (``make rehearsal``, README "Scale", results/scale/nyu-size.json).

What the full pipeline costs on this machine at the size users run it: generation and prep frames/s (with the
PNG-decode bound, the same workers only decoding), HDF5 bytes per profile, the compact size and peak RSS of
loading the splits ``hpe train`` holds for each input kind, and full-size training steps on the CPU with a
checkpoint write.  Each memory figure comes from a fresh child process (its kernel high-water mark, VmHWM), so
one measurement's allocations never hide another's.  Every section is written as soon as it is measured; a
rerun keeps the sections it is not asked to measure.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from hpe import DataError
from hpe.atomic import atomic_h5, replace_marked, write_json
from hpe.dataset import SCHEMA, SPLITS, open_prepared
from hpe.nyu import TEST_FRAMES, TEST_SUBJECT1_FRAMES, TRAIN_FRAMES
from hpe.workers import worker_pool

GIB = 2 ** 30
# The input kinds whose loading is measured, by the experiment that trains each (README "Scale").
LOAD_EXPERIMENTS = {"depth": "experiments/fig4.7/depthnet.toml", "rgbd": "experiments/fig4.7/rgbdnet.toml",
                    "depth+rgb": "experiments/fig4.8/fusenet-conv.toml"}
# The nets whose full-size training step is measured: Depth-Net and Fuse-Net fused at fc1 (the largest).
STEP_NETS = {"Depth-Net": ("experiments/fig4.7/depthnet.toml", {}),
             "Fuse-Net fc1": ("experiments/fig4.8/fusenet-conv.toml", {"fusion_layer": "fc1"})}


CHECKOUT = Path(__file__).resolve().parents[1]  # the repository hpe runs from (its experiments/ folder)


def experiment_file(path: str | Path) -> Path:
    """An experiment or preset file: as given, or else inside the checkout hpe runs from (``experiments/...`` from
    any working folder); refused in one line when neither holds it."""
    for candidate in (Path(path), CHECKOUT / path):
        if candidate.is_file():
            return candidate
    raise DataError(f"{path}: no such experiment file here or in {CHECKOUT}: hpe scale measures the repository's "
                    f"experiments; run it from a checkout of hpe (`make rehearsal` does), or give --preset a file")


# --- machine and bookkeeping -----------------------------------------------------------------------------
def machine() -> dict:
    """What the figures were measured on, and how busy it was (the load average counts other users' jobs)."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in _lines("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    mem = next((int(ln.split()[1]) * 1024 for ln in _lines("/proc/meminfo") if ln.startswith("MemTotal")), None)
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _status(key: str) -> int | None:
    """A /proc/self/status field in bytes (VmRSS, VmHWM), or None off Linux."""
    for ln in _lines("/proc/self/status"):
        if ln.startswith(key + ":"):
            return int(ln.split()[1]) * 1024
    return None


def peak_rss() -> int:
    """This process's peak resident set so far (what ``/usr/bin/time -v`` calls maximum resident set size)."""
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (pool workers): contention-free work measure."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())


def _write_section(out: Path, section: str, value, run: str) -> dict:
    """Write one section into the results file (atomically), keeping the others; ``measured_by`` records which
    run (``run``: when and by which process) measured each section, so that a file mixing runs says so."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc[section] = value
    doc["measured_by"] = {**doc.get("measured_by", {}), section: run}
    doc["machine"] = machine()
    write_json(out, doc)
    return doc


def runs_of(doc: dict) -> dict[str, list[str]]:
    """The runs whose sections a results file holds: run -> its sections (a file written before runs were recorded
    counts as one run, 'unrecorded')."""
    sections = [k for k in doc if k not in ("machine", "measured_by")]
    by = doc.get("measured_by", {})
    runs: dict[str, list[str]] = {}
    for k in sections:
        runs.setdefault(str(by.get(k, "unrecorded")), []).append(k)
    return runs


# --- generation ----------------------------------------------------------------------------------------
def _timed_generate(module, root: Path, n_train: int, n_test: int, workers: int) -> dict:
    cpu, t = _cpu_seconds(), time.perf_counter()
    module.generate(root, n_train, n_test, seed=0, workers=workers)
    wall, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    n = n_train + n_test
    return {"frames": n, "seconds": round(wall, 2), "frames_per_s": round(n / wall, 1),
            "cpu_ms_per_frame": round(1000 * cpu / n, 1), "bytes_per_frame": round(tree_bytes(root) / n)}


def generation_side_by_side(baseline: Path, frames: int, workers: int, tmp: Path, rounds: int = 2) -> dict:
    """This generator against an earlier version's source file (``git show COMMIT:hpe/synthetic.py``), the same
    frames, alternating ``rounds`` times so both see the same load; and whether their pixels agree."""
    from hpe import synthetic
    spec = importlib.util.spec_from_file_location("hpe_synthetic_baseline", baseline)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # the pool pickles its functions by module name (forked workers find it here)
    spec.loader.exec_module(old)
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    n_test = max(1, frames // 10)
    for r in range(rounds):
        for name, module in (("baseline", old), ("current", synthetic)):
            runs[name].append(_timed_generate(module, tmp / f"{name}{r}", frames - n_test, n_test, workers))
    same = _same_pixels(tmp / "baseline0", tmp / "current0")
    best = {k: max(v, key=lambda x: x["frames_per_s"]) for k, v in runs.items()}
    return {"baseline_source": str(baseline), "workers": workers, "rounds": runs, "pixels_identical": same,
            "speedup_wall": round(best["current"]["frames_per_s"] / best["baseline"]["frames_per_s"], 2),
            "speedup_cpu": round(min(x["cpu_ms_per_frame"] for x in runs["baseline"])
                                 / min(x["cpu_ms_per_frame"] for x in runs["current"]), 2)}


def _same_pixels(a: Path, b: Path) -> bool:
    from hpe.nyu import read_rgb
    files = sorted((a / "train").glob("*.png")) + sorted((a / "test").glob("*.png"))
    return bool(files) and all(np.array_equal(read_rgb(f), read_rgb(b / f.parent.name / f.name)) for f in files)


def generation_from_sidecar(root: Path) -> dict:
    """The generation figures of a root ``hpe synth`` wrote (its sidecar times the whole run)."""
    from hpe.synthetic import SIDECAR
    side = json.loads((Path(root) / SIDECAR).read_text())
    n = side["train_frames"] + side["test_frames"]
    size = tree_bytes(root)
    return {"train_frames": side["train_frames"], "test_frames": side["test_frames"],
            "test_subject1_frames": side["test_subject1_frames"], "seconds": side["seconds"],
            "frames_per_s": round(n / side["seconds"], 1), "bytes": size, "bytes_per_frame": round(size / n)}


# --- prep and the decode bound -------------------------------------------------------------------------
def _decode(pair: tuple[str, str]) -> None:
    from hpe.nyu import read_depth, read_rgb
    read_depth(Path(pair[0]))
    read_rgb(Path(pair[1]))


def decode_bound(root: Path, workers: int, frames: int | None = None) -> dict:
    """Frames/s of only decoding the PNGs (depth + RGB) with ``workers`` processes: what prep cannot beat."""
    files = sorted((Path(root) / "train").glob("depth_1_*.png"))[:frames]
    pairs = [(str(f), str(f).replace("depth_1_", "rgb_1_")) for f in files]
    with worker_pool(workers) as pool:  # workers as prep's: the same memory behaviour, so the bound is fair
        cpu, t = _cpu_seconds(), time.perf_counter()
        for _ in pool.imap_unordered(_decode, pairs, chunksize=32):
            pass
        wall = time.perf_counter() - t
        pool.close()
        pool.join()
        cpu = _cpu_seconds() - cpu
    return {"frames": len(pairs), "workers": workers, "frames_per_s": round(len(pairs) / wall, 1),
            "cpu_ms_per_frame": round(1000 * cpu / len(pairs), 2)}


def measure_prep(root: Path, out: Path, profile: str, size: int, workers: int) -> dict:
    """``hpe prep`` of ``root`` in one profile at ``size``, timed, with the file's bytes."""
    from hpe.prep import prep, prep_config
    cpu = _cpu_seconds()
    stats = prep(root, out, prep_config(profile, size=size, workers=workers), progress=False)
    cpu = _cpu_seconds() - cpu
    return {"profile": profile, "size": size, "workers": workers, "frames": stats["frames"],
            "seconds": stats["seconds"], "frames_per_s": stats["frames_per_s"],
            "cpu_ms_per_frame": round(1000 * cpu / max(stats["frames"], 1), 2),
            "splits": {s: stats[f"{s}_frames"] for s in SPLITS}, "hdf5_bytes": Path(out).stat().st_size}


# --- NYU-size files from a smaller prepared one --------------------------------------------------------------
def nyu_split_sizes(attrs: dict) -> dict[str, int]:
    """NYU's frames per split under a file's validation settings (thesis 54,568 / 18,189 / 8,252)."""
    from hpe.prep import validation_mask
    val = int(validation_mask(TRAIN_FRAMES, str(attrs["val_method"]), float(attrs["val_fraction"]),
                              int(attrs["val_seed"])).sum())
    return {"train": TRAIN_FRAMES - val, "val": val, "test": TEST_FRAMES}


def tile_to_nyu(src: Path, dst: Path, block: int = 1024, sizes: dict[str, int] | None = None,
                subject1: int = TEST_SUBJECT1_FRAMES) -> dict[str, int]:
    """``src``'s frames repeated up to NYU's split sizes in prep's layout (datasets, dtypes, chunks, attributes);
    the test split keeps NYU's 2,440 frames of subject 1 before the 5,812 of subject 2.  For measuring memory and
    speed at NYU size when generating 81,009 frames is not possible; never for scores."""
    from hpe.prep import _create
    open_prepared(src)  # a file hpe prepared, checked (schema, splits, attributes), or one line saying what it lacks
    with h5py.File(src, "r") as a, atomic_h5(dst) as b:
        attrs = dict(a.attrs)
        sizes = sizes or nyu_split_sizes(attrs)
        b.attrs.update({**attrs, "test_subject1_frames": subject1, "source": f"tiled from {src}"})
        size, n_joints = int(attrs["size"]), a["train"]["joints"].shape[1]
        for split, n in sizes.items():
            g = b.create_group(split)
            _create(g, n, size, n_joints)
            rows = _tile_rows(a[split]["subject"][:], n, split, subject1)
            for name in SCHEMA:  # the source is small (that is why it is tiled): one dataset in memory at a time
                data = a[split][name][:]
                for lo in range(0, n, block):
                    g[name][lo:lo + block] = data[rows[lo:lo + block]]
    return sizes


def _tile_rows(subject: np.ndarray, n: int, split: str, subject1: int) -> np.ndarray:
    """Source rows for ``n`` tiled rows; the test split's first ``subject1`` rows are subject 1's frames."""
    if split != "test":
        return np.resize(np.arange(len(subject)), n)
    one, two = np.flatnonzero(subject == 1), np.flatnonzero(subject == 2)
    if len(one) == 0 or len(two) == 0:
        raise DataError("the source file's test split needs frames of both subjects to tile NYU's test set")
    return np.concatenate([np.resize(one, subject1), np.resize(two, n - subject1)])


# --- loading and training steps, each in a fresh child process ---------------------------------------------------
def _config(h5: str, experiment: str, preset: str, sets: dict):
    from hpe.config import build_train_config, user_layers
    layers = user_layers(experiment_file(experiment), experiment_file(preset))
    layers.append(("hpe scale", {"data": h5, "device": "cpu", "progress": "none", **sets}))
    return build_train_config(layers)


# The compact dtypes a loaded split must keep (what prep stores): its size is counted in them, whatever the loader
# returned, so a loader that widens a split shows as a larger peak, never as a larger "compact" size.
COMPACT_BYTES = {"depth": 2, "rgb": 1, "joints": 4}  # float16, uint8, float32


def _split_bytes(d) -> int:
    tensors = sum(getattr(d, k).numel() * n for k, n in COMPACT_BYTES.items() if getattr(d, k) is not None)
    return tensors + sum(v.nbytes for v in d.meta.values())


def _widened(d) -> list[str]:
    return [f"{k} {getattr(d, k).dtype}" for k, n in COMPACT_BYTES.items()
            if getattr(d, k) is not None and getattr(d, k).element_size() != n]


def child_load(h5: str, experiment: str, preset: str) -> dict:
    """Peak RSS of loading what ``hpe train`` holds (train + val, its very loading call), then of its model."""
    from hpe.train import build_model, load_training_splits
    cfg = _config(h5, experiment, preset, {})
    info = open_prepared(Path(h5))
    base = _status("VmRSS")
    t = time.perf_counter()
    train_d, val_d, _ = load_training_splits(cfg, info.attrs)
    load_s, peak_load = time.perf_counter() - t, peak_rss()
    model = build_model(cfg, train_d.joints.shape[1])
    compact = _split_bytes(train_d) + _split_bytes(val_d)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    widened = _widened(train_d) + _widened(val_d)
    return {"inputs": cfg.inputs, "profile": cfg.profile, "input_size": cfg.input_size,
            "frames": len(train_d) + len(val_d), "compact_bytes": compact, "rss_before_load": base,
            "load_peak_rss": peak_load, "load_seconds": round(load_s, 2), "model_bytes": model_bytes,
            "peak_rss_with_model": peak_rss(),
            "peak_over_compact": round(peak_load / compact, 3),
            "growth_over_compact": round((peak_load - base) / compact, 3) if base else None,
            "widened": widened, "within_bound": peak_load <= 1.3 * compact + model_bytes and not widened}


def child_steps(h5: str, experiment: str, preset: str, sets: dict, steps: int, work: str) -> dict:
    """``steps`` training steps at the profile's batch size through :func:`hpe.train.train_epoch` on the loaded
    splits, then one checkpoint write as the training loop makes it (best.pt + checkpoint.pt)."""
    import torch

    from hpe.dataset import InputAssembler
    from hpe.optim import LasagneMomentum
    from hpe.run import RunDir
    from hpe.train import Accel, build_model, load_training_splits, train_epoch
    cfg = _config(h5, experiment, preset, sets)
    info = open_prepared(Path(h5))
    torch.manual_seed(cfg.seed)
    train_d, val_d, _ = load_training_splits(cfg, info.attrs)
    peak_load = peak_rss()
    dev = torch.device("cpu")
    model = build_model(cfg, train_d.joints.shape[1])
    opt = LasagneMomentum(model.parameters(), cfg.lr, cfg.momentum, cfg.nesterov)
    assemble = InputAssembler(cfg.inputs, cfg.rgb_mode, cfg.rgb_mask, info.attrs["rgb_mean"], info.attrs["rgb_std"])
    accel = Accel(dev, cfg.precision, cfg.channels_last)
    targets = train_d.joints.view(len(train_d), -1)
    model.train()
    times, b = [], cfg.batch_size
    for k in range(steps):
        t = time.perf_counter()
        rows = torch.arange(k * b, (k + 1) * b) % len(train_d)  # more steps than a small file's frames: wrap round
        loss, _ = train_epoch(model, opt, accel, assemble, train_d, targets, rows, b, cfg.loss_scale)
        times.append(round(time.perf_counter() - t, 2))
        if not torch.isfinite(loss):
            raise DataError(f"step {k + 1} of {experiment} gave a non-finite loss")
    peak_steps = peak_rss()
    Path(work).mkdir(parents=True, exist_ok=True)
    run = RunDir(Path(work))
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the loop's copy of the best weights
    t = time.perf_counter()
    run.save(model, opt, dev, {"config": cfg.to_dict()}, best, {"epoch": 1, "config": cfg.to_dict()})
    save_s = time.perf_counter() - t
    warm = times[1:] or times
    return {"profile": cfg.profile, "inputs": cfg.inputs, "fusion_layer": cfg.fusion_layer if cfg.inputs == "depth+rgb"
            else None, "input_size": cfg.input_size, "batch_size": b, "width": cfg.width, "fc_units": cfg.fc_units,
            "parameters": sum(p.numel() for p in model.parameters()), "train_frames_loaded": len(train_d),
            "val_frames_loaded": len(val_d), "step_seconds": times,
            "step_seconds_warm_median": float(np.median(warm)), "load_peak_rss": peak_load,
            "peak_rss_after_steps": peak_steps, "checkpoint_bytes": run.ckpt.stat().st_size,
            "best_bytes": run.best.stat().st_size, "checkpoint_write_seconds": round(save_s, 2),
            "peak_rss": peak_rss(), "torch_threads": torch.get_num_threads()}


def _in_child(func: str, **kwargs) -> dict:
    """Run ``func(**kwargs)`` of this module in a fresh interpreter; its JSON answer, or one error line."""
    code = f"import json, sys; from hpe.scale import {func}; print(json.dumps({func}(**json.loads(sys.argv[1]))))"
    r = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DataError(f"hpe scale: {func} failed (exit {r.returncode}): {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- the commands -------------------------------------------------------------------------------------------
def measure(out: Path, root: Path | None = None, h5: dict[str, Path] | None = None, preset: Path | None = None,
            work: Path | None = None, baseline: Path | None = None, baseline_frames: int = 400,
            decode_frames: int | None = 6000, steps: int = 3, workers: int | None = None,
            only: list[str] | None = None, log=print) -> dict:
    """Measure what is asked (``only``: generation, side-by-side, prep, load, steps; default all that the
    arguments allow) and write each section into ``out`` as soon as it is known."""
    if workers is not None and workers < 1:
        raise DataError(f"--workers {workers}: at least 1 (default: all cores)")
    workers = workers or os.cpu_count() or 1
    want = set(only or ("generation", "side-by-side", "prep", "load", "steps"))
    h5 = {k: Path(v) for k, v in (h5 or {}).items()}
    unknown = sorted(set(h5) - {"thesis", "icip2018"})
    if unknown:
        raise DataError(f"--h5 {unknown[0]}=...: the profile must be thesis or icip2018")
    for name, value, least, why in (("--steps", steps, 2, " (the first training step is a warm-up, the rest timed)"),
                                    ("--decode-frames", 1 if decode_frames is None else decode_frames, 1, ""),
                                    ("--baseline-frames", baseline_frames, 1, "")):
        if value < least:
            raise DataError(f"{name} {value}: at least {least}{why}")
    if "prep" in want and root is not None and not h5 and not want - {"prep"}:
        raise DataError("--only prep needs --h5 PROFILE=PATH: the prepared file(s) to write and time")
    if not ((root is not None and "generation" in want) or (root is not None and h5 and "prep" in want)
            or (baseline is not None and "side-by-side" in want) or (h5 and want & {"load", "steps"})):
        raise DataError("nothing to measure: give --root (generation, prep), --baseline (side-by-side) or --h5 "
                        "PROFILE=PATH (load, steps) for the sections asked")
    if h5 and want & {"load", "steps"}:  # the experiment files the children read, before any work
        for experiment in [*LOAD_EXPERIMENTS.values(), *(e for e, _ in STEP_NETS.values()), preset]:
            experiment_file(experiment)
    with contextlib.ExitStack() as stack:
        if work is None:  # scratch (checkpoints: GBs at NYU size) removed at the end, kept only when --work says where
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hpe-scale-")))
        work = Path(work)
        work.mkdir(parents=True, exist_ok=True)
        return _measure(out, root, h5, preset, work, baseline, baseline_frames, decode_frames, steps, workers, want,
                        log)


def _measure(out, root, h5, preset, work, baseline, baseline_frames, decode_frames, steps, workers, want, log):
    doc: dict = {}
    if Path(out).is_file():  # sections measured earlier are kept; anything else there is not ours to overwrite
        try:
            doc = json.loads(Path(out).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if not isinstance(doc, dict):
            raise DataError(f"--out {out} exists and is not a results file of `hpe scale measure`: give another path")
        if doc:
            log(f"note: {out} holds sections of earlier runs ({', '.join(sorted(runs_of(doc)))}); those measured "
                f"now replace theirs, the others stay, and the table names the runs")
    run = f"{datetime.datetime.now().astimezone().isoformat(timespec='milliseconds')} pid {os.getpid()}"
    write = functools.partial(_write_section, out, run=run)
    if "generation" in want and root is not None:
        doc = write("generation", generation_from_sidecar(root))
        log(f"generation: {doc['generation']}")
    if "side-by-side" in want and baseline is not None:
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            doc = write("generation_side_by_side",
                          generation_side_by_side(Path(baseline), baseline_frames, workers, Path(tmp)))
        log(f"generation side by side: {doc['generation_side_by_side']}")
    if "prep" in want and root is not None:
        prep_doc = {"decode_bound": decode_bound(root, workers, decode_frames)}
        for profile, path in h5.items():
            prep_doc[profile] = measure_prep(root, path, profile, _preset_size(preset), workers)
            prep_doc[profile]["over_decode_bound"] = round(
                prep_doc[profile]["frames_per_s"] / prep_doc["decode_bound"]["frames_per_s"], 3)
            prep_doc[profile]["over_decode_bound_cpu"] = round(
                prep_doc["decode_bound"]["cpu_ms_per_frame"] / prep_doc[profile]["cpu_ms_per_frame"], 3)
            doc = write("prep", prep_doc)
            log(f"prep {profile}: {prep_doc[profile]}")
    for profile, path in h5.items():
        info = open_prepared(path)
        doc = write(f"hdf5_{profile}", {"bytes": path.stat().st_size, "splits": info.sizes,
                                               "size": info.size, "source": str(info.attrs["source"])})
    if "load" in want and "thesis" in h5:
        loads = {}
        for kind, experiment in LOAD_EXPERIMENTS.items():
            loads[kind] = _in_child("child_load", h5=str(h5["thesis"]), experiment=experiment, preset=str(preset))
            doc = write("load", loads)
            log(f"load {kind}: {loads[kind]}")
    if "steps" in want:
        results = dict(doc.get("steps", {}))
        for profile, path in h5.items():
            for net, (experiment, sets) in STEP_NETS.items():
                results[f"{profile} {net}"] = _in_child("child_steps", h5=str(path), experiment=experiment,
                                                        preset=str(preset), sets=sets, steps=steps,
                                                        work=str(work / f"{profile}-{net.replace(' ', '-')}"))
                doc = write("steps", results)
                log(f"steps {profile} {net}: {results[f'{profile} {net}']}")
    return doc


def _preset_size(preset: Path | None) -> int:
    from hpe.config import train_section
    if preset is None:
        return 128
    return int(train_section(Path(preset)).get("input_size", 128))


# --- the README table --------------------------------------------------------------------------------------
BEGIN, END = ".. scale-table-begin", ".. scale-table-end"


def table(doc: dict) -> str:
    """The README "Scale" table (reStructuredText) of a results file; absent sections are left out."""
    rows: list[tuple[str, str]] = []
    g = doc.get("generation")
    if g:
        rows.append(("synthetic frames (train / test)", f"{g['train_frames']:,} / {g['test_frames']:,}"))
        rows.append(("generation", f"{g['frames_per_s']} frames/s, {g['bytes'] / 1e9:.1f} GB of PNGs "
                                   f"({g['bytes_per_frame'] / 1e3:.0f} kB/frame)"))
    s = doc.get("generation_side_by_side")
    if s:
        best = {k: max(v, key=lambda x: x["frames_per_s"]) for k, v in s["rounds"].items()}
        rows.append(("generation, side by side", f"{best['current']['frames_per_s']} vs "
                     f"{best['baseline']['frames_per_s']} frames/s before ({best['current']['cpu_ms_per_frame']} vs "
                     f"{best['baseline']['cpu_ms_per_frame']} CPU ms/frame); pixels identical: "
                     f"{'yes' if s['pixels_identical'] else 'NO'}"))
    p = doc.get("prep")
    if p:
        d = p["decode_bound"]
        rows.append(("PNG-decode bound", f"{d['frames_per_s']} frames/s ({d['workers']} workers, "
                                         f"{d['cpu_ms_per_frame']} CPU ms/frame)"))
        for prof in ("thesis", "icip2018"):
            if prof in p:
                q = p[prof]
                rows.append((f"prep {prof}", f"{q['frames_per_s']} frames/s = {q['over_decode_bound']} of the bound "
                                             f"({q['over_decode_bound_cpu']} by CPU time), {q['frames']:,} frames, "
                                             f"{q['hdf5_bytes'] / 1e6:.0f} MB"))
    for prof in ("thesis", "icip2018"):
        h = doc.get(f"hdf5_{prof}")
        if h:
            sp = h["splits"]
            tiled = " tiled from the prepared frames" if str(h.get("source", "")).startswith("tiled") else ""
            rows.append((f"HDF5 {prof}", f"{h['bytes'] / GIB:.2f} GiB ({sp['train']:,} / {sp['val']:,} / "
                                          f"{sp['test']:,} frames at {h['size']}x{h['size']}{tiled})"))
    for kind, r in doc.get("load", {}).items():
        rows.append((f"load {kind} (train + val)", f"peak RSS {r['load_peak_rss'] / GIB:.2f} GiB for "
                     f"{r['compact_bytes'] / GIB:.2f} GiB compact ({r['peak_over_compact']}x; growth "
                     f"{r.get('growth_over_compact')}x), {r['load_seconds']} s"))
    for name, r in doc.get("steps", {}).items():
        rows.append((f"step {name} (batch {r['batch_size']})",
                     f"{r['step_seconds_warm_median']:.1f} s/step, peak RSS {r['peak_rss'] / GIB:.2f} GiB with "
                     f"train + val loaded, "
                     f"checkpoint {(r['checkpoint_bytes'] + r['best_bytes']) / GIB:.2f} GiB in "
                     f"{r['checkpoint_write_seconds']} s"))
    runs = runs_of(doc)
    if len(runs) > 1:  # `scale measure --out` of an existing file, by hand: the sections are not one run's
        rows.append(("measured by", f"{len(runs)} runs: " + "; ".join(f"{', '.join(v)} at {k}"
                                                                   for k, v in sorted(runs.items()))))
    m = doc.get("machine", {})
    if m:
        rows.append(("machine", f"{m['cores']} x {m['cpu']}, {m['memory_bytes'] / GIB:.0f} GiB, "
                                f"load average {m['load_average'][0]} (shared)"))
    w = max([len(a) for a, _ in rows] + [8])
    v = max([len(b) for _, b in rows] + [8])
    line = "=" * w + "  " + "=" * v
    body = [f"{a:<{w}}  {b}" for a, b in rows]
    return "\n".join([line, f"{'what':<{w}}  measured", line, *body, line])


def results_table(results: Path) -> str:
    """The table of a results file of ``hpe scale measure``, refused in one line if it is not one."""
    try:
        doc = json.loads(Path(results).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{results} is not valid JSON ({exc}): not a results file of `hpe scale measure`") from None
    sections = ("generation", "generation_side_by_side", "prep", "load", "steps", "hdf5_thesis", "hdf5_icip2018")
    if not isinstance(doc, dict) or not any(k in doc for k in sections):  # another command's JSON (a result.json)
        raise DataError(f"{results} holds no measured section: not a results file of `hpe scale measure`")
    try:
        return table(doc)
    except (KeyError, TypeError, IndexError) as exc:
        raise DataError(f"{results} lacks {exc} in a section: written by another hpe version? measure it again") from None


def update_readme(results: Path, readme: Path) -> str:
    """Replace the table between README's scale-table markers with the one ``results`` gives."""
    body = results_table(results)
    replace_marked(Path(readme), BEGIN, END, body)
    return body
