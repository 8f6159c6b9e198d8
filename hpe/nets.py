"""Net1-Net9 of tables 4.1 and 4.2 as data, one generic builder, and the fusion architectures of 4.3.3.

A spec is a list like VGG's: an int is a 3x3 conv with that many filters, ``(filters, k)`` a k x k conv,
"M" a max-pooling layer.  Every net then has fc-4096, fc-4096 (ReLU + dropout each) and a 3J tanh output.
Lasagne's numerics are kept: Glorot-uniform weights (gain 1), zero biases, inverted dropout.
Fusion: input fusion is a PoseNet on RGB-D (RGBD-Net), score fusion a weighted average of two nets' outputs
(FusePred-Net: :func:`fuse_scores` on two trained nets, or :class:`JointFusePred` trained as one), feature
fusion the double-stream :class:`FuseNet` with the functions of eqs. 4.15-4.18.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

Spec = list  # list[int | tuple[int, int] | str]

NET_SPECS: dict[str, Spec] = {
    # table 4.1: three pooling layers
    "net1": [32, "M", 64, "M", 128, 128, "M"],
    "net2": [32, "M", 64, "M", 128, 128, 128, "M"],
    "net3": [(32, 7), "M", (64, 5), "M", 128, 128, 128, "M"],
    "net4": [64, "M", 128, "M", 256, 256, 256, "M"],
    "net5": [32, 32, "M", 64, 64, "M", 128, 128, 128, "M"],
    "net6": [32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 128, 128],  # Depth-Net (figure 4.3)
    # table 4.2: four or five pooling layers
    "net7": [32, "M", 64, "M", 128, 128, "M", 128, 128, "M"],
    "net8": [32, "M", 64, "M", 128, 128, "M", 128, 128, "M", 128, 128, "M"],
    "net9": [32, "M", 64, "M", 128, 128, 128, "M", 128, 128, 128, "M"],
}
ALIASES = {"depthnet": "net6", "depth-net": "net6"}
FUSION_FUNCTIONS = ("max", "sum", "cat", "conv")  # eqs. 4.15, 4.16, 4.17, 4.18


def list_nets() -> list[str]:
    return list(NET_SPECS)


def resolve_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in NET_SPECS:
        raise ValueError(f"unknown net '{name}' (choose from {', '.join(list(NET_SPECS) + list(ALIASES))})")
    return key


def num_convs(name: str) -> int:
    return sum(1 for s in NET_SPECS[resolve_name(name)] if s != "M")


def fusion_points(name: str) -> list[str]:
    """Where Fuse-Net may fuse: after any conv layer (conv1..convN) or fc layer (fc1, fc2)."""
    return [f"conv{i}" for i in range(1, num_convs(name) + 1)] + ["fc1", "fc2"]


@dataclass(frozen=True, kw_only=True)
class NetConfig:
    """Everything that fixes a network's shape.  ``width`` scales every conv and fc layer (tests, CPU demo)."""

    name: str = "net6"
    in_channels: int = 1
    input_size: int = 128
    num_joints: int = 14
    width: float = 1.0
    fc_units: int = 4096
    pool: int = 2          # 2: thesis (2x2/2), 3: icip2018 (3x3/3)
    dropout: float = 0.03

    def scaled(self, n: int) -> int:
        return max(1, int(round(n * self.width)))


@dataclass(frozen=True)
class Layer:
    """One step of the flat layer plan; ``fin``/``fout`` are channels (conv) or units (fc, out)."""

    kind: str          # conv | pool | flatten | fc | out
    fin: int = 0
    fout: int = 0
    k: int = 0         # conv kernel size


def layer_plan(cfg: NetConfig) -> list[Layer]:
    """The net as a flat list of layers, with every size worked out (and a clear error if pooling eats the input)."""
    plan, c, s = [], cfg.in_channels, cfg.input_size
    for item in NET_SPECS[resolve_name(cfg.name)]:
        if item == "M":
            s //= cfg.pool
            if s < 1:
                raise ValueError(f"{cfg.name}: input {cfg.input_size}x{cfg.input_size} with {cfg.pool}x{cfg.pool} "
                                 f"pooling shrinks to nothing at pooling layer "
                                 f"{sum(p.kind == 'pool' for p in plan) + 1}")
            plan.append(Layer("pool"))
        else:
            out, k = item if isinstance(item, tuple) else (item, 3)
            plan.append(Layer("conv", c, cfg.scaled(out), k))
            c = cfg.scaled(out)
    fc = cfg.scaled(cfg.fc_units)
    return plan + [Layer("flatten", c * s * s), Layer("fc", c * s * s, fc), Layer("fc", fc, fc),
                   Layer("out", fc, 3 * cfg.num_joints)]


SCORE = "score"  # fusion_layer of the joint FusePred-Net: two whole nets, fused after their outputs


def check_net(name: str, inputs: str = "depth", fusion_layer: str = "conv4", input_size: int | None = None,
              pool: int = 2) -> None:
    """Raise ValueError if the net, its Fuse-Net fusion layer or (given ``input_size``) its pooling is impossible."""
    resolve_name(name)
    if inputs == "depth+rgb" and fusion_layer not in fusion_points(name) + [SCORE]:
        raise ValueError(f"fusion layer '{fusion_layer}' out of range for {name} "
                         f"(choose from {', '.join(fusion_points(name) + [SCORE])})")
    if input_size is not None:
        layer_plan(NetConfig(name=name, input_size=input_size, pool=pool))


def _module(layer: Layer, cfg: NetConfig, fin: int | None = None, dropout: bool = True) -> nn.Module:
    if layer.kind == "conv":
        return nn.Sequential(nn.Conv2d(fin or layer.fin, layer.fout, layer.k, padding=layer.k // 2),
                             nn.ReLU(inplace=True))
    if layer.kind == "pool":
        return nn.MaxPool2d(cfg.pool, cfg.pool)
    if layer.kind == "flatten":
        return nn.Flatten()
    if layer.kind == "fc":
        parts = [nn.Linear(fin or layer.fin, layer.fout), nn.ReLU(inplace=True)]
        return nn.Sequential(*parts, nn.Dropout(cfg.dropout)) if dropout else nn.Sequential(*parts)
    return nn.Sequential(nn.Linear(fin or layer.fin, layer.fout), nn.Tanh())


def lasagne_init(module: nn.Module) -> None:
    """Glorot-uniform weights with gain 1 and zero biases, Lasagne's defaults for Conv2DLayer/DenseLayer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=1.0)
            nn.init.zeros_(m.bias)


class PoseNet(nn.Module):
    """A single-stream net: Depth-Net, RGB-Net or RGBD-Net (input fusion) depending on ``in_channels``."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        plan = layer_plan(cfg)
        cut = next(i for i, p in enumerate(plan) if p.kind == "flatten")
        self.features = nn.Sequential(*[_module(p, cfg) for p in plan[:cut]])
        self.regressor = nn.Sequential(*[_module(p, cfg) for p in plan[cut:]])
        lasagne_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.features(x))


class Fusion(nn.Module):
    """Fuse two feature maps (or fc vectors) of equal shape, depth ``a`` and RGB ``b``.

    ``style`` decides only fc-level fusion: ``thesis`` applies eq. 4.17/4.18 literally (interleaved channels;
    conv = a linear layer 2D -> D), ``author`` does what the author's code does (RGB then depth; conv = one
    1-D convolution filter over the two streams, 3 parameters).
    """

    def __init__(self, function: str, channels: int, spatial: bool, style: str = "thesis"):
        super().__init__()
        if function not in FUSION_FUNCTIONS:
            raise ValueError(f"unknown fusion function '{function}' (choose from {', '.join(FUSION_FUNCTIONS)})")
        self.function, self.author_fc = function, style == "author" and not spatial
        if function == "conv":
            if spatial:  # eq. 4.18: D filters of 1x1x2D over the concatenation
                self.reduce = nn.Conv2d(2 * channels, channels, 1)
            elif self.author_fc:  # one filter of size 1 over the two stacked streams: w_rgb, w_depth and a bias
                self.reduce = nn.Conv1d(2, 1, 1)
            else:  # eq. 4.18 on vectors: D filters of 2D weights, i.e. a linear layer
                self.reduce = nn.Linear(2 * channels, channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.function == "max":
            return torch.maximum(a, b)  # eq. 4.15
        if self.function == "sum":
            return a + b  # eq. 4.16
        if self.author_fc:
            y = torch.stack((b, a), dim=1)  # (N, 2, D): the RGB stream, then the depth stream
            return self.reduce(y).squeeze(1) if self.function == "conv" else y.flatten(1)
        # eq. 4.17 interleaves the channels: y_{2k} = a_k, y_{2k-1} = b_k (1-based)
        y = torch.stack((b, a), dim=2).flatten(1, 2)
        return self.reduce(y) if self.function == "conv" else y  # eq. 4.18: conv(y_cat, f)

    def out_channels(self, channels: int) -> int:
        return 2 * channels if self.function == "cat" else channels


class FuseNet(nn.Module):
    """Double-stream fusion (figure 4.6): a depth and an RGB stream up to layer ``at``, fused, one shared trunk.

    The pooling after conv L is not applied in the streams but once after the merge.  At fc1/fc2 the ``thesis``
    style keeps each stream's dropout before fusing; the ``author`` style fuses before dropout and applies one
    dropout after the merge, as the author's code does.
    """

    def __init__(self, depth_cfg: NetConfig, rgb_channels: int, at: str = "conv4", function: str = "conv",
                 style: str = "thesis"):
        super().__init__()
        check_net(depth_cfg.name, "depth+rgb", at)
        self.cfg, self.at, self.function = depth_cfg, at, function
        plan = layer_plan(depth_cfg)
        kind, n = ("conv", int(at[4:])) if at.startswith("conv") else ("fc", int(at[2:]))
        cut = [i for i, p in enumerate(plan) if p.kind == kind][n - 1] + 1
        fused = plan[cut - 1]
        author_fc = style == "author" and kind == "fc"
        stream = lambda layers: nn.Sequential(*[  # noqa: E731
            _module(p, depth_cfg, dropout=not (author_fc and i == len(layers) - 1)) for i, p in enumerate(layers)])
        self.depth_stream = stream(plan[:cut])
        self.rgb_stream = stream([Layer("conv", rgb_channels, plan[0].fout, plan[0].k)] + plan[1:cut])
        self.fusion = Fusion(function, fused.fout, spatial=kind == "conv", style=style)
        self.after = nn.Dropout(depth_cfg.dropout) if author_fc else nn.Identity()
        # Concatenation doubles the input of the first weighted layer after the merge.
        grow = self.fusion.out_channels(fused.fout) // fused.fout
        trunk, first = [], True
        for p in plan[cut:]:
            weighted = p.kind in ("conv", "fc", "out")
            trunk.append(_module(p, depth_cfg, fin=p.fin * grow if weighted and first else None))
            first = first and not weighted
        self.trunk = nn.Sequential(*trunk)
        lasagne_init(self)

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.after(self.fusion(self.depth_stream(depth), self.rgb_stream(rgb))))


# --- score fusion (FusePred-Net, figure 4.5) ---------------------------------------------------------------
class JointFusePred(nn.Module):
    """FusePred-Net trained as one net (the author's ``score_fusing``, ``sum``): a Depth-Net and an RGB-Net with no
    shared layer, whose output is the weighted average w * depth + (1 - w) * rgb; the loss is taken on that
    average, so both streams learn together from scratch.  The thesis (4.3.3) trains the two nets independently
    and averages afterwards (:func:`fuse_scores`)."""

    def __init__(self, depth_cfg: NetConfig, rgb_channels: int, w: float = 0.5):
        super().__init__()
        self.w = w
        self.depth_net = PoseNet(replace(depth_cfg, in_channels=1))
        self.rgb_net = PoseNet(replace(depth_cfg, in_channels=rgb_channels))

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.w * self.depth_net(depth) + (1 - self.w) * self.rgb_net(rgb)


SCORE_WEIGHTS = ("fixed", "error", "learned")


def score_fusion_weights(kind: str, depth_val: np.ndarray, rgb_val: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-output weights w (J, 3) of Depth-Net in w * depth + (1 - w) * rgb, from the validation predictions.

    fixed: 0.5 everywhere (the thesis); error: w_j = e_rgb_j / (e_depth_j + e_rgb_j) from each net's mean error
    per joint (the thesis's suggestion); learned: per-output least squares, clipped to [0, 1]."""
    if kind == "fixed":
        return np.full(depth_val.shape[1:], 0.5)
    if kind == "error":
        ea = np.linalg.norm(depth_val - target, axis=-1).mean(0)
        eb = np.linalg.norm(rgb_val - target, axis=-1).mean(0)
        return np.repeat((eb / (ea + eb))[:, None], 3, axis=1)
    if kind == "learned":
        d = (depth_val - rgb_val).reshape(len(depth_val), -1)
        w = ((target - rgb_val).reshape(len(depth_val), -1) * d).sum(0) / np.maximum((d * d).sum(0), 1e-12)
        return np.clip(w, 0, 1).reshape(depth_val.shape[1:])
    raise ValueError(f"unknown score-fusion weights '{kind}' (choose from {', '.join(SCORE_WEIGHTS)})")


def fuse_scores(w: np.ndarray, depth_pred: np.ndarray, rgb_pred: np.ndarray) -> np.ndarray:
    """FusePred-Net's output: the per-output weighted average of the two nets' predictions."""
    return w * depth_pred + (1 - w) * rgb_pred


# --- counting ----------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def table_parameter_count(name: str, input_size: int = 128, num_joints: int = 14, pool: int = 2,
                          in_channels: int = 1, fc_units: int = 4096) -> int:
    """Parameters of a table 4.1/4.2 net from the formula: sum(k^2 cin cout + cout) over convs + the fc layers."""
    total, c, s = 0, in_channels, input_size
    for item in NET_SPECS[resolve_name(name)]:
        if item == "M":
            s //= pool
            continue
        out, k = item if isinstance(item, tuple) else (item, 3)
        total += k * k * c * out + out
        c = out
    flat = c * s * s
    fc = flat * fc_units + fc_units + fc_units * fc_units + fc_units  # fc1, fc2 (weights + biases)
    return total + fc + fc_units * 3 * num_joints + 3 * num_joints


def forward_macs(cfg: NetConfig) -> int:
    """Multiply-accumulates of one image's forward pass (convs and fc layers; ReLU, pooling and bias ignored).

    Training costs about three times this (forward, gradient w.r.t. inputs, gradient w.r.t. weights); the
    benchmark divides images/s by it to report the achieved TFLOP/s against the device's peak.
    """
    total, s = 0, cfg.input_size
    for layer in layer_plan(cfg):
        if layer.kind == "pool":
            s //= cfg.pool
        elif layer.kind == "conv":
            total += s * s * layer.k * layer.k * layer.fin * layer.fout
        elif layer.kind in ("fc", "out"):
            total += layer.fin * layer.fout
    return total
