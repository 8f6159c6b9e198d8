"""The ``hpe`` command line: thin wrappers around the library (``hpe --help`` lists the subcommands)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hpe import DataError


def _cmd_synth(a) -> int:
    from data_prep.synthetic_nyu import generate
    info = generate(a.root, a.train, a.test, a.seed, a.workers)
    n = info["train_frames"] + info["test_frames"]
    print(f"wrote {n} synthetic NYU frames to {a.root} in {info['seconds']} s")
    return 0


def _cmd_prep(a) -> int:
    from hpe.prep import PrepConfig, prep
    cfg = PrepConfig(profile=a.profile, centre=a.centre, cube_mm=a.cube, cube_mm_subject2=a.cube_subject2,
                     size=a.size, val_fraction=a.val_fraction, seed=a.seed, joints=a.joints, limit=a.limit,
                     skip_bad=a.skip_bad, workers=a.workers)
    stats = prep(a.root, a.out, cfg, progress=not a.quiet)
    print(json.dumps(stats))
    return 0


def _cmd_nets(a) -> int:
    from hpe.nets import NET_SPECS, NetConfig, PoseNet, count_parameters, list_nets, num_convs
    from hpe.profiles import get_profile
    pool = get_profile(a.profile).pool
    print(f"{'net':6} {'convs':>5} {'pools':>5} {'parameters':>14}   ({a.profile} profile, {a.input_size}x"
          f"{a.input_size} input, {a.joints} joints)")
    for name in list_nets():
        pools = NET_SPECS[name].count("M")
        try:
            n = f"{count_parameters(PoseNet(NetConfig(name, 1, a.input_size, a.joints, pool=pool))):,}"
        except ValueError as exc:
            n = f"n/a: {exc}"
        print(f"{name:6} {num_convs(name):>5} {pools:>5} {n:>14}" + ("   Depth-Net" if name == "net6" else ""))
    return 0


def _train_config(a) -> dict:
    from hpe.experiments import experiment_config, parse_overrides
    cfg = experiment_config(a.experiment, a.preset, parse_overrides(a.set))
    for key in ("data", "out", "device"):
        if getattr(a, key, None):
            cfg[key] = getattr(a, key)
    if a.quiet:
        cfg["progress"] = False
    if a.dry_run:  # a couple of tiny epochs on a few frames: checks the whole path in seconds
        cfg.update(max_epochs=2, limit_train=64, width=min(cfg.get("width", 1.0), 0.125),
                   fc_units=min(cfg.get("fc_units", 4096), 256), input_size=min(cfg.get("input_size") or 128, 32),
                   batch_size=16)
    return cfg


def _cmd_train(a) -> int:
    from hpe.train import train
    result = train(_train_config(a), resume=a.resume)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))
    return 0 if result["status"] in ("done", "stopped") else 3


def _cmd_evaluate(a) -> int:
    from hpe.evaluate import evaluate_files
    evaluate_files(a.pred, a.gt, names=a.name, json_path=a.json, csv_path=a.csv,
                   subject1_frames=a.subject1_frames, tompson=a.tompson, depth_dir=a.depth_dir)
    return 0


def _pairs(items: list[str], what: str) -> dict[str, Path]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} '{item}' must look like NAME=PATH")
        k, v = item.split("=", 1)
        out[k] = Path(v)
    return out


def _cmd_figure(a) -> int:
    from hpe import reproduce
    from hpe.plots import with_ext
    if a.kind == "frame":
        from hpe.metrics import read_uvd_txt
        from hpe.nyu import EVAL_JOINTS, load_joint_data, read_depth, read_rgb
        from hpe.plots import figure_frame
        if a.label:
            uvd = read_uvd_txt(a.label)[a.frame - 1]
        elif a.joints_mat:
            uvd = load_joint_data(a.joints_mat).uvd[a.frame - 1, list(EVAL_JOINTS)]
        else:
            raise ValueError("figure frame needs --label FILE or --joints-mat FILE for the ground-truth pose")
        mean = std = None
        if a.stats:
            from hpe.data import h5_attrs
            at = h5_attrs(a.stats)
            mean, std = at["rgb_mean"], at["rgb_std"]
        paths = figure_frame(read_depth(a.depth, a.frame), read_rgb(a.rgb, a.frame), uvd, a.out, a.cube,
                             rgb_mean=mean, rgb_std=std, title=a.title or "")
    elif a.kind == "compare":
        methods = _pairs(a.method, "--method")
        reproduce.compare(methods, a.gt, a.out, a.title or "", a.tompson, a.depth_dir, a.note)
        reproduce.print_summary(with_ext(a.out, "json"))
        paths = [with_ext(a.out, "png"), with_ext(a.out, "pdf")]
    elif a.kind == "table4.3":
        rows = reproduce.table43(_pairs(a.method, "--method"), a.out)
        for r in rows:
            print("  " + "  ".join(r))
        paths = [with_ext(a.out, "png")]
    else:
        if not a.run or not a.data:
            raise ValueError("figure qualitative needs --run DIR and --data H5")
        paths = reproduce.qualitative(a.run, a.data, a.out)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_fusepred(a) -> int:
    from hpe.reproduce import fuse_predictions
    print(json.dumps(fuse_predictions(a.depth_run, a.rgb_run, a.out, a.weights), indent=2))
    return 0


def _cmd_sweep_fusion(a) -> int:
    """Fuse-Net at every fusion layer (conv1..convN, fc1, fc2): the thesis's open question, one command."""
    from hpe.nets import fusion_points
    from hpe.train import train
    cfg = _train_config(a)
    cfg["inputs"] = "depth+rgb"
    rows = []
    for at in a.layers or fusion_points(cfg.get("net", "net6")):
        r = train({**cfg, "fusion_layer": at, "out": str(Path(a.out) / at)}, resume=True)
        rows.append((at, r.get("best_val_mse"), r.get("test_mean_mm")))
        print(f"{at:6s} val_mse {r.get('best_val_mse')} test {r.get('test_mean_mm')} mm", flush=True)
    from hpe.plots import figure_table
    figure_table([[at, f"{v:.5f}" if v is not None else "-", f"{t:.2f}" if t is not None else "-"]
                  for at, v, t in rows], ["fusion layer", "val MSE", "test mean / mm"], Path(a.out) / "sweep",
                 f"Fuse-Net ({cfg.get('fusion', 'conv')}) at every fusion layer")
    return 0


def _cmd_search(a) -> int:
    from hpe.search import SearchConfig, search
    cfg = _train_config(a)
    sc = SearchConfig(rounds=a.rounds, samples=a.samples, shrink=a.shrink, seed=a.seed, study=a.study,
                      storage=a.storage, heartbeat_s=a.heartbeat)
    for item in a.range or []:
        name, lo, hi, scale = item.split(":")
        sc.ranges[name] = (float(lo), float(hi), scale == "log")
    print(json.dumps(search(cfg, Path(a.out), sc, a.max_trials), indent=2))
    return 0


def _cmd_bench(a) -> int:
    from hpe.bench import main as bench
    if a.report:
        from hpe.bench import report
        print(report(a.report))
        return 0
    bench(a.device or "auto", True if a.quick else None, a.compile_mode, a.profile_ops, a.json)
    return 0


def _add_run_args(s: argparse.ArgumentParser, experiment_help: str, out_help: str, out_required: bool = True) -> None:
    """The arguments every training command shares (they feed :func:`_train_config`)."""
    s.add_argument("experiment", type=Path, nargs="?", help=experiment_help)
    s.add_argument("--preset", type=Path, help="compute preset, e.g. experiments/presets/synthetic.toml")
    s.add_argument("--data", help="prepared .h5")
    s.add_argument("--out", required=out_required, help=out_help)
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--dry-run", action="store_true", help="2 tiny epochs on 64 frames: checks the whole path")
    s.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpe", description="Hand pose estimation with ConvNets on RGB-D data "
                                "(Kazakos 2017), reproduced in PyTorch.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("synth", help="write a synthetic dataset in NYU's on-disk format")
    s.add_argument("root", type=Path)
    s.add_argument("--train", type=int, default=1800)
    s.add_argument("--test", type=int, default=600)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int)
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("prep", help="crop + normalise an NYU-layout dataset into HDF5 (eqs. 4.3-4.12)")
    s.add_argument("root", type=Path, help="NYU root holding train/ and test/")
    s.add_argument("out", type=Path, help="output .h5 (written atomically)")
    s.add_argument("--profile", default="thesis", help="thesis (default) or icip2018")
    s.add_argument("--centre", default="palm", help="palm (ground truth, default), com, or segment (no ground truth)")
    s.add_argument("--cube", type=float, help="cube edge in mm (default: the profile's, 300)")
    s.add_argument("--cube-subject2", type=float, help="cube edge for test subject 2 (thesis 300, icip2018 261)")
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--val-fraction", type=float, default=0.25)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--joints", default="eval", help="eval (14 joints, default) or all (36)")
    s.add_argument("--limit", type=int, help="only the first N frames of each split")
    s.add_argument("--skip-bad", action="store_true", help="log and skip bad frames instead of stopping")
    s.add_argument("--workers", type=int)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_prep)

    s = sub.add_parser("nets", help="list Net1-Net9 with their parameter counts")
    s.add_argument("--profile", default="thesis")
    s.add_argument("--input-size", type=int, default=128)
    s.add_argument("--joints", type=int, default=14)
    s.set_defaults(func=_cmd_nets)

    s = sub.add_parser("train", help="train one model from an experiment file")
    _add_run_args(s, "experiments/... .toml (a thesis table row)", "run folder", out_required=False)
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("evaluate", help="mean / per-joint / per-subject error and success rate of prediction files")
    s.add_argument("--pred", action="append", default=[], type=Path, help="uvd text file (14 x u v d a line)")
    s.add_argument("--name", action="append", default=[], help="label for each --pred (default: file name)")
    s.add_argument("--gt", type=Path, required=True, help="ground truth: label .txt or test joint_data.mat")
    s.add_argument("--tompson", type=Path, help="Tompson's test_predictions.mat (needs --depth-dir)")
    s.add_argument("--depth-dir", type=Path, help="folder with the test depth_1_*.png images (NYU_ROOT/test)")
    s.add_argument("--subject1-frames", type=int, default=2440)
    s.add_argument("--json", type=Path)
    s.add_argument("--csv", type=Path)
    s.set_defaults(func=_cmd_evaluate)
    s = sub.add_parser("figure", help="draw a thesis figure: frame (4.1/4.2), compare (4.7-4.9), table4.3, "
                       "qualitative (4.10/4.11)")
    s.add_argument("kind", choices=["frame", "compare", "table4.3", "qualitative"])
    s.add_argument("--out", type=Path, required=True, help="output prefix (writes .png, .pdf, .csv)")
    s.add_argument("--title")
    s.add_argument("--depth", type=Path, help="frame: depth PNG")
    s.add_argument("--rgb", type=Path, help="frame: RGB PNG")
    s.add_argument("--label", type=Path, help="frame: label text file (14 x u v d a line)")
    s.add_argument("--joints-mat", type=Path, help="frame: joint_data.mat")
    s.add_argument("--frame", type=int, default=1, help="frame: 1-based frame number (line of --label)")
    s.add_argument("--cube", type=float, default=300.0)
    s.add_argument("--stats", type=Path, help="frame: prepared .h5 whose training RGB statistics to use")
    s.add_argument("--method", action="append", default=[], metavar="NAME=PATH",
                   help="compare/table4.3: a run folder or a prediction file (uvd text); repeat")
    s.add_argument("--gt", type=Path, help="compare: ground truth (label .txt, joint_data.mat or prepared .h5)")
    s.add_argument("--tompson", type=Path, help="compare: Tompson's test_predictions.mat (needs --depth-dir)")
    s.add_argument("--depth-dir", type=Path, help="compare: NYU test depth images for Tompson's lift to 3D")
    s.add_argument("--note", action="append", default=[], help="compare: a note printed under the figure")
    s.add_argument("--run", type=Path, help="qualitative: run folder")
    s.add_argument("--data", type=Path, help="qualitative: prepared .h5")
    s.set_defaults(func=_cmd_figure)

    s = sub.add_parser("fusepred", help="FusePred-Net: score fusion of a trained Depth-Net and RGB-Net")
    s.add_argument("--depth-run", type=Path, required=True)
    s.add_argument("--rgb-run", type=Path, required=True)
    s.add_argument("--weights", default="fixed", help="fixed (0.5, thesis), error (per joint), learned (per output)")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_fusepred)

    s = sub.add_parser("sweep-fusion", help="train Fuse-Net fused at every layer (or --layers) and tabulate")
    _add_run_args(s, "a Fuse-Net experiment file", "folder: one run per layer + sweep.png/.csv")
    s.add_argument("--layers", nargs="*", help="subset, e.g. conv2 conv4 fc1 (default: all)")
    s.set_defaults(func=_cmd_sweep_fusion)
    s = sub.add_parser("search", help="random-search hyperparameters (Optuna; several workers may share a study)")
    _add_run_args(s, "the experiment to tune", "folder: trials, study.db (default storage), trials.csv, search.png")
    s.add_argument("--storage", help="database URL shared by workers, e.g. postgresql://user@host/db")
    s.add_argument("--study", default="hpe-search")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--samples", type=int, default=50, help="samples per round")
    s.add_argument("--shrink", type=float, default=0.5, help="range width factor per round, centred on the best")
    s.add_argument("--range", action="append", metavar="NAME:LOW:HIGH:log|linear", help="override a range")
    s.add_argument("--max-trials", type=int, help="this worker stops after N trials")
    s.add_argument("--heartbeat", type=int, default=60, help="seconds; a silent worker's trial is failed + retried")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_search)
    s = sub.add_parser("bench", help="speed benchmark: training/inference images/s, loop vs bare ratio, prep (JSON)")
    s.add_argument("--device")
    s.add_argument("--quick", action="store_true", help="reduced-size nets (default on CPU)")
    s.add_argument("--compile-mode", default="default",
                   help="torch.compile mode for the fast path on CUDA: default, reduce-overhead, max-autotune, "
                        "max-autotune-no-cudagraphs")
    s.add_argument("--profile-ops", action="store_true",
                   help="add the fast thesis loop's most expensive operators (torch.profiler)")
    s.add_argument("--json", type=Path, help="also write the JSON object to this file")
    s.add_argument("--report", type=Path, metavar="DIR",
                   help="instead of measuring, summarise DIR (bench.json + training runs, as `make gpu-check` leaves it)")
    s.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return a.func(a)
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"hpe {a.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hpe {a.cmd}: interrupted", file=sys.stderr)
        return 130
