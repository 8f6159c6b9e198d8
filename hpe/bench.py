"""``hpe bench``: one JSON object that says how fast Depth-Net trains and predicts on this device.

For each profile (thesis, icip2018), in the same run, the fp32 eager reference and the fast path (bf16
autocast, channels_last, TF32, cuDNN autotuning, and torch.compile on CUDA):

* ``train_images_per_s``: :func:`hpe.train.train_epoch`, the very loop ``hpe train`` runs (shuffle, index
  the device-resident split, assemble inputs, step, accumulate the loss), over an in-memory synthetic split;
* ``bare_step_images_per_s``: forward + backward + update on one batch already in memory, and
  ``loop_over_bare``, the share of that the training loop delivers;
* ``train_tflops``: images/s x 3 x 2 x the net's forward multiply-accumulates (``hpe.nets.forward_macs``);
* inference latency at batch 1 and throughput at batch 128, and the same through ONNX Runtime on the CPU when
  it is installed (``pip install 'hpe[export]'``).

``run`` trains the fast thesis Depth-Net through :func:`hpe.train.train` itself for a few epochs on a prepared
HDF5 file (the prep benchmark's frames, tiled), so validation, logging and checkpointing are counted, and
projects a 100-epoch NYU run from it.  ``prep`` times data preparation against the PNG-decode bound.

Timings on a GPU come after warm-up (which includes compilation) with explicit synchronisation.  On a CPU the
nets are measured at reduced size (64x64, width 0.25) so that the whole benchmark takes well under 3 minutes.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import tempfile
import time
import typing
from pathlib import Path

import h5py
import numpy as np
import torch

from hpe.atomic import replace_marked, torch_save, write_text
from hpe.config import CompileMode, TrainConfig, profile_section
from hpe.dataset import InputAssembler, SplitData
from hpe.nets import NetConfig, PoseNet, forward_macs
from hpe.nyu import TRAIN_FRAMES
from hpe.optim import LasagneMomentum
from hpe.train import Accel, pick_device, pose_loss, set_backend_switches, train, train_epoch

COMPILE_MODES = typing.get_args(CompileMode)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev: torch.device, repeats: int, warmup: int) -> float:
    """Seconds per call: ``warmup`` untimed calls, then the median of ``repeats`` synchronised timings."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _depthnet(profile: str, size: int, width: float) -> NetConfig:
    """Depth-Net (Net6) as benchmarked: the profile's pooling, conv and fc widths scaled together."""
    return NetConfig(name="net6", in_channels=1, input_size=size, num_joints=14, width=width,
                     fc_units=_fc_units(width), pool=profile_section(profile, "train")["pool"], dropout=0.03)


def _fc_units(width: float) -> int:
    return max(64, int(4096 * width))


def _warm_median(values: list[float]) -> float:
    return statistics.median(values[1:] or values)  # the first epoch compiles / autotunes


def _measure(profile: str, dev: torch.device, size: int, width: float, batch: int, steps: int, fast: bool,
             compile_mode: str = "default", profile_steps: int = 0, repeats: int = 3, onnx: bool = True) -> dict:
    """One mode: the reference (fp32, eager, contiguous) or the fast path; each timing the median of ``repeats``
    (the inference latency of ``repeats`` x 16 calls)."""
    prof = profile_section(profile, "train")
    torch.manual_seed(0)
    set_backend_switches(tf32=fast, cudnn_benchmark=fast)
    accel = Accel(dev, "bf16" if fast else "fp32", channels_last=fast)
    cfg = _depthnet(profile, size, width)
    model = PoseNet(cfg).to(dev)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    compiled = fast and dev.type == "cuda"
    if compiled:  # each measurement compiles its own graphs: stay clear of dynamo's per-function cache limit
        torch._dynamo.reset()
    net = torch.compile(model, mode=compile_mode, dynamic=False) if compiled else model
    opt = LasagneMomentum(model.parameters(), 0.009, 0.98, prof["nesterov"])
    n = batch * steps  # one epoch = `steps` full batches
    split = SplitData((torch.rand(n, 1, size, size, device=dev) * 2 - 1).half(), None,
                      torch.rand(n, 14, 3, device=dev) * 2 - 1)
    targets = split.joints.view(n, -1)
    assemble = InputAssembler("depth")
    x32, y32 = split.depth[:batch].float(), targets[:batch]

    def bare():  # forward + backward + update on one batch already in memory, `steps` times
        for _ in range(steps):
            loss = pose_loss(accel.forward(net, (x32,)), y32, prof["loss_scale"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    gen = torch.Generator().manual_seed(0)

    def loop():  # exactly what train() runs per epoch
        perm = torch.randperm(n, generator=gen).to(dev)
        train_epoch(net, opt, accel, assemble, split, targets, perm, batch, prof["loss_scale"])

    model.train()
    warm = 2 if compiled else 1  # compilation happens in the warm-up
    # Bare, loop, bare again: the better bare timing, so warm-up order cannot flatter the loop.
    t_bare = _timed(bare, dev, repeats, warm)
    t_loop = _timed(loop, dev, repeats, 1)
    t_bare = min(t_bare, _timed(bare, dev, repeats, 0))
    train_ips = n / t_loop
    out = {"train_images_per_s": round(train_ips, 1), "bare_step_images_per_s": round(n / t_bare, 1),
           "loop_over_bare": round(t_bare / t_loop, 3),
           "train_tflops": round(train_ips * 6 * forward_macs(cfg) / 1e12, 2)}
    if profile_steps:
        out["profile_top_ops"] = _profile(lambda: (loop(), _sync(dev)), dev, steps)
    model.eval()
    with torch.no_grad():
        one = x32[:1].clone()
        t1 = _timed(lambda: accel.forward(net, (one,)), dev, 16 * repeats + 2, 5 if compiled else 2)
        big = torch.rand(128, 1, size, size, device=dev)
        t128 = _timed(lambda: accel.forward(net, (big,)), dev, 3 * repeats + 1, 3 if compiled else 1)
    out.update({"infer_latency_ms_batch1": round(1000 * t1, 3), "infer_images_per_s_batch128": round(128 / t128, 1)})
    if onnx and not fast:
        out.update(_onnx_inference(model, size))
    return out


def _onnx_inference(model: torch.nn.Module, size: int) -> dict:
    """Batch-1 latency and batch-128 throughput of the same net exported to ONNX, through ONNX Runtime on the CPU
    (what ``hpe export`` produces); empty when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return {}
    from hpe.export import export_onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        export_onnx(model.float().to(memory_format=torch.contiguous_format).cpu().eval(), [(1, size, size)], path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        one = np.random.rand(1, 1, size, size).astype(np.float32) * 2 - 1
        big = np.random.rand(128, 1, size, size).astype(np.float32) * 2 - 1
        cpu = torch.device("cpu")
        t1 = _timed(lambda: sess.run(None, {name: one}), cpu, 50, 2)
        t128 = _timed(lambda: sess.run(None, {name: big}), cpu, 5, 1)
    return {"onnxruntime_cpu_latency_ms_batch1": round(1000 * t1, 3),
            "onnxruntime_cpu_images_per_s_batch128": round(128 / t128, 1)}


def _profile(fn, dev: torch.device, steps: int, top: int = 12) -> list[dict]:
    """Where one epoch's time goes: the operators with the most self time (device time on a GPU), per step."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as p:
        fn()
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    events = sorted(p.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1.0
    return [{"op": e.key[:80], "ms_per_step": round(getattr(e, key) / 1000 / steps, 4),
             "share": round(getattr(e, key) / total, 4), "calls_per_step": round(e.count / steps, 2)}
            for e in events[:top]]


def bench_net(profile: str, dev: torch.device, size: int, width: float, batch: int, steps: int,
              compile_mode: str = "default", profile_steps: int = 0, repeats: int = 3, onnx: bool = True) -> dict:
    ref = _measure(profile, dev, size, width, batch, steps, fast=False, repeats=repeats, onnx=onnx)
    fast = _measure(profile, dev, size, width, batch, steps, fast=True, compile_mode=compile_mode,
                    profile_steps=profile_steps, repeats=repeats)
    return {"reference": ref, "fast": fast,
            "fast_over_reference": {"train": round(fast["train_images_per_s"] / ref["train_images_per_s"], 3),
                                    "infer_batch128": round(fast["infer_images_per_s_batch128"]
                                                            / ref["infer_images_per_s_batch128"], 3),
                                    "latency_batch1": round(ref["infer_latency_ms_batch1"]
                                                            / fast["infer_latency_ms_batch1"], 3)},
            "input_size": size, "width": width, "batch_size": batch,
            "forward_gmacs_per_image": round(forward_macs(_depthnet(profile, size, width)) / 1e9, 4)}


def _tile_h5(src: Path, dst: Path, n_train: int) -> None:
    """A prepared file with ``n_train`` training frames (``src``'s repeated) and a third as many for
    validation, the NYU ratio at val_fraction 0.25."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        b.attrs.update(dict(a.attrs))
        for split, n in (("train", n_train), ("val", max(1, n_train // 3)), ("test", a["test"]["depth"].shape[0])):
            g = b.create_group(split)
            for name, ds in a["train" if split == "val" else split].items():
                data = ds[:]
                g.create_dataset(name, data=np.concatenate([data] * -(-n // len(data)))[:n])


def _checkpoint_seconds(net: NetConfig, dev: torch.device, folder: Path) -> float:
    """One checkpoint write as train() does it: weights + momentum of the same net, from the device."""
    model = PoseNet(net).to(dev)
    velocity = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    _sync(dev)
    t = time.perf_counter()
    torch_save({"model": model.state_dict(), "optimizer": velocity}, folder / "checkpoint.pt")
    return time.perf_counter() - t


def _timed_train(cfg: TrainConfig) -> tuple[float, list[float], list[float]]:
    """train() once: its seconds, and each epoch's training-loop and validation seconds from its log."""
    torch._dynamo.reset()
    result = train(cfg)
    with open(Path(cfg.out) / "log.csv") as f:
        rows = list(csv.DictReader(f))
    return result["seconds"], [float(r["seconds"]) for r in rows], [float(r["val_seconds"]) for r in rows]


def bench_run(h5: Path, dev: torch.device, size: int, width: float, epochs: int, compile_mode: str) -> dict:
    """The fast thesis Depth-Net through train() for a few epochs, and the 100-epoch NYU run it projects.

    train() runs twice, for one epoch and for ``epochs``: what the longer run spends beyond its training loops and
    validations, less the shorter run's, is the bookkeeping of the extra epochs (best-weights copy, log); the rest of
    the one-epoch run is paid once (loading the split, building the net, the final checkpoint and best writes).
    The projection scales the warm training loop to NYU's 54,568 training frames and validation to its 18,189
    validation frames, adds that per-epoch bookkeeping, one checkpoint per ``checkpoint_interval_s``, the first
    epoch's compilation and the one-off costs (at this file's size: loading NYU's splits takes longer).
    """
    with tempfile.TemporaryDirectory() as tmp:
        def cfg(n: int, name: str) -> TrainConfig:
            return TrainConfig(data=str(h5), out=str(Path(tmp) / name), width=width, fc_units=_fc_units(width),
                               input_size=size, max_epochs=n, patience=n + 1, device=str(dev), progress="none",
                               predict_test=False, require_learning=False, precision="bf16", channels_last=True,
                               tf32=True, cudnn_benchmark=True, compile=dev.type == "cuda", compile_mode=compile_mode)
        short_s, short_loop, short_val = _timed_train(cfg(1, "one"))
        long_cfg = cfg(epochs, "run")
        total_s, loop_s, val_s = _timed_train(long_cfg)
        save_s = _checkpoint_seconds(_depthnet("thesis", size, width), dev, Path(tmp))
    with h5py.File(h5, "r") as f:
        n_train, n_val = f["train/depth"].shape[0], f["val/depth"].shape[0]
    loop_ips = n_train / _warm_median(loop_s)
    val_ips = n_val / _warm_median(val_s)
    compile_s = max(0.0, short_loop[0] - n_train / loop_ips)  # what a first epoch takes beyond a warm one
    rest_short = short_s - sum(short_loop) - sum(short_val)
    rest_long = total_s - sum(loop_s) - sum(val_s)
    other = max(0.0, rest_long - rest_short) / (epochs - 1)
    one_off = max(0.0, rest_short - other)
    nyu_train = TRAIN_FRAMES - TRAIN_FRAMES // 4
    epoch = nyu_train / loop_ips + (TRAIN_FRAMES - nyu_train) / val_ips + other
    saves = 100 * epoch / long_cfg.checkpoint_interval_s  # the final writes are in the one-off costs
    total = 100 * epoch + saves * save_s + compile_s + one_off
    return {"epochs": epochs, "train_frames": n_train, "val_frames": n_val, "input_size": size, "width": width,
            "loop_images_per_s": round(loop_ips, 1), "val_images_per_s": round(val_ips, 1),
            "other_s_per_epoch": round(other, 3), "one_off_s": round(one_off, 2), "checkpoint_s": round(save_s, 3),
            "first_epoch_extra_s": round(compile_s, 2),
            "projected_nyu_epoch_s": round(epoch, 2),
            "bookkeeping_share": round(1 - 100 * nyu_train / loop_ips / total, 3),
            "projected_nyu_100_epochs_min": round(total / 60, 2)}


def bench_prep(tmp: Path, frames: int = 600) -> tuple[dict, Path]:
    from hpe.nyu import read_depth, read_rgb
    from hpe.prep import prep, prep_config
    from hpe.synthetic import generate
    root = tmp / "nyu"
    generate(root, frames, 8, seed=0)
    files = sorted((root / "train").glob("depth_1_*.png"))
    t = time.perf_counter()
    for f in files:
        read_depth(f)
        read_rgb(Path(str(f).replace("depth_1_", "rgb_1_")))
    decode = len(files) / (time.perf_counter() - t)
    h5 = tmp / "bench.h5"
    stats = prep(root, h5, prep_config(), progress=False)
    cores = os.cpu_count() or 1
    return {"prep_frames_per_s": stats["frames_per_s"], "decode_frames_per_s_one_core": round(decode, 1),
            "decode_bound_frames_per_s": round(decode * cores, 1),
            "prep_over_decode_bound": round(stats["frames_per_s"] / (decode * cores), 3)}, h5


def bench_evaluate() -> dict:
    """Seconds ``hpe evaluate`` spends checking a prediction file of NYU's 8,252 test frames (impossible rows,
    formats, joint orders, swapped joints, shifted or shuffled rows; issue target < 1 s) and reading it."""
    from hpe.baselines import bundled
    from hpe.evaluate import load_ground_truth, load_method
    from hpe.nyu import read_joints_txt
    gt = load_ground_truth()
    path = bundled("ICCV15_NYU_Feedback.txt")
    load_method("warm-up", path, gt)
    t = time.perf_counter()
    read_joints_txt(path)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    load_method("Feedback", path, gt)
    total = time.perf_counter() - t
    return {"frames": len(gt.uvd), "read_s": round(read_s, 3), "checks_s": round(total - read_s, 3)}


class BenchSize(typing.NamedTuple):
    input_size: int
    width: float
    steps: int         # timed training steps per measurement
    run_batches: int   # training batches of the train() run
    epochs: int        # its epochs
    prep_frames: int
    batch: int = 0     # 0: the profile's batch size
    repeats: int = 3   # timings per median
    onnx: bool = True  # onnxruntime inference of the reference net


# On a CPU the full-size nets would take seconds per step: ``quick`` measures the same topology at reduced size;
# ``tiny`` only runs the parts (make gpu-check's test): batch 8, medians of two timings, no ONNX export (its 8 s are
# test_nets.py's, which checks the onnxruntime figures).
SIZES = {"full": BenchSize(128, 1.0, 30, 64, 4, 600), "quick": BenchSize(64, 0.25, 4, 4, 3, 600),
         "tiny": BenchSize(32, 0.125, 2, 1, 2, 48, batch=8, repeats=2, onnx=False)}


def run(device: str = "auto", scale: str | None = None, compile_mode: str = "default",
        profile_ops: bool = False, keep: Path | None = None) -> dict:
    """The whole benchmark at ``scale`` (a key of SIZES; default quick on a CPU, full on a GPU).  With ``keep``,
    the object so far is written there after each part (with ``"complete": false`` until the end), so a run cut
    short by a time limit still leaves its numbers."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got '{compile_mode}'")
    dev = pick_device(device)
    scale = scale or ("quick" if dev.type == "cpu" else "full")
    if scale not in SIZES:
        raise ValueError(f"benchmark size must be one of {', '.join(SIZES)}, got '{scale}'")
    size, width, steps, run_batches, epochs, prep_frames, fixed_batch, repeats, onnx = SIZES[scale]
    out = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "compile_mode": compile_mode}
    t0 = time.perf_counter()

    def save(complete: bool = False) -> None:
        out.update(complete=complete, bench_seconds=round(time.perf_counter() - t0, 1))
        if keep is not None:
            write_text(Path(keep), json.dumps(out) + "\n")

    for profile in ("thesis", "icip2018"):
        batch = fixed_batch or profile_section(profile, "train")["batch_size"]
        out[f"depthnet_{profile}"] = bench_net(profile, dev, size, width, batch, steps, compile_mode,
                                               profile_ops and profile == "thesis", repeats, onnx)
        save()
    out["evaluate"] = bench_evaluate()
    save()
    with tempfile.TemporaryDirectory() as tmp:
        out["prep"], h5 = bench_prep(Path(tmp), prep_frames)
        save()
        tiled = Path(tmp) / "tiled.h5"
        _tile_h5(h5, tiled, profile_section("thesis", "train")["batch_size"] * run_batches)
        out["run_thesis_fast"] = bench_run(tiled, dev, size, width, epochs, compile_mode)
    set_backend_switches(tf32=False, cudnn_benchmark=False)
    save(complete=True)
    return out


# Issue targets for the fast thesis Depth-Net on one H100/H200: (bound, "<=" or ">=").
TARGETS = {"train_images_per_s": (20000, ">="), "infer_latency_ms_batch1": (1.0, "<="), "loop_over_bare": (0.9, ">=")}


def _meets(value: float, key: str) -> bool:
    bound, op = TARGETS[key]
    return value <= bound if op == "<=" else value >= bound


def _warm_images_per_s(log: Path) -> float:
    with open(log) as f:
        return _warm_median([float(r["images_per_s"]) for r in csv.DictReader(f)])


def _read_bench(folder: Path) -> tuple[Path, dict]:
    """A folder's bench.json as a dict, or one line saying why it is not a benchmark's."""
    path = folder / "bench.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: run `hpe bench --json {path}` first")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a benchmark's JSON object: run the benchmark again")
    return path, doc


def report(folder: Path) -> str:
    """The speed check's summary (``make gpu-check``): the benchmark against the targets, then the reference and
    fast training runs side by side."""
    path, doc = _read_bench(Path(folder))
    try:
        return _report(Path(folder), doc)
    except KeyError as exc:
        raise ValueError(f"{path} (or a run beside it) lacks {exc}: written by another hpe version? "
                         f"run the benchmark again") from None


def _report(folder: Path, b: dict) -> str:
    lines = [f"device {b['device']}, torch {b['torch']}, compile mode {b['compile_mode']}"]
    if not b.get("complete", True):
        lines.append(f"(incomplete benchmark: it stopped after {b.get('bench_seconds')} s)")
    for prof in ("thesis", "icip2018"):
        r = b.get(f"depthnet_{prof}")
        if r is None:
            continue
        for mode in ("reference", "fast"):
            m = r[mode]
            lines.append(f"Depth-Net {prof:8s} {mode:9s}: train {m['train_images_per_s']:>9.0f} img/s "
                         f"({m['train_tflops']:.1f} TFLOP/s), loop/bare {m['loop_over_bare']:.2f}, "
                         f"batch-1 {m['infer_latency_ms_batch1']:.3f} ms, "
                         f"batch-128 {m['infer_images_per_s_batch128']:.0f} img/s")
        ort = r["reference"]
        if "onnxruntime_cpu_latency_ms_batch1" in ort:
            lines.append(f"Depth-Net {prof:8s} ONNX Runtime (CPU): "
                         f"batch-1 {ort['onnxruntime_cpu_latency_ms_batch1']:.3f} ms, "
                         f"batch-128 {ort['onnxruntime_cpu_images_per_s_batch128']:.0f} img/s")
        lines.append(f"Depth-Net {prof:8s} fast/reference: train {r['fast_over_reference']['train']:.2f}x "
                     f"(input {r['input_size']}, width {r['width']}, batch {r['batch_size']})")
    if "depthnet_thesis" in b:
        fast = b["depthnet_thesis"]["fast"]
        if b["depthnet_thesis"]["width"] != 1.0 or b["depthnet_thesis"]["input_size"] != 128:
            lines.append("(reduced nets: the speed targets below are for the full-size Depth-Net on one H100/H200)")
        for key, (bound, op) in TARGETS.items():
            lines.append(f"target {key} {op} {bound}: {fast[key]} {'met' if _meets(fast[key], key) else 'MISSED'}")
        if "profile_top_ops" in fast:
            lines.append("fast thesis loop, most expensive operators: " + "; ".join(
                f"{o['op']} {100 * o['share']:.1f}%" for o in fast["profile_top_ops"][:6]))
    if "run_thesis_fast" in b:
        run = b["run_thesis_fast"]
        lines.append(f"train() fast thesis: {run['loop_images_per_s']:.0f} img/s in the loop, validation "
                     f"{run['val_images_per_s']:.0f} img/s, a checkpoint {run['checkpoint_s']:.2f} s, compilation "
                     f"{run['first_epoch_extra_s']:.1f} s: 100 NYU epochs ~ {run['projected_nyu_100_epochs_min']} min "
                     f"({100 * run['bookkeeping_share']:.1f}% outside the training loop)")
    if "prep" in b:
        lines.append(f"prep {b['prep']['prep_frames_per_s']} frames/s "
                     f"({b['prep']['prep_over_decode_bound']} of the decode bound)")
    runs = {m: folder / f"{m}-result.json" for m in ("reference", "fast")}
    if all(p.is_file() for p in runs.values()):
        res = {m: json.loads(p.read_text()) for m, p in runs.items()}
        for m, r in res.items():
            lines.append(f"training {m:9s}: test {r['test_mean_mm']:.2f} mm (mean pose {r['mean_pose_mm']:.2f}), "
                         f"{r['epochs']} epochs in {r['seconds']:.0f} s, "
                         f"{_warm_images_per_s(folder / f'{m}-log.csv'):.0f} "
                         f"img/s after the first epoch, on {r['device']}")
        ref, fst = res["reference"]["test_mean_mm"], res["fast"]["test_mean_mm"]
        lines.append(f"fast vs reference test error: {100 * (fst - ref) / ref:+.1f}%")
    return "\n".join(lines)


# --- the README "Speed" table --------------------------------------------------------------------------------
SPEED_BEGIN, SPEED_END = ".. speed-table-begin", ".. speed-table-end"
_COLUMNS = [(prof, mode) for prof in ("thesis", "icip2018") for mode in ("reference", "fast")]


def _result(folder: Path, mode: str) -> dict | None:
    path = folder / f"{mode}-result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def speed_table(folders: list[Path]) -> str:
    """README's "Speed" table (reStructuredText) from benchmark folders (``make gpu-check``'s CHECK_OUT, or a
    folder holding a ``bench.json``): a block of rows per folder for Depth-Net in both profiles, reference and
    fast, then per folder the projected NYU run, the targets and the training runs' test error."""
    docs = []
    for folder in map(Path, folders):
        path, b = _read_bench(folder)
        if not b.get("complete") or any(f"depthnet_{p}" not in b for p in ("thesis", "icip2018")):
            raise ValueError(f"{path} is an incomplete benchmark: run it again before tabulating it")
        docs.append((folder, b))
    try:
        return _speed_table(docs)
    except KeyError as exc:
        raise ValueError(f"a benchmark folder among {', '.join(map(str, folders))} lacks {exc}: written by another "
                         f"hpe version? run the benchmark again") from None


def _speed_table(docs: list[tuple[Path, dict]]) -> str:
    cells = {"training images/s (TFLOP/s)": lambda m: f"{m['train_images_per_s']:,.0f} ({m['train_tflops']:.1f})",
             "loop / bare step": lambda m: f"{m['loop_over_bare']:.2f}",
             "batch-1 latency, ms": lambda m: f"{m['infer_latency_ms_batch1']:.3f}",
             "batch-128 inference, images/s": lambda m: f"{m['infer_images_per_s_batch128']:,.0f}"}
    header = ["Depth-Net 128x128", *(f"{p} {'fp32' if m == 'reference' else 'fast'}" for p, m in _COLUMNS)]
    rows = []
    for folder, b in docs:
        for what, cell in cells.items():
            rows.append([f"{folder.name}: {what}", *(cell(b[f"depthnet_{p}"][m]) for p, m in _COLUMNS)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("=" * w for w in widths)
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [line, fmt(header), line, *map(fmt, rows), line, ""]
    devices = sorted({f"{b['device']}, torch {b['torch']}" for _, b in docs})
    out.append(f"Measured on {'; '.join(devices)}; batch {docs[0][1]['depthnet_thesis']['batch_size']} (thesis) "
               f"and {docs[0][1]['depthnet_icip2018']['batch_size']} (icip2018); fast = bf16 autocast, channels_last, "
               f"TF32, cuDNN autotuning and torch.compile in the folder's compile mode.")
    out.append("")
    for folder, b in docs:
        fast, run = b["depthnet_thesis"]["fast"], b["run_thesis_fast"]
        targets = ", ".join(f"{k} {fast[k]} ({'met' if _meets(fast[k], k) else 'missed'})" for k in TARGETS)
        text = (f"- ``{folder.name}`` (compile mode {b['compile_mode']}): ``train()`` of the fast thesis Depth-Net "
                f"{run['loop_images_per_s']:,.0f} images/s in the loop, validation {run['val_images_per_s']:,.0f} "
                f"images/s, a checkpoint {run['checkpoint_s']:.1f} s: 100 NYU epochs ~ "
                f"{run['projected_nyu_100_epochs_min']} min ({100 * run['bookkeeping_share']:.0f} % outside the "
                f"training loop). Targets: {targets}.")
        res = {m: r for m in ("reference", "fast") if (r := _result(folder, m))}
        if res:
            runs = "; ".join(f"{'fp32' if m == 'reference' else 'fast'} {r['test_mean_mm']:.2f} mm in "
                             f"{r['seconds']:.0f} s ({_warm_images_per_s(folder / f'{m}-log.csv'):,.0f} images/s "
                             f"after the first epoch)" for m, r in res.items())
            any_r = next(iter(res.values()))
            text += (f" Figure 4.7's Depth-Net, {any_r['epochs']} epochs on the same synthetic data (fingerprint "
                     f"{any_r['data_fingerprint']}), mean error on its test frames: {runs}")
            if len(res) == 2:
                ref, fst = res["reference"]["test_mean_mm"], res["fast"]["test_mean_mm"]
                text += f"; fast vs fp32 {100 * (fst - ref) / ref:+.1f} %"
            text += "."
        out.append(text)
    return "\n".join(out)


def update_readme(folders: list[Path], readme: Path) -> str:
    """Replace the table between README's speed-table markers with :func:`speed_table` of ``folders``."""
    body = speed_table(folders)
    replace_marked(Path(readme), SPEED_BEGIN, SPEED_END, body)
    return body


def main(device: str = "auto", scale: str | None = None, compile_mode: str = "default",
         profile_ops: bool = False, out: Path | None = None) -> None:
    print(json.dumps(run(device, scale, compile_mode, profile_ops, keep=out)))
