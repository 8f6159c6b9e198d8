"""Experiment files (one per thesis table row / figure curve) and compute presets, both small TOML files.

A run's config = TrainConfig defaults < experiment file < preset (compute scale: width, input size, epochs)
< ``--set key=value`` overrides.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path


def read_toml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing experiment/preset file: {path}")
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return doc.get("train", doc)


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values are Python literals where they parse (numbers, True, None), else strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like key=value")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def experiment_config(experiment: Path | None, preset: Path | None = None, overrides: dict | None = None) -> dict:
    cfg: dict = {}
    if experiment is not None:
        cfg.update(read_toml(experiment))
    if preset is not None:
        cfg.update(read_toml(preset))
    cfg.update(overrides or {})
    return cfg
