"""Net1-Net9 of tables 4.1 and 4.2 as data, one generic builder, and the fusion architectures of 4.3.3.

A spec is a list like VGG's: an int is a 3x3 conv with that many filters, ``(filters, k)`` a k x k conv,
"M" a max-pooling layer.  Every net then has fc-4096, fc-4096 (ReLU + dropout each) and a 3J tanh output.
Lasagne's numerics are kept: Glorot-uniform weights (gain 1), zero biases, inverted dropout.
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
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


def _layers(cfg: NetConfig) -> list[tuple]:
    """The flat layer plan: ("conv", cin, cout, k) / ("pool",) / ("fc", fin, fout) / ("out", fin, 3J)."""
    plan, c, s = [], cfg.in_channels, cfg.input_size
    for item in NET_SPECS[resolve_name(cfg.name)]:
        if item == "M":
            s //= cfg.pool
            if s < 1:
                raise ValueError(f"{cfg.name}: input {cfg.input_size}x{cfg.input_size} with {cfg.pool}x{cfg.pool} "
                                 f"pooling shrinks to nothing at pooling layer {sum(p[0] == 'pool' for p in plan) + 1}")
            plan.append(("pool",))
        else:
            out, k = item if isinstance(item, tuple) else (item, 3)
            plan.append(("conv", c, cfg.scaled(out), k))
            c = cfg.scaled(out)
    fc = cfg.scaled(cfg.fc_units)
    plan += [("flatten", c * s * s), ("fc", c * s * s, fc), ("fc", fc, fc), ("out", fc, 3 * cfg.num_joints)]
    return plan


def _module(layer: tuple, cfg: NetConfig, fin: int | None = None) -> nn.Module:
    kind = layer[0]
    if kind == "conv":
        _, cin, cout, k = layer
        return nn.Sequential(nn.Conv2d(fin or cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))
    if kind == "pool":
        return nn.MaxPool2d(cfg.pool, cfg.pool)
    if kind == "flatten":
        return nn.Flatten()
    if kind == "fc":
        _, a, b = layer
        return nn.Sequential(nn.Linear(fin or a, b), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout))
    _, a, b = layer
    return nn.Sequential(nn.Linear(fin or a, b), nn.Tanh())


def lasagne_init(module: nn.Module) -> None:
    """Glorot-uniform weights with gain 1 and zero biases, Lasagne's defaults for Conv2DLayer/DenseLayer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=1.0)
            nn.init.zeros_(m.bias)


class PoseNet(nn.Module):
    """A single-stream net: Depth-Net, RGB-Net or RGBD-Net depending on ``in_channels``."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        plan = _layers(cfg)
        cut = next(i for i, p in enumerate(plan) if p[0] == "flatten")
        self.features = nn.Sequential(*[_module(p, cfg) for p in plan[:cut]])
        self.regressor = nn.Sequential(*[_module(p, cfg) for p in plan[cut:]])
        lasagne_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.features(x))


class Fusion(nn.Module):
    """Fuse two feature maps (or vectors) of equal shape: max (4.15), sum (4.16), cat (4.17), conv (4.18)."""

    def __init__(self, function: str, channels: int, spatial: bool):
        super().__init__()
        if function not in FUSION_FUNCTIONS:
            raise ValueError(f"unknown fusion function '{function}' (choose from {', '.join(FUSION_FUNCTIONS)})")
        self.function = function
        if function == "conv":  # D filters of 1x1x2D (a linear layer 2D -> D for fc features)
            self.reduce = nn.Conv2d(2 * channels, channels, 1) if spatial else nn.Linear(2 * channels, channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.function == "max":
            return torch.maximum(a, b)
        if self.function == "sum":
            return a + b
        # Eq. 4.17 interleaves the channels: y_{2k} = a_k, y_{2k-1} = b_k.
        y = torch.stack((b, a), dim=2).flatten(1, 2)
        return self.reduce(y) if self.function == "conv" else y

    def out_channels(self, channels: int) -> int:
        return 2 * channels if self.function == "cat" else channels


def fusion_points(name: str) -> list[str]:
    """Where Fuse-Net may fuse: after any conv layer (conv1..convN) or fc layer (fc1, fc2)."""
    return [f"conv{i}" for i in range(1, num_convs(name) + 1)] + ["fc1", "fc2"]


class FuseNet(nn.Module):
    """Double-stream fusion (figure 4.6): a depth and an RGB stream up to layer ``at``, fused, one shared trunk.

    The pooling after conv L is not applied in the streams but once after the merge.
    """

    def __init__(self, depth_cfg: NetConfig, rgb_channels: int, at: str = "conv4", function: str = "conv"):
        super().__init__()
        points = fusion_points(depth_cfg.name)
        if at not in points:
            raise ValueError(f"fusion layer '{at}' out of range for {depth_cfg.name} (choose from {', '.join(points)})")
        self.cfg, self.at, self.function = depth_cfg, at, function
        plan = _layers(depth_cfg)
        kind, n = ("conv", int(at[4:])) if at.startswith("conv") else ("fc", int(at[2:]))
        seen, cut = 0, None
        for i, p in enumerate(plan):
            if p[0] == kind:
                seen += 1
                if seen == n:
                    cut = i + 1
                    break
        layer = plan[cut - 1]
        channels = layer[2]
        rgb_first = ("conv", rgb_channels) + plan[0][2:]
        self.depth_stream = nn.Sequential(*[_module(p, depth_cfg) for p in plan[:cut]])
        self.rgb_stream = nn.Sequential(*[_module(p, depth_cfg) for p in [rgb_first] + plan[1:cut]])
        self.fusion = Fusion(function, channels, spatial=kind == "conv")
        # Concatenation doubles the input of the first weighted layer after the merge.
        grow = self.fusion.out_channels(channels) // channels
        trunk, first = [], True
        for p in plan[cut:]:
            weighted = p[0] in ("conv", "fc", "out")
            trunk.append(_module(p, depth_cfg, fin=p[1] * grow if weighted and first else None))
            first = first and not weighted
        self.trunk = nn.Sequential(*trunk)
        lasagne_init(self)

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.fusion(self.depth_stream(depth), self.rgb_stream(rgb)))


def build_net(cfg: NetConfig) -> PoseNet:
    return PoseNet(cfg)


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
    return total + flat * fc_units + fc_units + fc_units * fc_units + fc_units + fc_units * 3 * num_joints + 3 * num_joints


def forward_macs(cfg: NetConfig) -> int:
    """Multiply-accumulates of one image's forward pass (convs and fc layers; ReLU, pooling and bias ignored).

    Training costs about three times this (forward, gradient w.r.t. inputs, gradient w.r.t. weights); the
    benchmark divides images/s by it to report the achieved TFLOP/s against the device's peak.
    """
    total, s = 0, cfg.input_size
    for layer in _layers(cfg):
        if layer[0] == "pool":
            s //= cfg.pool
        elif layer[0] == "conv":
            _, cin, cout, k = layer
            total += s * s * k * k * cin * cout
        elif layer[0] in ("fc", "out"):
            total += layer[1] * layer[2]
    return total
