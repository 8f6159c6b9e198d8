"""Training (thesis 4.4.3): loss eq. 4.14, Lasagne momentum SGD, early stopping with learning-rate halving.

``train(config) -> result`` is a plain function: the CLI, the experiment files and the hyperparameter search
all call it.  Every run writes a folder: ``config.json`` (resolved), ``log.csv`` (one row per epoch),
``checkpoint.pt`` (every epoch, atomic), ``best.pt`` (best weights), ``result.json`` and predictions.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hpe import DataError
from hpe.camera import NYU_CAMERA
from hpe.crop import denormalise_joints
from hpe.data import InputAssembler, SplitData, h5_attrs, input_channels, load_split, rgb_channels
from hpe.io import atomic_torch_save, atomic_write_json, atomic_write_text
from hpe.metrics import joint_errors, normalised_mse, write_uvd_txt
from hpe.nets import FUSION_FUNCTIONS, FuseNet, NetConfig, PoseNet, fusion_points, resolve_name
from hpe.optim import LasagneMomentum
from hpe.profiles import get_profile

INPUTS = ("depth", "rgb", "rgbd", "depth+rgb")  # depth+rgb: double-stream Fuse-Net
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
LOG_FIELDS = ("epoch", "train_loss", "train_mse", "val_loss", "val_mse", "lr", "seconds", "images_per_s",
              "val_seconds")


@dataclass
class TrainConfig:
    data: str = "data/synthetic.h5"
    out: str = "results/runs/depthnet"
    profile: str = "thesis"
    net: str = "net6"
    inputs: str = "depth"
    fusion_layer: str = "conv4"      # Fuse-Net only (inputs = depth+rgb)
    fusion: str = "conv"             # max | sum | cat | conv
    width: float = 1.0
    fc_units: int = 4096
    input_size: int | None = None    # None: the prepared crop size
    lr: float = 0.01
    momentum: float = 0.9
    dropout: float = 0.03
    batch_size: int | None = None    # None: the profile's (thesis 128, icip2018 64)
    max_epochs: int | None = None
    patience: int | None = None
    max_halvings: int | None = None
    nesterov: bool | None = None
    restore_best_on_halving: bool | None = None
    loss_scale: str | None = None
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    limit_train: int | None = None   # use only the first N frames of each split (dry runs, tests)
    divergence_factor: float = 100.0  # train loss above factor x the first epoch's (or NaN) = diverged
    progress: bool = True
    predict_test: bool = True
    checkpoint_interval_s: float = 30.0  # write checkpoint.pt/best.pt at most this often (and at the end)
    # Fast path switches (the fp32 eager defaults are the reference).  See README "Speed".
    precision: str = "fp32"          # fp32 | bf16 (autocast; loss, weights and optimizer state stay fp32)
    channels_last: bool = False
    compile: bool = False            # torch.compile the training model
    compile_mode: str = "default"    # torch.compile mode: default | reduce-overhead | max-autotune[-no-cudagraphs]
    tf32: bool = False               # TF32 matmuls/convolutions on CUDA
    cudnn_benchmark: bool = False    # cuDNN autotuning (ignored in deterministic mode)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)

    def resolved(self) -> "TrainConfig":
        """Fill the profile's defaults and validate, failing at once with a clear message."""
        p = get_profile(self.profile)
        resolve_name(self.net)
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown inputs '{self.inputs}' (choose from {', '.join(INPUTS)})")
        if self.inputs == "depth+rgb":
            if self.fusion_layer not in fusion_points(self.net):
                raise ValueError(f"fusion layer '{self.fusion_layer}' out of range for {self.net} "
                                 f"(choose from {', '.join(fusion_points(self.net))})")
            if self.fusion not in FUSION_FUNCTIONS:
                raise ValueError(f"unknown fusion function '{self.fusion}' (choose from {', '.join(FUSION_FUNCTIONS)})")
        for name in ("lr", "width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got '{self.compile_mode}'")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got '{self.precision}'")
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], got {self.momentum}")
        r = replace(self,
                    batch_size=self.batch_size or p.batch_size, max_epochs=self.max_epochs or p.max_epochs,
                    patience=self.patience or p.patience,
                    max_halvings=p.max_halvings if self.max_halvings is None else self.max_halvings,
                    nesterov=p.nesterov if self.nesterov is None else self.nesterov,
                    restore_best_on_halving=(p.restore_best_on_halving if self.restore_best_on_halving is None
                                             else self.restore_best_on_halving),
                    loss_scale=self.loss_scale or p.loss_scale)
        if r.loss_scale not in ("1/(2J)", "1/2"):
            raise ValueError(f"loss_scale must be '1/(2J)' or '1/2', got {r.loss_scale}")
        return r


def pick_device(name: str) -> torch.device:
    """``auto`` (a GPU if there is one), ``cpu``, ``cuda`` or ``cuda:N``; a device that is not there is a clear
    error instead of a failure deep inside torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device '{name}' asked for, but torch {torch.__version__} sees no CUDA GPU")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device '{name}' asked for, but there are only {count} CUDA GPU(s)")
    return device


def build_model(cfg: TrainConfig, in_size: int, num_joints: int) -> torch.nn.Module:
    prof = get_profile(cfg.profile)
    if cfg.inputs == "depth+rgb":
        net = NetConfig(cfg.net, 1, in_size, num_joints, cfg.width, cfg.fc_units, prof.pool, cfg.dropout)
        return FuseNet(net, rgb_channels(prof), cfg.fusion_layer, cfg.fusion)
    return PoseNet(NetConfig(cfg.net, input_channels(cfg.inputs, prof), in_size, num_joints, cfg.width,
                             cfg.fc_units, prof.pool, cfg.dropout))


def pose_loss(pred: torch.Tensor, target: torch.Tensor, scale: str) -> torch.Tensor:
    """Eq. 4.14: 1/(2J) ||f(I) - y||^2 per image, averaged over the batch (icip2018: 1/2 ||.||^2)."""
    sq = (pred - target).pow(2).sum(dim=1)
    factor = 1.0 / (2 * (pred.shape[1] // 3)) if scale == "1/(2J)" else 0.5
    return sq.mean() * factor


@dataclass(frozen=True)
class Accel:
    """How batches run: autocast precision and memory format (fp32 + contiguous is the reference)."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def inputs(self, xs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if not self.channels_last:
            return xs
        return tuple(x.contiguous(memory_format=torch.channels_last) for x in xs)

    def forward(self, model: torch.nn.Module, xs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with self.autocast():
            return model(*self.inputs(xs)).float()


@torch.no_grad()
def predict(model: torch.nn.Module, data: SplitData, assemble: InputAssembler, batch: int = 256,
            accel: Accel | None = None) -> np.ndarray:
    """Normalised predictions (N, J, 3) in eval mode (no dropout)."""
    model.eval()
    dev = next(model.parameters()).device
    accel = accel or Accel(dev)
    out = []
    for s in range(0, len(data), batch):
        rgb = None if data.rgb is None else data.rgb[s:s + batch].to(dev)
        out.append(accel.forward(model, assemble(data.depth[s:s + batch].to(dev), rgb)))
    return torch.cat(out).cpu().view(len(data), -1, 3).numpy()  # one copy back: a GPU sync per batch stalls


class _LossReader:
    """The progress bar's loss, read without stalling the GPU: copied to pinned memory asynchronously and shown
    once the copy has landed (a few batches late).  ``.item()`` would wait for every queued kernel."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.value = float("nan")
        if self.cuda:
            self.host, self.event, self.pending = torch.zeros((), pin_memory=True), torch.cuda.Event(), False

    def __call__(self, loss: torch.Tensor) -> float:
        if not self.cuda:
            return loss.item()  # on a CPU the value is already there
        if self.pending and self.event.query():
            self.value, self.pending = self.host.item(), False
        if not self.pending:
            self.host.copy_(loss.detach(), non_blocking=True)
            self.event.record()
            self.pending = True
        return self.value


def epoch_starts(n: int, batch_size: int, world: int = 1) -> list[int]:
    """First frame of each global batch.  Under DDP a tail too short to give every rank a frame is dropped, so
    all ranks take the same number of steps."""
    return [s for s in range(0, n, batch_size) if world == 1 or min(batch_size, n - s) >= world]


def train_epoch(net: torch.nn.Module, opt: torch.optim.Optimizer, accel: Accel, assemble: InputAssembler,
                data: SplitData, targets: torch.Tensor, perm: torch.Tensor, batch_size: int, loss_scale: str,
                rank: int = 0, world: int = 1, desc: str = "", progress: bool = False) -> tuple[torch.Tensor, int]:
    """One pass over a split already on the device, in the order ``perm``: index, assemble, forward, backward,
    update.  Nothing per batch goes through a data loader or the host, and nothing waits for the GPU.
    Returns the summed loss (a device tensor) and the number of frames it sums over (all ranks together).
    ``hpe bench`` times this same function."""
    n = len(perm)
    starts = epoch_starts(n, batch_size, world)
    loss_sum = torch.zeros((), device=targets.device)
    t0 = time.perf_counter()
    bar = tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
    read = _LossReader(targets.device)
    for b, s in enumerate(bar):
        idx = perm[s:s + batch_size][rank::world]  # under DDP each rank takes every world-th frame of the batch
        rgb = None if data.rgb is None else data.rgb[idx]
        loss = pose_loss(accel.forward(net, assemble(data.depth[idx], rgb)), targets[idx], loss_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
        if progress and b % 10 == 0:
            bar.set_postfix(loss=f"{read(loss):.5f}",
                            img_s=f"{(s + batch_size) / max(time.perf_counter() - t0, 1e-9):.0f}")
    return loss_sum, sum(min(batch_size, n - s) for s in starts)


def to_mm(pred_norm: np.ndarray, data: SplitData) -> tuple[np.ndarray, np.ndarray]:
    """Map normalised predictions back to xyz (inverse eqs. 4.7-4.9) and uvd (eqs. 4.3-4.5)."""
    xyz = denormalise_joints(pred_norm, data.meta["centre_xyz"], data.meta["cube"])
    return xyz, NYU_CAMERA.xyz_to_uvd(xyz)


class _Run:
    """The run folder: config, CSV log, checkpoints."""

    def __init__(self, out: Path):
        self.dir = Path(out)
        self.ckpt, self.best = self.dir / "checkpoint.pt", self.dir / "best.pt"
        self.best_prev = self.dir / "best.prev.pt"
        self.log = self.dir / "log.csv"

    def write_log(self, rows: list[dict]) -> None:
        import io
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.log, buf.getvalue())


def _save_run(run: _Run, model, opt, device, cfg: TrainConfig, new_best: dict | None, progress: dict) -> None:
    """Write best.pt (if the best changed) and then checkpoint.pt, each atomically.

    The previous best.pt is kept as best.prev.pt until the new checkpoint is in place, so a kill between the two
    writes still leaves the best weights that the surviving checkpoint refers to (see :func:`_load_best`).
    """
    if new_best is not None:
        if run.best.exists():
            os.replace(run.best, run.best_prev)
        atomic_torch_save({"model": {k: v.cpu() for k, v in new_best.items()}, "epoch": progress["best_epoch"],
                           "val_mse": progress["best_val"], "config": asdict(cfg)}, run.best)
    atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                       "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                       "config": asdict(cfg), **progress}, run.ckpt)
    run.best_prev.unlink(missing_ok=True)


def _load_best(run: _Run, best_epoch: int) -> dict | None:
    """The best weights that a checkpoint with ``best_epoch`` refers to (None before the first finished epoch)."""
    if best_epoch == 0:
        return None
    for path in (run.best, run.best_prev):
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=False)
            if saved["epoch"] == best_epoch:
                return saved["model"]
    raise DataError(f"{run.dir}: checkpoint.pt refers to the best weights of epoch {best_epoch}, but neither "
                    f"best.pt nor best.prev.pt holds them; delete {run.dir} to start over")


def set_backend_switches(tf32: bool, cudnn_benchmark: bool) -> None:
    """The process-wide kernel switches of the fast path (TF32 matmuls/convolutions, cuDNN autotuning)."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def _set_determinism(cfg: TrainConfig, rank: int) -> None:
    torch.manual_seed(cfg.seed + rank)  # per-rank dropout masks; DDP broadcasts rank 0's initial weights
    np.random.seed((cfg.seed + rank) % 2**32)
    set_backend_switches(cfg.tf32, cfg.cudnn_benchmark and not cfg.deterministic)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _to_device(split: SplitData, device: torch.device, name: str, path: str) -> SplitData:
    """Put a whole split on the device, or say in one line why it does not fit."""
    try:
        return split.to(device)
    except torch.OutOfMemoryError:
        size = sum(t.numel() * t.element_size() for t in (split.depth, split.rgb, split.joints) if t is not None)
        raise DataError(f"the '{name}' split of {path} ({size / 2**30:.1f} GiB) does not fit in the free memory of "
                        f"{device}; use a device with more memory, or limit_train=N to train on fewer frames") from None


def _distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device).  Under torchrun (WORLD_SIZE > 1) joins the process group: NCCL on GPUs,
    gloo on CPUs; each rank gets one GPU (LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(cfg.device)
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def train(config: TrainConfig | dict, resume: bool = False) -> dict:
    """Train one model; returns the result dict also written to ``result.json``."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg = cfg.resolved()
    run = _Run(Path(cfg.out))
    state = None
    if run.ckpt.exists():
        if not resume:
            raise FileExistsError(f"{run.dir} already holds a run (checkpoint.pt); pass --resume to continue it "
                                  f"or choose another output folder")
        state = torch.load(run.ckpt, map_location="cpu", weights_only=False)
        saved = TrainConfig.from_dict(state["config"])
        runtime = {"device", "progress", "out", "checkpoint_interval_s"}
        changed = sorted(k for k, v in asdict(cfg).items() if k not in runtime and asdict(saved)[k] != v)
        if changed:
            raise ValueError(f"{run.ckpt} was trained with other settings ({', '.join(changed)}); "
                             f"delete {run.dir} to start over, or resume with the same config")
        cfg = replace(saved, device=cfg.device, progress=cfg.progress, checkpoint_interval_s=cfg.checkpoint_interval_s)
    rank, world, device = _distributed(cfg)
    main = rank == 0  # only rank 0 writes the run folder
    if main:
        run.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.dir / "config.json", asdict(cfg))
    _set_determinism(cfg, rank)
    prof = get_profile(cfg.profile)
    accel = Accel(device, cfg.precision, cfg.channels_last)

    attrs = h5_attrs(Path(cfg.data))
    need_rgb = cfg.inputs != "depth"
    load = dict(need_rgb=need_rgb, input_size=cfg.input_size, clip_joints=prof.clip_joints, limit=cfg.limit_train)
    train_d, val_d = load_split(cfg.data, "train", **load), load_split(cfg.data, "val", **load)
    in_size, n_joints = train_d.depth.shape[-1], train_d.joints.shape[1]
    assemble = InputAssembler("rgbd" if cfg.inputs == "depth+rgb" else cfg.inputs, prof,
                              attrs.get("rgb_mean"), attrs.get("rgb_std"), two_streams=cfg.inputs == "depth+rgb")
    model = build_model(cfg, in_size, n_joints).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = LasagneMomentum(model.parameters(), cfg.lr, cfg.momentum, cfg.nesterov)
    gpu_train = _to_device(train_d, device, "train", cfg.data)
    targets = gpu_train.joints.view(len(gpu_train), -1)

    rows: list[dict] = []
    epoch, lr = 0, cfg.lr
    best_val, best_epoch, wait, halvings, first_loss = math.inf, 0, 0, 0, None
    status, reason = "running", ""
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        rows, epoch, lr = state["rows"], state["epoch"], state["lr"]
        best_val, best_epoch, wait, halvings = state["best_val"], state["best_epoch"], state["wait"], state["halvings"]
        first_loss, status, reason = state["first_loss"], state["status"], state["reason"]
    best_weights = _load_best(run, state["best_epoch"]) if state is not None else None

    # `net` is what the training step calls: the model, wrapped for DDP and/or compiled; `model` stays the
    # plain module whose state_dict is saved.
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        # Static shapes: the full batch and the epoch's last, shorter batch each get their own graph, instead of
        # one dynamic-shape graph that the full batches would then also run through.
        net = torch.compile(net, mode=cfg.compile_mode, dynamic=False)
    val_dev = _to_device(val_d, device, "val", cfg.data)  # validated every epoch: keep it next to the model

    n = len(gpu_train)
    saved_at, saved_best = time.perf_counter(), best_epoch  # on resume best.pt already holds best_epoch's weights

    def save() -> None:
        """best.pt if the best moved since the last save, then checkpoint.pt with the loop's state."""
        nonlocal saved_at, saved_best
        _save_run(run, model, opt, device, cfg, best_weights if best_epoch != saved_best else None,
                  {"rows": rows, "epoch": epoch, "lr": lr, "best_val": best_val, "best_epoch": best_epoch,
                   "wait": wait, "halvings": halvings, "first_loss": first_loss, "status": status, "reason": reason})
        saved_at, saved_best = time.perf_counter(), best_epoch
    t_start = time.perf_counter()
    while status == "running" and epoch < cfg.max_epochs:
        epoch += 1
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)  # same order whether resumed or not
        perm = torch.randperm(n, generator=gen).to(device)
        t0 = time.perf_counter()
        loss_sum, seen = train_epoch(net, opt, accel, assemble, gpu_train, targets, perm, cfg.batch_size,
                                     cfg.loss_scale, rank, world, f"epoch {epoch}/{cfg.max_epochs}",
                                     cfg.progress and main)
        if world > 1:
            import torch.distributed as dist
            dist.all_reduce(loss_sum)
        train_loss = float(loss_sum) / seen
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss) or (first_loss is not None and train_loss > cfg.divergence_factor * first_loss):
            status, reason = "diverged", f"training loss {train_loss:.4g} at epoch {epoch} (first epoch {first_loss})"
            break
        first_loss = first_loss if first_loss is not None else train_loss
        t_val = time.perf_counter()
        val_pred = predict(model, val_dev, assemble, accel=accel)  # identical on every rank: same weights, same data
        val_mse = normalised_mse(val_pred, val_d.joints.numpy())
        scale = 1.0 / (2 * n_joints) if cfg.loss_scale == "1/(2J)" else 0.5
        row = {"epoch": epoch, "train_loss": train_loss, "train_mse": train_loss / scale / (3 * n_joints),
               "val_loss": val_mse * 3 * n_joints * scale, "val_mse": val_mse, "lr": lr,
               "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1),
               "val_seconds": round(time.perf_counter() - t_val, 3)}
        rows.append(row)
        if not math.isfinite(val_mse):
            status, reason = "diverged", f"validation error is {val_mse} at epoch {epoch}"
            break
        if val_mse < best_val:
            # Kept in memory (on the device) and written with the next checkpoint, not every epoch.
            best_val, best_epoch, wait = val_mse, epoch, 0
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= cfg.patience:  # the validation error saturated: halve the learning rate
                if halvings >= cfg.max_halvings:
                    status, reason = "stopped", f"early stop: no improvement for {wait} epochs after {halvings} halvings"
                else:
                    halvings, wait, lr = halvings + 1, 0, lr / 2
                    if cfg.restore_best_on_halving and best_weights is not None:
                        model.load_state_dict(best_weights)
        if status == "running" and epoch >= cfg.max_epochs:
            status, reason = "done", f"reached max_epochs = {cfg.max_epochs}"
        if not main:
            continue
        run.write_log(rows)
        if cfg.progress:
            tqdm.write(f"epoch {epoch}: train {row['train_mse']:.5f} val {val_mse:.5f} lr {lr:.4g} "
                       f"{row['images_per_s']:.0f} img/s")
        # A checkpoint of Depth-Net is 1.2 GB; on a fast GPU an NYU epoch takes seconds, so write one only every
        # checkpoint_interval_s (and always at the end): a kill loses at most that much training.
        if status != "running" or time.perf_counter() - saved_at >= cfg.checkpoint_interval_s:
            save()
    if main and status == "diverged":  # keep what the diverged run had, so a resume reports instead of retraining
        save()
    if status == "running":
        status, reason = "done", f"reached max_epochs = {cfg.max_epochs}"
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if not main:
        return {"status": status, "reason": reason, "rank": rank}
    run.write_log(rows)

    result = {"status": status, "reason": reason, "run_dir": str(run.dir), "epochs": epoch,
              "best_epoch": best_epoch, "best_val_mse": best_val if math.isfinite(best_val) else None,
              "final_lr": lr, "seconds": round(time.perf_counter() - t_start, 2), "device": str(device),
              "config": asdict(cfg)}
    if best_weights is None:
        result["reason"] = reason or "no finished epoch"
        atomic_write_json(run.dir / "result.json", result)
        return result
    model.load_state_dict(best_weights)
    train_eval = predict(model, train_d, assemble, accel=accel)
    result["train_mse"] = normalised_mse(train_eval, train_d.joints.numpy())
    val_pred = predict(model, val_dev, assemble, accel=accel)
    _save_predictions(run.dir / "val_predictions.npz", val_pred, val_d)
    if cfg.predict_test:
        test_d = load_split(cfg.data, "test", **{**load, "limit": cfg.limit_train})
        pred = predict(model, test_d, assemble, accel=accel)
        xyz, uvd = _save_predictions(run.dir / "test_predictions.npz", pred, test_d)
        write_uvd_txt(run.dir / "test_predictions_uvd.txt", uvd)
        err = joint_errors(xyz, test_d.meta["joints_xyz"])
        mean_pose = np.broadcast_to(train_d.joints.numpy().mean(0), pred.shape)
        result["test_mean_mm"] = float(err.mean())
        result["test_mse"] = normalised_mse(pred, test_d.joints.numpy())
        result["mean_pose_mm"] = float(joint_errors(to_mm(mean_pose, test_d)[0], test_d.meta["joints_xyz"]).mean())
    atomic_write_json(run.dir / "result.json", result)
    return result


def _save_predictions(path: Path, pred: np.ndarray, data: SplitData) -> tuple[np.ndarray, np.ndarray]:
    xyz, uvd = to_mm(pred, data)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, normalised=pred, xyz=xyz, uvd=uvd, frame=data.meta["frame"], subject=data.meta["subject"],
             target=data.joints.numpy())
    os.replace(tmp, path)
    return xyz, uvd


def load_result(run_dir: Path) -> dict:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise DataError(f"no finished run in {run_dir} (missing result.json)")
    return json.loads(path.read_text())
