"""Training (thesis 4.4.3): loss eq. 4.14, Lasagne momentum SGD, early stopping with learning-rate halving.

``train(config) -> result`` is a plain function: the CLI, the experiment targets and the hyperparameter search
all call it.  The learning-rate schedule is the pure function :func:`next_state`; :func:`evaluate_run` does
the final evaluation and exports.  The run folder (files, lock, checkpoints) is :mod:`hpe.run`.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hpe import DataError
from hpe.atomic import savez, write_json
from hpe.camera import Camera
from hpe.config import RUNTIME_KEYS, TrainConfig, build_train_config, config_from_dict
from hpe.crop import CropRules, denormalise_joints
from hpe.dataset import InputAssembler, SplitData, fingerprint, input_channels, load_split, open_prepared, rgb_channels
from hpe.metrics import joint_errors, normalised_mse
from hpe.nets import SCORE, FuseNet, JointFusePred, NetConfig, PoseNet
from hpe.nyu import PALM_JOINT, write_joints_txt
from hpe.optim import LasagneMomentum
from hpe.output import check, taken
from hpe.progress import Lines
from hpe.run import RunDir, provenance, write_config


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
    elif device.type != "cpu":
        raise ValueError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
    return device


def build_model(cfg: TrainConfig, num_joints: int) -> torch.nn.Module:
    net = NetConfig(name=cfg.net, in_channels=input_channels("rgbd" if cfg.inputs == "depth+rgb" else cfg.inputs,
                                                             cfg.rgb_mode),
                    input_size=cfg.input_size, num_joints=num_joints, width=cfg.width, fc_units=cfg.fc_units,
                    pool=cfg.pool, dropout=cfg.dropout)
    if cfg.inputs == "depth+rgb" and cfg.fusion_layer == SCORE:
        return JointFusePred(net, rgb_channels(cfg.rgb_mode))
    if cfg.inputs == "depth+rgb":
        return FuseNet(replace(net, in_channels=1), rgb_channels(cfg.rgb_mode), cfg.fusion_layer, cfg.fusion,
                       cfg.fc_fusion)
    return PoseNet(net)


def input_shapes(cfg: TrainConfig) -> list[tuple[int, int, int]]:
    """The (channels, height, width) of each input the net of ``cfg`` takes (two for a Fuse-Net or FusePred)."""
    s = cfg.input_size
    if cfg.inputs == "depth+rgb":
        return [(1, s, s), (rgb_channels(cfg.rgb_mode), s, s)]
    return [(input_channels(cfg.inputs, cfg.rgb_mode), s, s)]


def step_bytes_lower_bound(cfg: TrainConfig, num_joints: int) -> int:
    """Bytes a training step holds at the least (fp32): weights, gradients and momentum velocities, and every
    layer's output for a batch (kept for the backward pass).  Measured on the meta device (shapes only, no
    memory); the real peak is higher: 1.2-2.5x this on the CPU (Net1, Net6, Fuse-Nets, 128-1024 px)."""
    with torch.device("meta"):
        model = build_model(cfg, num_joints)
        outputs = 0

        def count(module, args, out):
            nonlocal outputs
            outputs += out.numel()

        for m in model.modules():  # the layers that make new tensors (not views, not in-place)
            if not list(m.children()) and not isinstance(m, (torch.nn.Flatten, torch.nn.Identity)) \
                    and not getattr(m, "inplace", False):
                m.register_forward_hook(count)
        model(*[torch.empty(cfg.batch_size, *shape) for shape in input_shapes(cfg)])
    return 4 * (3 * sum(p.numel() for p in model.parameters()) + outputs)


def _available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable); None where it cannot tell."""
    try:
        with open("/proc/meminfo") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def check_fits_memory(cfg: TrainConfig, num_joints: int, device: torch.device) -> None:
    """Refuse, before the first step, a CPU training step that cannot fit in the memory left: the kernel would kill
    the process (exit 137, no message) rather than let torch report it.  GPUs report their own out-of-memory."""
    if device.type != "cpu":
        return
    need, free = step_bytes_lower_bound(cfg, num_joints), _available_memory()
    if free is not None and need > free:
        raise DataError(f"a training step of {cfg.net} (input_size {cfg.input_size}, width {cfg.width:g}, batch_size "
                        f"{cfg.batch_size}) needs at least {need / 2**30:.1f} GiB, this machine has "
                        f"{free / 2**30:.1f} GiB available: a smaller input_size, width or batch_size, or a machine "
                        f"with more memory")


def loss_factor(scale: str, num_joints: int) -> float:
    """The constant in front of ||f(I) - y||^2: 1/(2J) (eq. 4.14) or 1/2 (the author's code)."""
    return 1.0 / (2 * num_joints) if scale == "1/(2J)" else 0.5


def pose_loss(pred: torch.Tensor, target: torch.Tensor, scale: str) -> torch.Tensor:
    """Eq. 4.14: 1/(2J) ||f(I) - y||^2 per image, averaged over the batch (icip2018: 1/2 ||.||^2)."""
    return (pred - target).pow(2).sum(dim=1).mean() * loss_factor(scale, pred.shape[1] // 3)


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
                rank: int = 0, world: int = 1, desc: str = "", progress: bool | str = False,
                augment=None) -> tuple[torch.Tensor, int]:
    """One pass over a split already on the device, in the order ``perm``: index, (augment), assemble, forward,
    backward, update.  Nothing per batch goes through a data loader or the host, and nothing waits for the GPU.
    Returns the summed loss (a device tensor) and the number of frames it sums over (all ranks together).
    ``progress``: a tqdm bar (True), none (False) or ``"lines"``: a plain line every 10 s of a slow epoch.
    ``hpe bench`` times this same function."""
    n = len(perm)
    starts = epoch_starts(n, batch_size, world)
    loss_sum = torch.zeros((), device=targets.device)
    t0 = time.perf_counter()
    if progress == "lines":  # --progress epochs: silent unless an epoch is slow, then a line every 10 s
        bar = Lines(len(starts), desc, "batch", every_s=10.0, final=False)
    else:
        bar = tqdm(total=len(starts), desc=desc, unit="batch", disable=None if progress else True, leave=False,
                   dynamic_ncols=True)
    read = _LossReader(targets.device)
    for b, s in enumerate(starts):
        idx = perm[s:s + batch_size][rank::world]  # under DDP each rank takes every world-th frame of the batch
        depth, rgb, y = data.depth[idx], None if data.rgb is None else data.rgb[idx], targets[idx]
        if augment is not None:
            depth, rgb, y = augment(idx, depth, rgb, y)
        loss = pose_loss(accel.forward(net, assemble(depth, rgb)), y, loss_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
        if not bar.disable and b % 10 == 0:
            bar.set_postfix(loss=f"{read(loss):.5f}",
                            img_s=f"{(s + batch_size) / max(time.perf_counter() - t0, 1e-9):.0f}")
        bar.update(1)
    bar.close()
    return loss_sum, sum(min(batch_size, n - s) for s in starts)


# --- the schedule ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoopState:
    """The training loop's bookkeeping, saved in every checkpoint."""

    lr: float
    epoch: int = 0            # the schedule's epoch counter (the icip2018 rule rewinds it)
    trained: int = 0          # epochs actually trained
    best_val: float = math.inf
    best_epoch: int = 0
    since: int = 0            # the epoch from which a plateau is counted: last improvement or halving
    halvings: int = 0
    first_loss: float | None = None
    status: str = "running"   # running | done | stopped | diverged
    reason: str = ""
    rows: list = field(default_factory=list)


def next_state(s: LoopState, val: float, cfg: TrainConfig) -> tuple[LoopState, str]:
    """The schedule after an epoch's validation error (thesis 4.4.3): improvement, or after ``patience`` epochs
    without one ("the validation error saturates") halve the learning rate, at most ``max_halvings`` times, then
    stop.  ``on_plateau = halve-restore-rewind`` is the author's loop: it also restores the best weights and
    rewinds the epoch counter to the best epoch, so a run may train more than ``max_epochs`` epochs.

    Returns the new state and the action for the caller: improved | wait | halve | halve-restore | stop."""
    if val < s.best_val:
        s, action = replace(s, best_val=val, best_epoch=s.epoch, since=s.epoch), "improved"
    elif s.epoch - s.since < cfg.patience:
        action = "wait"
    elif s.halvings >= cfg.max_halvings:
        s, action = replace(s, status="stopped", reason=f"early stop: no improvement for {s.epoch - s.since} epochs "
                                                        f"after {s.halvings} halvings"), "stop"
    elif cfg.on_plateau == "halve" or s.epoch >= cfg.max_epochs:  # the author's loop ends at its last epoch index
        s, action = replace(s, lr=s.lr / 2, halvings=s.halvings + 1, since=s.epoch), "halve"
    else:
        s, action = replace(s, lr=s.lr / 2, halvings=s.halvings + 1, epoch=s.best_epoch - 1,
                            since=s.best_epoch), "halve-restore"
    if s.status == "running" and s.epoch >= cfg.max_epochs:
        s = replace(s, status="done", reason=f"reached max_epochs = {cfg.max_epochs}")
    return s, action


# --- set-up ------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """What the loop needs, built once (and again on resume)."""

    cfg: TrainConfig
    run: RunDir
    device: torch.device
    rank: int
    world: int
    model: torch.nn.Module       # the plain module whose state_dict is saved
    net: torch.nn.Module         # what the step calls: the model, wrapped for DDP and/or compiled
    opt: LasagneMomentum
    accel: Accel
    assemble: InputAssembler
    train_d: SplitData           # CPU copies (final evaluation, mean pose)
    val_d: SplitData
    gpu_train: SplitData         # device copies
    val_dev: SplitData
    camera: Camera
    info: dict                   # the prepared file's attributes that predict needs
    load: dict                   # how splits are read (load_split's keyword arguments)
    augment: object = None
    tracker: object = None       # hpe.tracking.Tracker (--tensorboard), rank 0 only

    @property
    def main(self) -> bool:
        return self.rank == 0


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


def _jitter(cfg: TrainConfig, data: SplitData, device: torch.device):
    """The centre and scale jitter of the training loop (None when both are 0): hpe/augment.py."""
    if cfg.centre_jitter_mm == 0 and cfg.scale_jitter == 0:
        return None
    from hpe.augment import jitter_centres, random_offsets, random_scales
    centre = torch.as_tensor(data.meta["centre_xyz"], dtype=torch.float32, device=device)
    cube = torch.as_tensor(data.meta["cube"], dtype=torch.float32, device=device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 7919)

    def augment(idx, depth, rgb, y):
        delta = random_offsets(len(idx), cfg.centre_jitter_mm, gen, device)
        scale = random_scales(len(idx), cfg.scale_jitter, gen, device) if cfg.scale_jitter else None
        return jitter_centres(depth, rgb, y, centre[idx], cube[idx], delta, cfg.clip_joints, scale)
    return augment


def _eval_split(cfg: TrainConfig, data: SplitData, seed: int) -> SplitData:
    """What a split is evaluated on: as stored, or for a centre-refinement net (target = centre) re-centred once
    with fixed offsets of the training jitter (on centred crops "the palm is at the centre" is trivially right)."""
    if cfg.target != "centre" or cfg.centre_jitter_mm == 0:
        return data
    from hpe.augment import jitter_split
    return jitter_split(data, cfg.centre_jitter_mm, seed, cfg.clip_joints)


def _plain(value):
    """An HDF5 attribute as plain Python (lists, str, numbers) for JSON."""
    value = np.asarray(value).tolist()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value.decode() if isinstance(value, bytes) else value


def target_joints(cfg: TrainConfig, attrs: dict) -> list[int] | None:
    """The stored joints a run regresses: all, or (target = centre) only the palm centre, NYU joint 32."""
    if cfg.target == "pose":
        return None
    stored = [int(j) for j in np.asarray(attrs["joint_indices"])]
    if PALM_JOINT not in stored:
        raise DataError(f"{cfg.data} does not hold the palm centre (NYU joint {PALM_JOINT}) that target = centre needs")
    return [stored.index(PALM_JOINT)]


def load_training_splits(cfg: TrainConfig, attrs: dict) -> tuple[SplitData, SplitData, dict]:
    """The train and val splits a run holds in host memory, and how they were read (load_split's keyword
    arguments, for the test split later).  ``hpe scale`` measures this very call."""
    load = dict(need_rgb=cfg.inputs != "depth", input_size=cfg.input_size, clip_joints=cfg.clip_joints,
                limit=cfg.limit_train, joints=target_joints(cfg, attrs))
    return load_split(cfg.data, "train", **load), _eval_split(cfg, load_split(cfg.data, "val", **load), 1), load


def _setup(cfg: TrainConfig, run: RunDir, attrs: dict) -> Setup:
    rank, world, device = _distributed(cfg)
    _set_determinism(cfg, rank)
    train_d, val_d, load = load_training_splits(cfg, attrs)
    assemble = InputAssembler(cfg.inputs, cfg.rgb_mode, cfg.rgb_mask, attrs["rgb_mean"], attrs["rgb_std"])
    check_fits_memory(cfg, train_d.joints.shape[1], device)
    model = build_model(cfg, train_d.joints.shape[1]).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = LasagneMomentum(model.parameters(), cfg.lr, cfg.momentum, cfg.nesterov)
    gpu_train = _to_device(train_d, device, "train", cfg.data)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        # Static shapes: the full batch and the epoch's last, shorter batch each get their own graph, instead of
        # one dynamic-shape graph that the full batches would then also run through.
        net = torch.compile(net, mode=cfg.compile_mode, dynamic=False)
    val_dev = _to_device(val_d, device, "val", cfg.data)  # validated every epoch: keep it next to the model
    info = {k: _plain(attrs[k]) for k in ("size", "cube_mm", "cube_mm_subject2", "camera", "rgb_mean", "rgb_std",
                                         "centre", "joint_names", "profile")}
    info.update(asdict(CropRules.from_attrs(attrs)), rgb_stats=str(attrs.get("rgb_stats", "masked-crop")))
    if load["joints"] is not None:
        info["joint_names"] = [info["joint_names"][j] for j in load["joints"]]
    return Setup(cfg, run, device, rank, world, model, net, opt, Accel(device, cfg.precision, cfg.channels_last),
                 assemble, train_d, val_d, gpu_train, val_dev, Camera(*attrs["camera"]), info, load,
                 _jitter(cfg, gpu_train, device))


def _resume(cfg: TrainConfig, run: RunDir, resume: bool, restart_if_changed: bool,
            fp: str) -> tuple[TrainConfig, dict | None]:
    """The checkpoint to continue from (or None), refusing a resume onto other settings or other data."""
    if not run.ckpt.exists():
        return cfg, None
    if not resume:
        raise FileExistsError(f"{run.dir} already holds a run (checkpoint.pt); pass --resume (resume=True in "
                              f"Python) to continue it or choose another output folder")
    ckpt = run.load_checkpoint()
    saved = config_from_dict(ckpt["config"])
    changed = sorted(k for k, v in cfg.to_dict().items() if k not in RUNTIME_KEYS and saved.to_dict()[k] != v)
    problem = None
    if changed:
        problem = f"{run.ckpt} was trained with other settings ({', '.join(changed)})"
    elif ckpt.get("data_fingerprint") != fp:
        problem = (f"{run.ckpt} was trained on {saved.data} (fingerprint {ckpt.get('data_fingerprint')}), but "
                   f"{cfg.data} holds different data (fingerprint {fp})")
    if problem is None:
        return replace(saved, **{k: getattr(cfg, k) for k in RUNTIME_KEYS}), ckpt
    if restart_if_changed:
        print(f"note: {problem}; starting {run.dir} over", flush=True)
        run.clear()
        return cfg, None
    raise ValueError(f"{problem}; resume with the same config and data, or delete {run.dir} to start over")


def train(config: TrainConfig | dict, resume: bool = False, restart_if_changed: bool = False,
          command: str = "train") -> dict:
    """Train one model; returns the result dict also written to ``result.json``.

    ``resume`` continues the run in ``config.out`` from its checkpoint (same settings and data only);
    ``restart_if_changed`` starts it over instead when its settings or data changed (what Make wants).
    ``command``: the hpe command the run folder belongs to (``fusepred`` trains its joint net into its own
    ``--out``); a folder holding another command's outputs is refused."""
    cfg = config if isinstance(config, TrainConfig) else build_train_config([("config", config)])
    info = open_prepared(cfg.data)
    if info.profile != cfg.profile:
        raise ValueError(f"{cfg.data} was prepared with profile '{info.profile}' but the config says "
                         f"'{cfg.profile}': prepare the data with --profile {cfg.profile}")
    if cfg.predict_test and info.sizes["test"] == 0:
        raise DataError(f"{cfg.data}: the test split has no frames; nothing to evaluate (prepare the test "
                        f"folder, or predict_test = false)")
    run = RunDir(cfg.out)
    if int(os.environ.get("RANK", "0")) != 0:  # under DDP only rank 0 owns (and locks) the run folder
        return _train(cfg, run, resume, restart_if_changed, info)
    with run.locked(), taken(run.dir, command):  # a folder of another command's outputs is refused
        try:
            return _train(cfg, run, resume, restart_if_changed, info)
        except BaseException:  # failed or interrupted before its first checkpoint: nothing to resume, so no
            if not run.ckpt.exists() and not run.result.exists():  # config.json-only folder is left behind
                run.clear()
            raise


def _train(cfg: TrainConfig, run: RunDir, resume: bool, restart_if_changed: bool, info) -> dict:
    if cfg.tensorboard:  # checked before config.json is written: a refused run leaves no folder behind
        try:
            check(Path(cfg.tensorboard), "folder")
        except DataError as exc:
            raise DataError(f"--tensorboard {cfg.tensorboard}: {exc}") from None
    fp = fingerprint(info)
    cfg, ckpt = _resume(cfg, run, resume, restart_if_changed, fp)
    t_start, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    s = _setup(cfg, run, info.attrs)
    prov = {**provenance(s.device), "started": started}
    if s.main:
        write_config(run, {"config": cfg.to_dict(), "data": {"path": str(cfg.data), "fingerprint": fp},
                           "preprocess": s.info, "provenance": prov})
    state, best_weights = LoopState(lr=cfg.lr), None
    if ckpt is not None:
        s.model.load_state_dict(ckpt["model"])
        s.opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        if s.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], s.device)
        state = LoopState(**ckpt["state"])
        best_weights = run.load_best(state.best_epoch)
    if s.main and cfg.progress != "none":
        print(config_block(cfg, s.device, state.trained), flush=True)
    if s.main and cfg.tensorboard:
        from hpe.tracking import open_tracker
        s.tracker = open_tracker(cfg.tensorboard, cfg.out, state.trained)
    try:
        state, best_weights = _loop(s, state, best_weights, fp)
    finally:
        if s.tracker is not None:
            s.tracker.close()
    if s.world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if not s.main:
        return {"status": state.status, "reason": state.reason, "rank": s.rank}
    result = evaluate_run(s, state, best_weights)
    result.update(seconds=round(time.perf_counter() - t_start, 2), data_fingerprint=fp,
                  provenance={**prov, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json(run.result, result)
    return result


def config_block(cfg: TrainConfig, device: torch.device, trained: int = 0) -> str:
    """The resolved config in a few lines, printed before the first epoch (config.json holds all of it)."""
    net = f"{cfg.net} (width {cfg.width:g}, fc {cfg.fc_units}, input {cfg.input_size}, pool {cfg.pool})"
    if cfg.inputs == "depth+rgb":
        net += f", Fuse-Net {cfg.fusion} at {cfg.fusion_layer}"
    start = f"resuming after epoch {trained}" if trained else "from scratch"
    return "\n".join([
        f"hpe train: {cfg.out} ({start}, on {device})",
        f"  net      {net}, inputs {cfg.inputs}, target {cfg.target}, dropout {cfg.dropout:g}",
        f"  profile  {cfg.profile}, loss {cfg.loss_scale}, on plateau {cfg.on_plateau}",
        f"  optim    lr {cfg.lr:g}, momentum {cfg.momentum:g}{' (Nesterov)' if cfg.nesterov else ''}, batch "
        f"{cfg.batch_size}, epochs <= {cfg.max_epochs} (patience {cfg.patience}, <= {cfg.max_halvings} halvings)",
        f"  data     {cfg.data}" + (f" (first {cfg.limit_train} frames)" if cfg.limit_train else ""),
        f"  out      {cfg.out} (config.json has every key)"]
        + ([f"  tensorboard {cfg.tensorboard}"] if cfg.tensorboard else []))


def _validate(s: Setup) -> float:
    val_pred = predict(s.model, s.val_dev, s.assemble, accel=s.accel)  # identical on every rank
    return normalised_mse(val_pred, s.val_d.joints.numpy())


def _loop(s: Setup, state: LoopState, best_weights: dict | None, fp: str) -> tuple[LoopState, dict | None]:
    cfg, run = s.cfg, s.run
    n, n_joints = len(s.gpu_train), s.train_d.joints.shape[1]
    targets = s.gpu_train.joints.view(n, -1)
    saved_at, saved_best = time.perf_counter(), state.best_epoch  # on resume best.pt already holds best_epoch's

    def save() -> None:
        """best.pt if the best moved since the last save, then checkpoint.pt with the loop's state."""
        nonlocal saved_at, saved_best
        run.save(s.model, s.opt, s.device, {"config": cfg.to_dict(), "state": asdict(state), "data_fingerprint": fp},
                 best_weights if state.best_epoch != saved_best else None,
                 {"epoch": state.best_epoch, "val_mse": state.best_val, "config": cfg.to_dict(), "preprocess": s.info})
        saved_at, saved_best = time.perf_counter(), state.best_epoch

    while state.status == "running":
        state = replace(state, epoch=state.epoch + 1, trained=state.trained + 1)
        for g in s.opt.param_groups:
            g["lr"] = state.lr
        s.model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + state.trained)  # same order resumed or not
        perm = torch.randperm(n, generator=gen).to(s.device)
        t0 = time.perf_counter()
        loss_sum, seen = train_epoch(s.net, s.opt, s.accel, s.assemble, s.gpu_train, targets, perm, cfg.batch_size,
                                     cfg.loss_scale, s.rank, s.world, f"epoch {state.epoch}/{cfg.max_epochs}",
                                     s.main and {"bar": True, "epochs": "lines"}.get(cfg.progress, False), s.augment)
        if s.world > 1:
            import torch.distributed as dist
            dist.all_reduce(loss_sum)
        train_loss, seconds = float(loss_sum) / seen, time.perf_counter() - t0
        if not math.isfinite(train_loss) or (state.first_loss is not None
                                             and train_loss > cfg.divergence_factor * state.first_loss):
            state = replace(state, status="diverged", reason=f"training loss {train_loss:.4g} at epoch "
                                                             f"{state.epoch} (first epoch {state.first_loss})")
            break
        t_val = time.perf_counter()
        val_mse = _validate(s)
        factor = loss_factor(cfg.loss_scale, n_joints)
        row = {"epoch": state.epoch, "trained": state.trained, "train_loss": train_loss,
               "train_mse": train_loss / factor / (3 * n_joints), "val_loss": val_mse * 3 * n_joints * factor,
               "val_mse": val_mse, "lr": state.lr, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1),
               "val_seconds": round(time.perf_counter() - t_val, 3)}
        state = replace(state, rows=state.rows + [row],
                        first_loss=state.first_loss if state.first_loss is not None else train_loss)
        if not math.isfinite(val_mse):
            state = replace(state, status="diverged", reason=f"validation error is {val_mse} at epoch {state.epoch}")
            break
        state, action = next_state(state, val_mse, cfg)
        if action == "improved":  # kept in memory (on the device) and written with the next checkpoint
            best_weights = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        elif action == "halve-restore":
            s.model.load_state_dict(best_weights)
        if not s.main:
            continue
        run.write_log(state.rows)
        if s.tracker is not None:
            s.tracker.epoch(row)
        _report_epoch(cfg, run, row, state)
        # A checkpoint of Depth-Net is 1.2 GB; on a fast GPU an NYU epoch takes seconds, so write one only every
        # checkpoint_interval_s (and always at the end): a kill loses at most that much training.
        if state.status != "running" or time.perf_counter() - saved_at >= cfg.checkpoint_interval_s:
            save()
    if s.main and state.status == "diverged":  # keep what the diverged run had, so a resume reports it
        run.write_log(state.rows)
        save()
    return state, best_weights


def _report_epoch(cfg: TrainConfig, run: RunDir, row: dict, state: LoopState) -> None:
    line = (f"{run.dir}: epoch {row['epoch']}/{cfg.max_epochs}: train {row['train_mse']:.5f} val {row['val_mse']:.5f} "
            f"lr {row['lr']:.4g} {row['images_per_s']:.0f} img/s")
    if cfg.progress == "bar":
        tqdm.write(line)
    elif cfg.progress == "epochs":
        print(line, flush=True)


# --- evaluation --------------------------------------------------------------------------------------------
def to_mm(pred_norm: np.ndarray, meta: dict, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Map normalised predictions back to xyz (inverse eqs. 4.7, 4.8, 4.9) and uvd (eqs. 4.3, 4.4, 4.5)."""
    xyz = denormalise_joints(pred_norm, meta["centre_xyz"], meta["cube"])
    return xyz, camera.xyz_to_uvd(xyz)


def _save_predictions(path: Path, pred: np.ndarray, data: SplitData, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    xyz, uvd = to_mm(pred, data.meta, camera)
    savez(path, normalised=pred, xyz=xyz, uvd=uvd, frame=data.meta["frame"], subject=data.meta["subject"],
          target=data.joints.numpy())
    return xyz, uvd


def evaluate_run(s: Setup, state: LoopState, best_weights: dict | None) -> dict:
    """The best weights on the training, validation and test splits; predictions exported; the mean training pose
    as the floor a run must beat (``require_learning``)."""
    cfg = s.cfg
    result = {"status": state.status, "reason": state.reason, "run_dir": str(s.run.dir), "epochs": state.epoch,
              "epochs_trained": state.trained, "best_epoch": state.best_epoch,
              "best_val_mse": state.best_val if math.isfinite(state.best_val) else None, "final_lr": state.lr,
              "device": str(s.device), "config": cfg.to_dict()}
    if best_weights is None:
        result["reason"] = state.reason or "no finished epoch"
        return result
    s.model.load_state_dict(best_weights)
    mean_pose = s.train_d.joints.numpy().mean(0)
    train_pred = predict(s.model, s.train_d, s.assemble, accel=s.accel)
    result["train_mse"] = normalised_mse(train_pred, s.train_d.joints.numpy())
    val_pred = predict(s.model, s.val_dev, s.assemble, accel=s.accel)
    _save_predictions(s.run.dir / "val_predictions.npz", val_pred, s.val_d, s.camera)
    result["mean_pose_val_mse"] = normalised_mse(np.broadcast_to(mean_pose, val_pred.shape), s.val_d.joints.numpy())
    # Table 4.3's quantity is the per-coordinate MSE; eq. 4.14's loss on the same predictions, for comparison.
    n_joints = val_pred.shape[1]
    result["best_val_loss_eq4_14"] = result["best_val_mse"] * 3 * n_joints * loss_factor("1/(2J)", n_joints)
    floor, ours, what = result["mean_pose_val_mse"], result["best_val_mse"], "validation MSE"
    if cfg.predict_test:
        test_d = _eval_split(cfg, load_split(cfg.data, "test", **s.load), 2)
        pred = predict(s.model, test_d, s.assemble, accel=s.accel)
        xyz, uvd = _save_predictions(s.run.dir / "test_predictions.npz", pred, test_d, s.camera)
        if cfg.target == "pose":  # the kit's format: 14 joints a line
            write_joints_txt(s.run.dir / "test_predictions_uvd.txt", uvd)
        result["test_mean_mm"] = float(joint_errors(xyz, test_d.meta["joints_xyz"]).mean())
        result["test_mse"] = normalised_mse(pred, test_d.joints.numpy())
        mean_xyz = to_mm(np.broadcast_to(mean_pose, pred.shape), test_d.meta, s.camera)[0]
        result["mean_pose_mm"] = float(joint_errors(mean_xyz, test_d.meta["joints_xyz"]).mean())
        floor, ours, what = result["mean_pose_mm"], result["test_mean_mm"], "test error"
    if cfg.require_learning and result["status"] in ("done", "stopped") and not ours < floor:
        result.update(status="not-learned", reason=f"{what} {ours:.5g} is not below the mean training pose's "
                                                   f"{floor:.5g}: the net learned nothing useful (set "
                                                   f"require_learning = false to accept such a run)")
    return result
