"""``hpe bench``: one JSON object with training images/s, the training loop's share of a bare
forward+backward+update loop, inference latency (batch 1) and throughput (batch 128) for Depth-Net in both
profiles, plus data-prep frames/s against the PNG-decode bound.  Synthetic tensors; GPU timings are taken
after warm-up with explicit synchronisation.

Each profile is measured twice in the same run: the fp32 eager reference and the fast path; the ratio is
reported.  On a CPU the nets are measured at reduced size (64x64, width 0.25) to finish in minutes.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from hpe.data import InputAssembler
from hpe.nets import NetConfig, PoseNet
from hpe.optim import LasagneMomentum
from hpe.profiles import get_profile
from hpe.train import Accel, pose_loss


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(dev)
    return (time.perf_counter() - t) / iters


def _measure(profile: str, dev: torch.device, size: int, width: float, batch: int, iters: int, fast: bool) -> dict:
    """One mode: the reference (fp32, eager, contiguous) or the fast path (bf16 autocast, channels_last, TF32,
    cuDNN autotuning, and torch.compile on CUDA)."""
    prof = get_profile(profile)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = fast
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = fast
    accel = Accel(dev, "bf16" if fast else "fp32", channels_last=fast)
    model = PoseNet(NetConfig("net6", 1, size, 14, width, max(64, int(4096 * width)), prof.pool, 0.03)).to(dev)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if fast and dev.type == "cuda" else model
    opt = LasagneMomentum(model.parameters(), 0.009, 0.98, prof.nesterov)
    n = batch * 8
    depth16 = (torch.rand(n, 1, size, size, device=dev) * 2 - 1).half()
    target = torch.rand(n, 42, device=dev) * 2 - 1
    x32, y32 = depth16[:batch].float(), target[:batch]
    assemble = InputAssembler("depth", prof)

    def bare():  # forward + backward + update on tensors already in memory
        loss = pose_loss(accel.forward(net, (x32,)), y32, prof.loss_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    state = {"perm": torch.randperm(n, device=dev), "s": 0, "acc": torch.zeros((), device=dev)}

    def loop():  # what train() does per batch: index a shuffled permutation, assemble, step, accumulate
        s = state["s"]
        if s + batch > n:
            state["perm"], s = torch.randperm(n, device=dev), 0
        idx = state["perm"][s:s + batch]
        loss = pose_loss(accel.forward(net, assemble(depth16[idx], None)), target[idx], prof.loss_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["acc"] += loss.detach() * batch
        state["s"] = s + batch

    warm = 5 if fast and dev.type == "cuda" else 2  # compilation happens in the warm-up
    model.train()
    # Bare, loop, bare again: the best of the two bare timings, so warm-up order cannot flatter the loop.
    t_bare = _timed(bare, dev, iters, warm)
    t_loop = _timed(loop, dev, iters, warm)
    t_bare = min(t_bare, _timed(bare, dev, iters, 1))
    model.eval()
    with torch.no_grad():
        one = x32[:1]
        t1 = _timed(lambda: accel.forward(net, (one,)), dev, iters * 4, warm)
        big = torch.rand(128, 1, size, size, device=dev)
        t128 = _timed(lambda: accel.forward(net, (big,)), dev, max(2, iters // 2), warm)
    return {"train_images_per_s": round(batch / t_loop, 1), "bare_step_images_per_s": round(batch / t_bare, 1),
            "loop_over_bare": round(t_bare / t_loop, 3), "infer_latency_ms_batch1": round(1000 * t1, 3),
            "infer_images_per_s_batch128": round(128 / t128, 1)}


def bench_net(profile: str, dev: torch.device, size: int, width: float, batch: int, iters: int) -> dict:
    ref = _measure(profile, dev, size, width, batch, iters, fast=False)
    fast = _measure(profile, dev, size, width, batch, iters, fast=True)
    return {"reference": ref, "fast": fast,
            "fast_over_reference": {"train": round(fast["train_images_per_s"] / ref["train_images_per_s"], 3),
                                    "infer_batch128": round(fast["infer_images_per_s_batch128"]
                                                            / ref["infer_images_per_s_batch128"], 3),
                                    "latency_batch1": round(ref["infer_latency_ms_batch1"]
                                                            / fast["infer_latency_ms_batch1"], 3)},
            "input_size": size, "width": width, "batch_size": batch}


def bench_prep(frames: int = 600) -> dict:
    from data_prep.synthetic_nyu import generate
    from hpe.nyu import read_depth, read_rgb
    from hpe.prep import PrepConfig, prep
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nyu"
        generate(root, frames, 8, seed=0)
        files = sorted((root / "train").glob("depth_1_*.png"))
        t = time.perf_counter()
        for f in files:
            read_depth(f)
            read_rgb(Path(str(f).replace("depth_1_", "rgb_1_")))
        decode = len(files) / (time.perf_counter() - t)
        stats = prep(root, Path(tmp) / "b.h5", PrepConfig(), progress=False)
    import os
    cores = os.cpu_count() or 1
    return {"prep_frames_per_s": stats["frames_per_s"], "decode_frames_per_s_one_core": round(decode, 1),
            "decode_bound_frames_per_s": round(decode * cores, 1),
            "prep_over_decode_bound": round(stats["frames_per_s"] / (decode * cores), 3)}


def run(device: str = "auto", quick: bool | None = None) -> dict:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    quick = dev.type == "cpu" if quick is None else quick
    # On a CPU the full-size nets would take minutes per step: measure the same topology at reduced size.
    size, width, iters = (64, 0.25, 6) if quick else (128, 1.0, 30)
    out = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads()}
    for profile in ("thesis", "icip2018"):
        batch = get_profile(profile).batch_size
        out[f"depthnet_{profile}"] = bench_net(profile, dev, size, width, batch, iters)
    out["prep"] = bench_prep()
    return out


def main(device: str = "auto", quick: bool | None = None) -> None:
    print(json.dumps(run(device, quick)))
