"""A run's configuration: one chain, validated when it is built.

    TrainConfig defaults < profile (hpe/profiles/NAME.toml) < experiment file < compute preset < --set key=value

The profile comes from the prepared data file (``hpe prep`` records it); naming another one is refused.  Every
value is checked by type and range whichever layer it comes from, and an error names the key, the value and
the layer.  :class:`TrainConfig` then holds plain resolved values: nothing is left to be asked later.
"""
from __future__ import annotations

import ast
import math
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Literal

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from hpe import DataError

ProfileName = Literal["thesis", "icip2018"]
Inputs = Literal["depth", "rgb", "rgbd", "depth+rgb"]   # depth+rgb: the double-stream Fuse-Net
FusionFunction = Literal["max", "sum", "cat", "conv"]   # eqs. 4.15, 4.16, 4.17, 4.18
FcFusion = Literal["thesis", "author"]
LossScale = Literal["1/(2J)", "1/2"]
OnPlateau = Literal["halve", "halve-restore-rewind"]
RgbMode = Literal["standardise", "unit+mask"]
RgbMask = Literal["hand", "hand-not-front"]
Precision = Literal["fp32", "bf16"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
Progress = Literal["bar", "epochs", "none"]
Target = Literal["pose", "centre"]
PROFILES = typing.get_args(ProfileName)


def _v(default, *, lo=None, lo_open=False, hi=None, hi_open=False):
    """A field with its valid range (inclusive unless ``*_open``)."""
    return field(default=default, metadata={"lo": lo, "lo_open": lo_open, "hi": hi, "hi_open": hi_open})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.  Defaults are the thesis profile's."""

    data: str = "data/synthetic-thesis.h5"
    out: str = "results/runs/depthnet"
    profile: ProfileName = "thesis"
    # network (tables 4.1/4.2, figures 4.3-4.6)
    net: str = "net6"
    inputs: Inputs = "depth"
    fusion_layer: str = "conv4"        # Fuse-Net only: conv1..convN, fc1, fc2; score: FusePred-Net trained jointly
    fusion: FusionFunction = "conv"
    fc_fusion: FcFusion = "thesis"     # how fc1/fc2 fusion is built (profile)
    width: float = _v(1.0, lo=0, lo_open=True)
    fc_units: int = _v(4096, lo=1)
    input_size: int = _v(128, lo=8)    # the prepared crop size unless set
    pool: int = _v(2, lo=2)            # max-pooling size = stride (profile)
    dropout: float = _v(0.03, lo=0, hi=1, hi_open=True)
    # optimisation (4.4.3)
    lr: float = _v(0.01, lo=0, lo_open=True)
    momentum: float = _v(0.9, lo=0, hi=1)
    nesterov: bool = False
    batch_size: int = _v(128, lo=1)
    loss_scale: LossScale = "1/(2J)"
    max_epochs: int = _v(100, lo=1)
    patience: int = _v(5, lo=1)
    max_halvings: int = _v(5, lo=0)
    on_plateau: OnPlateau = "halve"
    # data handling (profile) and augmentation
    clip_joints: bool = False
    rgb_mode: RgbMode = "standardise"
    rgb_mask: RgbMask = "hand"
    centre_jitter_mm: float = _v(0.0, lo=0, hi=150)  # train on crops whose centre moved by up to ~2x this (augment.py)
    scale_jitter: float = _v(0.0, lo=0, hi=0.5)  # train on cubes of (1 +- this) x cube: smaller / larger hands
    target: Target = "pose"            # centre: regress the palm centre only (a centre-refinement net for predict)
    # run
    seed: int = _v(0, lo=0)
    device: str = "auto"
    deterministic: bool = False
    limit_train: int | None = _v(None, lo=1)        # only the first N frames of each split (dry runs, tests)
    divergence_factor: float = _v(100.0, lo=1, lo_open=True)
    require_learning: bool = True      # a run no better than the mean training pose is not "done"
    progress: Progress = "bar"
    predict_test: bool = True
    checkpoint_interval_s: float = _v(30.0, lo=0)
    tensorboard: str | None = None     # a folder: log.csv's per-epoch scalars for TensorBoard (hpe/tracking.py)
    # fast path (fp32 eager is the reference); README "Speed"
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: CompileMode = "default"
    tf32: bool = False
    cudnn_benchmark: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


# Keys that change how a run is executed, not what it computes: a resume may change them.
RUNTIME_KEYS = frozenset({"data", "out", "device", "progress", "checkpoint_interval_s", "tensorboard"})


# --- validation --------------------------------------------------------------------------------------------
def _type_error(value, expected: str) -> str:
    return f"expected {expected}, got {type(value).__name__} {value!r}"


def check_value(cls, name: str, value):
    """``value`` converted to field ``name``'s type, or ValueError saying what is wrong (without the key)."""
    f = {f.name: f for f in fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(_type_error(value, "a value"))
    if typing.get_origin(hint) is typing.Union or type(hint).__name__ == "UnionType":
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value not in choices or type(value) is not type(choices[0]):
            raise ValueError(f"must be one of {', '.join(map(str, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(_type_error(value, "true or false"))
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(_type_error(value, "an integer"))
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(_type_error(value, "a number"))
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(_type_error(value, "a string"))
        return value
    m = f.metadata
    if m.get("lo") is not None and (value <= m["lo"] if m["lo_open"] else value < m["lo"]):
        raise ValueError(f"must be {'>' if m['lo_open'] else '>='} {m['lo']}")
    if m.get("hi") is not None and (value >= m["hi"] if m["hi_open"] else value > m["hi"]):
        raise ValueError(f"must be {'<' if m['hi_open'] else '<='} {m['hi']}")
    return value


def validate_layer(cls, layer: dict, source: str) -> dict:
    """Check one layer's keys and values; errors name the source, key and value."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(layer) - known)
    if unknown:
        raise ValueError(f"{source}: unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    out = {}
    for k, v in layer.items():
        try:
            out[k] = check_value(cls, k, v)
        except ValueError as exc:
            raise ValueError(f"{source}: {k} = {v!r}: {exc}") from None
    return out


def merge(cls, layers: list[tuple[str, dict]]):
    """Validated ``cls`` from (source, dict) layers, later layers winning."""
    values: dict = {}
    for source, layer in layers:
        values.update(validate_layer(cls, layer, source))
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
               and f.name not in values]
    if missing:
        raise ValueError(f"missing config keys: {', '.join(missing)}")
    return cls(**values)


# --- files -------------------------------------------------------------------------------------------------
def read_toml(path: Path) -> dict:
    """A TOML file as a dict, or one error line naming it."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder: give an experiment/preset .toml file")
    if not path.is_file():
        raise FileNotFoundError(f"missing experiment/preset file: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:  # e.g. the prepared .h5 given where the experiment file goes
        raise ValueError(f"{path} is not a text file: give an experiment/preset .toml file (a prepared .h5 goes "
                         f"with --data)") from None


def train_section(path: Path) -> dict:
    """The ``[train]`` table of an experiment or preset file (or the whole file if it has none)."""
    doc = read_toml(path)
    return doc.get("train", doc)


def profile_section(name: str, section: str) -> dict:
    """The ``[section]`` of profile ``name`` (shipped in hpe/profiles/)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile '{name}' (choose from {', '.join(PROFILES)})")
    text = resources.files("hpe").joinpath("profiles", f"{name}.toml").read_text()
    return tomllib.loads(text)[section]


def parse_overrides(items: list[str] | None) -> dict:
    """``key=value`` pairs from the command line: Python literals where they parse (numbers, True, None, 'x'),
    ``true``/``false`` as booleans, anything else as a string (which validation then judges)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set '{item}' must look like key=value")
        k, v = (s.strip() for s in item.split("=", 1))
        if v.lower() in ("true", "false"):
            out[k] = v.lower() == "true"
            continue
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def user_layers(experiment: Path | None = None, preset: Path | None = None,
                overrides: dict | None = None) -> list[tuple[str, dict]]:
    """The layers a user gives: experiment file < compute preset < --set."""
    layers = []
    if experiment is not None:
        layers.append((str(experiment), train_section(experiment)))
    if preset is not None:
        layers.append((str(preset), train_section(preset)))
    if overrides:
        layers.append(("--set", dict(overrides)))
    return layers


def build_train_config(layers: list[tuple[str, dict]]) -> TrainConfig:
    """Resolve a run's config: validate the user's layers, read the data file's profile and crop size, put the
    profile under the user's layers and check what depends on several keys."""
    from hpe.dataset import open_prepared
    from hpe.nets import check_net
    from hpe.train import pick_device
    for source, layer in layers:
        validate_layer(TrainConfig, layer, source)
    user = {k: v for _, layer in layers for k, v in layer.items()}
    pick_device(user.get("device", "auto"))
    check_net(user.get("net", "net6"), user.get("inputs", "depth"), user.get("fusion_layer", "conv4"))
    data = user.get("data", TrainConfig.data)
    info = open_prepared(data)
    prof = user.get("profile", info.profile)
    if prof != info.profile:
        raise ValueError(f"{data} was prepared with profile '{info.profile}' but the config asks for '{prof}': "
                         f"prepare the data with --profile {prof}, or drop 'profile' to use the data's")
    base = {"profile": prof, "input_size": info.size}
    cfg = merge(TrainConfig, [("profile " + prof, {**profile_section(prof, "train"), **base}), *layers])
    check_net(cfg.net, cfg.inputs, cfg.fusion_layer, cfg.input_size, cfg.pool)
    return cfg


def config_from_dict(d: dict) -> TrainConfig:
    """A TrainConfig from a resolved dict (a checkpoint's or config.json's), validated but not re-resolved."""
    try:
        return merge(TrainConfig, [("saved config", d)])
    except ValueError as exc:
        raise DataError(f"{exc} (written by another hpe version?)") from None


FUSEPRED_TRAINING = ("independent", "joint")


def fusepred_training(experiment: Path, profile: str) -> str:
    """The experiment file's ``[fusepred] training`` for ``profile``: a name, or a table of one name per profile
    (fig4.7/fusepred.toml: independent for thesis, joint for icip2018)."""
    choice = read_toml(experiment).get("fusepred", {}).get("training", "independent")
    if isinstance(choice, dict):
        if profile not in choice:
            raise ValueError(f"{experiment}: [fusepred] training names no choice for profile '{profile}' "
                             f"(has: {', '.join(choice)})")
        choice = choice[profile]
    if choice not in FUSEPRED_TRAINING:
        raise ValueError(f"{experiment}: [fusepred] training = {choice!r}: must be one of "
                         f"{', '.join(FUSEPRED_TRAINING)}")
    return choice
