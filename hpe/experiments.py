"""The experiments layer: what the ``reproduce-*`` targets assemble from trained runs.

Table 4.3 (:func:`table43`), FusePred-Net score fusion from its experiment file (:func:`fusepred`), the Fuse-Net
fusion sweep (:func:`sweep_fusion`), comparison figures 4.7-4.9 and the leaderboard (:func:`compare`), and the
qualitative figures 4.10/4.11 (:func:`qualitative`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from hpe import DataError
from hpe.atomic import savez, write_json
from hpe.camera import Camera
from hpe.config import fusepred_training, read_toml
from hpe.evaluate import collect, load_ground_truth, summaries, write_results
from hpe.nets import SCORE_WEIGHTS, fuse_scores, fusion_points, score_fusion_weights
from hpe.nyu import write_joints_txt
from hpe.plots import figure_compare, figure_qualitative, figure_table, with_ext
from hpe.output import replacing
from hpe.run import load_result, open_run

# Table 4.3 as published (normalised MSE per coordinate, real NYU, thesis profile): (training, validation).
THESIS_TABLE43 = {"net1": (0.00366, 0.00447), "net2": (0.00359, 0.00419), "net3": (0.00353, 0.00411),
                  "net4": (0.00341, 0.00364), "net5": (0.00235, 0.00325), "net6": (0.00183, 0.00242),
                  "net7": (0.00384, 0.00434), "net8": (0.00415, 0.00462), "net9": (0.00393, 0.00439)}
TABLE43_NOTE = ("Errors are hpe's normalised MSE per coordinate: the mean of (f(I) - y)^2 over frames and the 3J "
                "normalised outputs, which is how the thesis describes table 4.3. Eq. 4.14's loss on the same "
                "predictions is 1.5 times that (1/(2J) times the sum over 3J outputs) and is shown beside it.")


def table43(runs: list[tuple[str, Path]], prefix: Path, allow_unfinished: bool = False,
            width: str = "text") -> tuple[list[str], list[list[str]]]:
    """Table 4.3: training and validation error of Net1-Net9, ours beside the thesis's.  Each run must be the net
    its label names (a Net6 run labelled net1 is refused), each label given once."""
    header = ["ConvNet", "Training MSE", "Validation MSE", "Validation loss (eq. 4.14)", "thesis training",
              "thesis validation"]
    names = [n for n, _ in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--method {', '.join(twice)} given twice: give each net one run")
    rows, notes = [], []
    for name, run in runs:
        if name not in THESIS_TABLE43:
            raise ValueError(f"--method {name}={run}: the label must be a net of table 4.3 (net1 ... net9)")
        info = open_run(run, f"--method {name}=", allow_unfinished, net=name)
        notes += [info.warning] if info.warning else []
        r = load_result(run)
        if r.get("best_val_mse") is None or r.get("train_mse") is None:
            raise DataError(f"{run}: the run has no validation error ({r.get('status')}: {r.get('reason')})")
        thesis = THESIS_TABLE43.get(name, (float("nan"), float("nan")))
        rows.append([name.capitalize(), f"{r['train_mse']:.5f}", f"{r['best_val_mse']:.5f}",
                     f"{1.5 * r['best_val_mse']:.5f}", f"{thesis[0]:.5f}", f"{thesis[1]:.5f}"])
    title = "Table 4.3: normalised MSE per coordinate, ours and the thesis's (real NYU)"
    figure_table(rows, header, prefix, title + "".join(f"\nwarning: {n}" for n in notes), width)
    return header, rows


def _layers_profile(layers: list[tuple[str, dict]], *runs: Path | None) -> str:
    """The profile a FusePred run is for: what --set profile=, the data file and the given runs say, which must
    agree (a thesis FusePred of icip2018 runs would be neither); the thesis when none says."""
    import json

    from hpe.dataset import open_prepared
    merged = {k: v for _, layer in layers for k, v in layer.items()}
    said = {}
    if "profile" in merged:
        said["--set profile"] = merged["profile"]
    if "data" in merged:
        said[f"--data {merged['data']}"] = open_prepared(merged["data"]).profile
    for run in runs:
        if run is not None and (Path(run) / "config.json").is_file():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                said[f"run {run}"] = json.loads((Path(run) / "config.json").read_text())["preprocess"]["profile"]
    if len(set(said.values())) > 1:
        raise ValueError("the profiles disagree: " + ", ".join(f"{k} says {v}" for k, v in said.items())
                         + "; give runs and data of one profile")
    return next(iter(said.values()), "thesis")


def fusepred(experiment: Path, depth_run: Path | None, rgb_run: Path | None, out: Path, weights: str | None = None,
             training: str | None = None, layers: list[tuple[str, dict]] | None = None,
             allow_unfinished: bool = False, resume: bool = False, restart_if_changed: bool = False) -> dict:
    """FusePred-Net (figure 4.5) as the experiment file's ``[fusepred] training`` says for the profile (or
    ``training``): ``independent`` (thesis 4.3.3) fuses the trained Depth-Net and RGB-Net, ``joint`` (the author's
    code) trains one net of both streams on the loss of their average (:func:`fusepred_joint`)."""
    layers = layers or []
    training = training or fusepred_training(experiment, _layers_profile(layers, depth_run, rgb_run))
    if training == "joint":
        return fusepred_joint(experiment, out, layers, resume, restart_if_changed)
    if depth_run is None or rgb_run is None:
        raise ValueError("FusePred-Net trained independently fuses two runs: give --depth-run and --rgb-run")
    # Independent fusion trains nothing: a training setting would be silently ignored, so it is refused; the
    # profile (checked above) and the data (checked against the runs' fingerprint) are what Make passes to both.
    ignored = sorted({k for source, layer in layers if source == "--set" for k in layer} - {"profile", "progress"})
    if ignored:
        raise ValueError(f"--set {', '.join(ignored)}: FusePred-Net trained independently (thesis 4.3.3) fuses the "
                         f"two trained runs and trains nothing; set it when training them, or give --training joint")
    data = next((layer["data"] for _, layer in reversed(layers) if "data" in layer), None)
    return fusepred_independent(experiment, depth_run, rgb_run, out, weights, allow_unfinished, data)


def fusepred_joint(experiment: Path, out: Path, layers: list[tuple[str, dict]], resume: bool = False,
                   restart_if_changed: bool = False) -> dict:
    """Train the joint FusePred-Net (:class:`hpe.nets.JointFusePred`) from the experiment file's [train] section
    (inputs = depth+rgb, fusion_layer = score) under the user's layers; ``resume`` / ``restart_if_changed`` as
    for :func:`hpe.train.train` (an existing run is otherwise refused, never silently replaced)."""
    from hpe.config import build_train_config, train_section
    from hpe.train import train
    section = train_section(experiment)
    if section.get("inputs") != "depth+rgb" or section.get("fusion_layer") != "score":
        raise ValueError(f"{experiment}: the joint FusePred-Net needs [train] inputs = \"depth+rgb\" and "
                         f"fusion_layer = \"score\"")
    if not any("data" in layer for _, layer in layers):
        raise ValueError("the joint FusePred-Net is trained: give the prepared data with --data")
    cfg = build_train_config([(str(experiment), section), *layers, ("fusepred", {"out": str(out)})])
    return train(cfg, resume=resume, restart_if_changed=restart_if_changed, command="fusepred")


def fusepred_independent(experiment: Path, depth_run: Path, rgb_run: Path, out: Path,
                         weights: str | None = None, allow_unfinished: bool = False, data: Path | None = None) -> dict:
    """FusePred-Net (figure 4.5): w * Depth-Net + (1 - w) * RGB-Net per output, ``w`` as the experiment file's
    ``[fusepred] weights`` says (``weights`` overrides it): fixed 0.5 (thesis), error or learned.  ``data``: the
    prepared file the runs must have been trained on (refused otherwise)."""
    section = read_toml(experiment).get("fusepred", {})
    kind = weights or section.get("weights", "fixed")
    if kind not in SCORE_WEIGHTS:
        raise ValueError(f"{experiment}: [fusepred] weights = {kind!r}: must be one of {', '.join(SCORE_WEIGHTS)}")
    infos = [open_run(depth_run, "--depth-run", allow_unfinished, data, inputs="depth", target="pose"),
             open_run(rgb_run, "--rgb-run", allow_unfinished, data, inputs="rgb", target="pose")]
    if infos[0].fingerprint != infos[1].fingerprint:
        raise DataError(f"{depth_run} and {rgb_run} were trained on different data (fingerprints "
                        f"{infos[0].fingerprint} and {infos[1].fingerprint}): train both on the same prepared file")
    load = {}
    for run in (depth_run, rgb_run):
        for split in ("val", "test"):
            path = Path(run) / f"{split}_predictions.npz"
            if not path.is_file():
                raise DataError(f"no {split} predictions in {run} (missing {path.name}); train it first")
            load[run, split] = np.load(path)
    dv, rv, dt, rt = load[depth_run, "val"], load[rgb_run, "val"], load[depth_run, "test"], load[rgb_run, "test"]
    if not (np.array_equal(dv["frame"], rv["frame"]) and np.array_equal(dt["frame"], rt["frame"])):
        raise DataError(f"{depth_run} and {rgb_run} were evaluated on different frames: train both on the same data")
    w = score_fusion_weights(kind, dv["normalised"], rv["normalised"], dv["target"])
    # The map back to mm is affine per frame, so fusing in mm equals fusing the normalised outputs.
    fused_xyz = fuse_scores(w, dt["xyz"], rt["xyz"])
    val = fuse_scores(w, dv["normalised"], rv["normalised"])
    warnings = [i.warning for i in infos if i.warning]
    result = {"status": "done", "weights": kind, "experiment": str(experiment), "depth_run": str(depth_run),
              "rgb_run": str(rgb_run), "best_val_mse": float(np.mean((val - dv["target"]) ** 2)),
              "mean_weight_depth": float(w.mean()), **({"warnings": warnings} if warnings else {})}
    with replacing(Path(out), "fusepred") as stage:
        write_joints_txt(stage / "test_predictions_uvd.txt", _run_camera(depth_run).xyz_to_uvd(fused_xyz))
        savez(stage / "weights.npz", w=w)
        # What the run-folder contract reads when the fused result is evaluated like a run.
        write_json(stage / "config.json", {"config": {"net": "fusepred", "inputs": "depth+rgb", "target": "pose"},
                                           "data": {"fingerprint": infos[0].fingerprint}})
        write_json(stage / "result.json", result)
    return result


def _run_camera(run: Path) -> Camera:
    """The camera a run's data was prepared with (config.json's preprocessing record)."""
    import json
    path = Path(run) / "config.json"
    try:
        return Camera(*json.loads(path.read_text())["preprocess"]["camera"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read the camera of run {run} from {path} ({exc}); train the run again") from None


def sweep_fusion(base: dict, layers: list[str] | None, out: Path) -> list[tuple]:
    """Fuse-Net fused at every layer (conv1..convN, fc1, fc2) or at ``layers``: the thesis's open question."""
    from hpe.train import train
    base = {**base, "inputs": "depth+rgb"}
    rows = []
    for at in layers or fusion_points(base.get("net", "net6")):
        r = train({**base, "fusion_layer": at, "out": str(Path(out) / at)}, resume=True, restart_if_changed=True)
        rows.append((at, r.get("best_val_mse"), r.get("test_mean_mm"), r["status"]))
        print(f"{at:6s} {r['status']:11s} val_mse {r.get('best_val_mse')} test {r.get('test_mean_mm')} mm", flush=True)
    figure_table([[at, f"{v:.5f}" if v is not None else "-", f"{t:.2f}" if t is not None else "-", st]
                  for at, v, t, st in rows], ["fusion layer", "val MSE", "test mean / mm", "status"],
                 Path(out) / "sweep", f"Fuse-Net ({base.get('fusion', 'conv')}) fused at each layer")
    return rows


def compare(methods: list[tuple[str, Path]], gt: Path | None, prefix: Path, title: str = "",
            tompson: Path | None = None, depth_dir: Path | None = None, notes: list[str] | None = None,
            baselines: Path | None = None, success: str = "max", leaderboard: bool = False,
            allow_unfinished: bool = False, width: str = "text") -> dict[str, dict]:
    """Figures 4.7-4.9 (and the leaderboard): the one evaluation path, then the figure, CSV and JSON summary."""
    truth = load_ground_truth(gt)
    found = collect(methods, truth, tompson=tompson, depth_dir=depth_dir, baselines=baselines,
                    allow_unfinished=allow_unfinished, flag="--method")
    notes = list(notes or []) + [f"warning: {m.warning}" for m in found if m.warning]
    result = summaries(found, truth, success)
    figure_compare({m.name: m.errors for m in found}, prefix, title, notes, success,
                   highlight=[n for n, _ in methods] if leaderboard else None, width=width)
    write_results(result, with_ext(prefix, "json"), notes=notes)
    return result


def qualitative(run_dir: Path, data: Path, prefix: Path, frames_per_subject: int = 4,
                allow_unfinished: bool = False, width: str = "text") -> list[Path]:
    """Figures 4.10 (subject 1) and 4.11 (subject 2) from a run's test predictions, drawn on the frames of the
    prepared file it was trained on (another file is refused)."""
    info = open_run(run_dir, "--run", allow_unfinished, data=data, target="pose")
    path = Path(run_dir) / "test_predictions.npz"
    if not path.is_file():
        raise DataError(f"no test predictions in {run_dir} (missing {path.name}); train the run first")
    p = np.load(path)
    camera = _run_camera(run_dir)
    paths = []
    with h5py.File(data, "r") as h5:
        g = h5["test"]
        subjects = g["subject"][:]
        for subject, fig in ((1, "4.10"), (2, "4.11")):
            idx = np.nonzero(subjects[: len(p["xyz"])] == subject)[0]
            if len(idx) == 0:
                continue
            pick = idx[np.linspace(0, len(idx) - 1, min(frames_per_subject, len(idx))).astype(int)]
            paths += figure_qualitative(g["depth"][pick].astype(np.float32), g["joints"][pick], p["normalised"][pick],
                                        g["transform"][pick], g["joints_uvd"][pick], p["uvd"][pick],
                                        g["centre_xyz"][pick], g["cube"][pick], g["frame"][pick],
                                        Path(f"{prefix}-fig{fig}-subject{subject}"),
                                        f"Figure {fig}: test subject {subject} (blue: ground truth, red: prediction)"
                                        + (f"\nwarning: {info.warning}" if info.warning else ""), camera, width)
    return paths


# What the success rate counts, for every table that prints one.
SUCCESS_DEFINITION = {"max": "frames whose worst (max) joint error", "mean": "frames whose mean joint error",
                      "joint": "single joints whose error"}


def print_summary(results: dict[str, dict], notes: list[str] | None = None) -> None:
    kind = next(iter(results.values()), {}).get("success", "max")
    print(f"  {'method':28s} {'mean mm':>8}  per subject              success at 20 mm*")
    for name, s in sorted(results.items(), key=lambda kv: kv[1]["mean_mm"]):
        subj = ", ".join(f"{k}: {v:.2f}" for k, v in s.get("per_subject_mm", {}).items())
        print(f"  {name:28s} {s['mean_mm']:8.2f}  {subj:24s} {100 * s['success_rate'][20]:5.1f}%")
    print(f"  * success: the share of {SUCCESS_DEFINITION[kind]} is within 20 mm (--success max|mean|joint)")
    for note in notes or []:
        print(f"  note: {note}")


CENTRE_METHODS = ("palm", "segment", "com", "refined")


def _frame_set_name(root: Path, held_out: bool) -> str:
    """How the centre table names the test frames of ``root``: the held-out set says its seed and hand size."""
    from hpe.synthetic import read_sidecar
    info = read_sidecar(root)
    if info is None:
        return "held-out test" if held_out else "test"
    if not held_out:
        return "synthetic test"
    return f"held-out (seed {info.get('seed')}, hand {info.get('subject2_scale')})"


def _check_held_out(root: Path, held_out: Sequence[Path]) -> None:
    """A held-out set must hold frames nobody tuned on: not ``root`` itself, and not frames generated with ``root``'s
    seed (the generator's test poses depend only on the seed)."""
    from hpe.synthetic import read_sidecar

    def seed(r: Path):
        return (read_sidecar(r) or {}).get("seed")
    for h in held_out:
        if Path(h).resolve() == Path(root).resolve():
            raise ValueError(f"--held-out-root {h} is --root itself: give a test set nobody tuned on")
        if seed(h) is not None and seed(h) == seed(root):
            raise ValueError(f"--held-out-root {h} was generated with --root's seed ({seed(h)}): its test poses are "
                             f"the ones the design was tuned on; generate it with another seed (HELDOUT_SEED)")


def centre_study(run_dir: Path, root: Path, prefix: Path, limit: int | None = None, batch: int = 64,
                 centre_runs: Sequence[Path] = (), held_out: Sequence[Path] = (), allow_unfinished: bool = False,
                 width: str = "text", progress: bool = True) -> list[list]:
    """How far each hand centre lands from the labelled palm and what it costs in mean joint error, on the test
    frames of an NYU-layout ``root``, of each ``held_out`` root (test sets nobody tuned on) and on the real NYU
    test frame 1 (bundled): the table of README "Predicting on your own frames".  ``palm`` is the ground-truth
    centre the nets are trained with; ``refined`` uses the centre-refinement runs ``centre_runs`` (coarse to fine)
    when given."""
    from hpe.baselines import bundled
    from hpe.camera import NYU_CAMERA
    from hpe.export import load_run
    from hpe.metrics import joint_errors
    from hpe.nyu import EVAL_JOINTS, PALM_SLOT, NYUSplit, read_joints_txt
    from hpe.predict import Frame, coarse_to_fine, predict_frames, read_depth_frame
    from hpe.progress import progress as progress_bar
    from hpe.train import pick_device
    _check_held_out(root, held_out)
    device = pick_device("auto")
    run = load_run(run_dir, device, "--run", allow_unfinished, target="pose")
    refiners = [load_run(r, device, "--centre-run", allow_unfinished, target="centre") for r in centre_runs]
    cube = float(run.preprocess["cube_mm"])
    sets = {}
    for r, is_held_out in [(root, False), *((h, True) for h in held_out)]:
        split = NYUSplit(r, "test")
        n = len(split) if limit is None else min(limit, len(split))
        sets[_frame_set_name(r, is_held_out)] = ([split.depth_path(i + 1) for i in range(n)],
                                                 split.joints.uvd[:n, list(EVAL_JOINTS)])
    sets["real NYU frame 1"] = ([bundled("sample/depth_1_0000001.png")],
                                read_joints_txt(bundled("nyu_test_groundtruth_label.txt"))[:1])
    rows = []
    bar = progress_bar(sum(len(f) for f, _ in sets.values()) * len(CENTRE_METHODS), "centres", "frame", progress)
    for name, (files, gt_uvd) in sets.items():
        gt_xyz = NYU_CAMERA.uvd_to_xyz(gt_uvd)
        for method in CENTRE_METHODS:
            dist, err = [], []
            for s in range(0, len(files), batch):
                frames = [Frame(f, read_depth_frame(f), None, NYU_CAMERA,
                                gt_uvd[s + k, PALM_SLOT].copy() if method == "palm" else None)
                          for k, f in enumerate(files[s:s + batch])]
                xyz, centres = predict_frames(run, frames, "fixed" if method == "palm" else method, cube, device,
                                              centre_runs=refiners)
                dist += list(np.linalg.norm(NYU_CAMERA.uvd_to_xyz(centres) - gt_xyz[s:s + batch, PALM_SLOT], axis=-1))
                err += list(joint_errors(xyz, gt_xyz[s:s + batch]).mean(axis=1))
                bar.update(len(frames))
            rows.append([name, method, len(files), f"{np.mean(dist):.1f}", f"{np.median(dist):.1f}",
                         f"{np.mean(err):.2f}"])
    bar.close()
    for name in sets:  # the cost of each centre relative to the ground-truth one
        base = float(next(r for r in rows if r[0] == name and r[1] == "palm")[5])
        for r in rows:
            if r[0] == name:
                r.append(f"{100 * (float(r[5]) / base - 1):+.1f}%")
    refined_by = f", refined by {' then '.join(r.path.name for r in coarse_to_fine(refiners))}" if refiners else ""
    figure_table(rows, ["frames", "centre", "n", "to palm, mean mm", "median mm", "mean joint error mm",
                        "vs palm centre"], prefix, f"Hand centres without labels ({Path(run_dir).name}{refined_by})",
                 width)
    return rows
