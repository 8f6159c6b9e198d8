"""Trained runs outside hpe: load one (:func:`load_run`), or export its network (``hpe export``) to ONNX or
TorchScript with the preprocessing recorded in the model's metadata.

The exported network takes the normalised crop(s) and returns 3J = 42 normalised coordinates; the metadata
(JSON under the key ``hpe``) holds what another runtime needs to reproduce the pre- and post-processing: crop
and input size, cube, camera, RGB handling and statistics, joint names, and the formulas (README "Export").
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hpe import DataError
from hpe.atomic import atomic_path, write_bytes_from
from hpe.config import TrainConfig, config_from_dict
from hpe.crop import CropRules
from hpe.run import RunInfo, open_run
from hpe.train import input_shapes

FORMULAS = {
    "depth": "crop the cube of edge cube_mm around the hand centre (u, v, d): box u -/+ cube/2 fx / d, v -/+ cube/2 "
             "fy / d; depth outside [10, 1500] mm or behind d + cube/2 -> background; nearer than d - cube/2 -> "
             "d - cube/2; resize (nearest, aspect kept, longest side = crop_size) onto a crop_size canvas of "
             "background; d_norm = (depth - d) / (cube/2), background = +1 (eq. 4.6); then nearest resize to "
             "input_size",
    "rgb_standardise": "rgb crop with the same box (bilinear), times the mask (d_norm < 1), minus rgb_mean, divided "
                       "by rgb_std per channel (eqs. 4.10-4.12)",
    "rgb_unit+mask": "rgb crop / 255 with the mask as a 4th channel (rgb_mask hand: d_norm < 1; hand-not-front: "
                     "also d_norm > -1)",
    "crop_rules": "paste: round (short side rounded, offset (size - n) // 2) or floor (floored, size // 2 - n // 2); "
                  "rgb_resize: pil (PIL bilinear) or opencv (cv2 INTER_LINEAR); centre_depth: label (d as given) or "
                  "image (d = the depth image at the centre pixel)",
    "output": "joints_xyz = output.reshape(14, 3) * cube/2 + centre_xyz (mm; y up), centre_xyz = ((u - cx) d / fx, "
              "(cy - v) d / fy, d); uvd = (fx x / z + cx, cy - fy y / z, z)",
}


@dataclass
class TrainedRun:
    model: torch.nn.Module
    cfg: TrainConfig
    preprocess: dict      # the prepared data's crop size, cube, camera, RGB statistics, joint names
    epoch: int
    path: Path | None = None  # the run folder
    info: RunInfo | None = None  # its status (the run-folder contract)


def load_run(run_dir: Path, device: torch.device | str = "cpu", role: str = "--run", allow_unfinished: bool = False,
             **fits) -> TrainedRun:
    """The best weights of a run folder, in eval mode, with the config and preprocessing they were trained with;
    the folder is checked by the run-folder contract (:func:`hpe.run.open_run`) first."""
    from hpe.train import build_model
    path = Path(run_dir) / "best.pt"
    info = open_run(run_dir, role, allow_unfinished, **fits)
    if not path.is_file():
        raise DataError(f"{run_dir} has no weights (missing best.pt): train it first, or give another --run")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if "preprocess" not in saved or "config" not in saved:
        raise DataError(f"{path} was written by an older hpe without its preprocessing record: train the run again")
    cfg = config_from_dict(saved["config"])
    model = build_model(cfg, len(saved["preprocess"]["joint_names"]))
    model.load_state_dict(saved["model"])
    return TrainedRun(model.to(device).eval(), cfg, saved["preprocess"], int(saved["epoch"]), Path(run_dir), info)


def metadata(run: TrainedRun) -> dict:
    cfg, pre = run.cfg, run.preprocess
    names = ["depth", "rgb"] if cfg.inputs == "depth+rgb" else [cfg.inputs]
    status = run.info.status if run.info else "done"
    return {"hpe_run": {"net": cfg.net, "inputs": cfg.inputs, "profile": cfg.profile, "epoch": run.epoch,
                        "status": status, **({"warning": run.info.warning} if run.info and run.info.warning else {})},
            "inputs": [{"name": n, "shape": ["N", *shape]} for n, shape in zip(names, input_shapes(cfg))],
            "output": {"name": "joints", "shape": ["N", 3 * len(pre["joint_names"])], "meaning": "normalised xyz"},
            "crop_size": pre["size"], "input_size": cfg.input_size, "cube_mm": pre["cube_mm"],
            "camera_fx_fy_cx_cy": pre["camera"], "rgb_mode": cfg.rgb_mode, "rgb_mask": cfg.rgb_mask,
            "rgb_mean": pre["rgb_mean"], "rgb_std": pre["rgb_std"], "joint_names": pre["joint_names"],
            "crop_rules": asdict(CropRules.from_attrs(pre)), "formulas": FORMULAS}


@contextlib.contextmanager
def _quiet():
    """The ONNX exporter prints its progress and warns about optional packages: keep the command's output clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: torch.nn.Module, shapes: list[tuple[int, ...]], path: Path, meta: dict | None = None,
                names: list[str] | None = None) -> None:
    """ONNX with a dynamic batch dimension; ``meta`` goes into the model's metadata under ``hpe``."""
    try:
        import onnx
    except ModuleNotFoundError:
        raise DataError("ONNX export needs onnx and onnxscript: pip install 'hpe[export]'") from None
    names = names or (["depth", "rgb"] if len(shapes) == 2 else ["input"])
    args = tuple(torch.zeros(2, *s) for s in shapes)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with _quiet():
        program = torch.onnx.export(model, args, dynamo=True, input_names=names, output_names=["joints"],
                                    dynamic_shapes=tuple({0: batch} for _ in shapes), verbose=False)
    with atomic_path(Path(path)) as tmp:
        program.save(str(tmp))
        if meta is not None:
            proto = onnx.load(str(tmp))
            proto.metadata_props.add(key="hpe", value=json.dumps(meta))
            onnx.save(proto, str(tmp))


def export_torchscript(model: torch.nn.Module, path: Path, meta: dict) -> None:
    with _quiet():
        scripted = torch.jit.script(model)
    # Into memory first: on a full disk torch.jit.save to a file aborts the whole process (SIGABRT).
    write_bytes_from(Path(path), lambda buf: torch.jit.save(scripted, buf, _extra_files={"hpe.json": json.dumps(meta)}))


SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts", ".torchscript")}


def export(run_dir: Path, fmt: str, out: Path, allow_unfinished: bool = False) -> dict:
    """Export a run's network; returns the metadata written with it."""
    if fmt not in SUFFIXES:
        raise ValueError(f"unknown export format '{fmt}' (choose from {', '.join(SUFFIXES)})")
    named = next((name for name, suffixes in SUFFIXES.items() if Path(out).suffix.lower() in suffixes), fmt)
    if named != fmt:  # a .onnx file holding TorchScript would fail far from here
        raise ValueError(f"--out {out} is named like {named} but --format {fmt} was asked for: name it "
                         f"{Path(out).with_suffix(SUFFIXES[fmt][0])} or pass --format {named}")
    run = load_run(run_dir, allow_unfinished=allow_unfinished)
    meta = metadata(run)
    if fmt == "onnx":
        export_onnx(run.model, input_shapes(run.cfg), out, meta, [i["name"] for i in meta["inputs"]])
    elif fmt == "torchscript":
        export_torchscript(run.model, out, meta)
    else:
        raise ValueError(f"unknown export format '{fmt}' (choose from onnx, torchscript)")
    return meta
