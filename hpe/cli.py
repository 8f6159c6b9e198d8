"""The ``hpe`` command line: it parses arguments and calls the library (``hpe --help`` lists the subcommands).

Every error a user can cause ends as one line ``hpe CMD: error: ...`` and exit status 2; an interrupt (Ctrl-C
or SIGTERM) removes what was half-written and exits 130 / 143.  Each command declares its outputs
(``set_defaults(outputs=[Out(ARG, KIND)])``) and :func:`main` claims them through :mod:`hpe.output` before the
command runs: checked, parents created, locked, stale temporaries swept.  A new command gets all of it by
declaring its outputs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from hpe import DataError, __version__
from hpe.atomic import catch_dropped_interrupts, raise_dropped_interrupt
from hpe.nyu import TEST_SUBJECT1_FRAMES
from hpe.output import Out, as_prefix, check_apart, claim, io_error_line


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` and atomic writer cleans up."""


def _on_sigterm(signum, frame):
    raise _Terminated()


# --- commands ----------------------------------------------------------------------------------------------
def _cmd_synth(a) -> int:
    from hpe.synthetic import generate
    if a.seed < 0:
        raise ValueError(f"--seed {a.seed}: a seed is a non-negative integer")
    info = generate(a.root, a.train, a.test, a.seed, a.workers, force=a.force, progress=not a.quiet,
                    subject2_scale=a.subject2_scale)
    print(f"wrote {info['train_frames'] + info['test_frames']} synthetic NYU frames to {a.root} in {info['seconds']} s")
    return 0


def _cmd_prep(a) -> int:
    from hpe.prep import prep, prep_config
    cfg = prep_config(a.profile, centre=a.centre, cube_mm=a.cube, cube_mm_subject2=a.cube_subject2, size=a.size,
                      val_fraction=a.val_fraction, val_seed=a.seed, joints=a.joints, limit=a.limit,
                      skip_bad=a.skip_bad, workers=a.workers, xyz_tolerance_mm=a.xyz_tolerance,
                      centre_depth=a.centre_depth, rgb_stats=a.rgb_stats, paste=a.paste, rgb_resize=a.rgb_resize)
    print(json.dumps(prep(a.root, a.out, cfg, progress=not a.quiet)))
    return 0


def _cmd_nets(a) -> int:
    from hpe.config import profile_section
    if a.input_size < 1 or a.joints < 1:
        raise ValueError(f"--input-size {a.input_size} and --joints {a.joints} must be positive")
    import torch

    from hpe.nets import NET_SPECS, NetConfig, PoseNet, count_parameters, list_nets, num_convs
    pool = profile_section(a.profile, "train")["pool"]
    print(f"{'net':6} {'convs':>5} {'pools':>5} {'parameters':>14}   ({a.profile} profile, {a.input_size}x"
          f"{a.input_size} input, {a.joints} joints)")
    for name in list_nets():
        try:
            with torch.device("meta"):  # shapes without storage: nine 150 M-parameter nets took 21 s to initialise
                net = PoseNet(NetConfig(name=name, input_size=a.input_size, num_joints=a.joints, pool=pool))
            n = f"{count_parameters(net):,}"
        except ValueError as exc:
            n = f"n/a: {exc}"
        print(f"{name:6} {num_convs(name):>5} {NET_SPECS[name].count('M'):>5} {n:>14}"
              + ("   Depth-Net" if name == "net6" else ""))
    return 0


def _run_layers(a) -> list[tuple[str, dict]]:
    """The user's config layers: experiment file < preset < command-line options < --set."""
    from hpe.config import parse_overrides, user_layers
    layers = user_layers(a.experiment, a.preset)
    cli = {k: getattr(a, k) for k in ("data", "out", "device", "tensorboard") if getattr(a, k, None)}
    if a.quiet:
        cli["progress"] = "none"
    elif getattr(a, "progress", None):
        cli["progress"] = a.progress
    if cli:
        layers.append(("command line", cli))
    sets = parse_overrides(a.set)
    for key in sorted(set(cli) & set(sets)):  # `--out A --set out=B` wrote to B without a word
        if str(cli[key]) != str(sets[key]):
            raise ValueError(f"--{key} {cli[key]} and --set {key}={sets[key]} disagree: give it once")
    if sets:
        layers.append(("--set", sets))
    if a.dry_run:  # a couple of tiny epochs on a few frames: checks the whole path in seconds
        merged = {k: v for _, layer in layers for k, v in layer.items()}
        layers.append(("--dry-run", {"max_epochs": 2, "limit_train": 64, "width": min(merged.get("width", 1.0), 0.125),
                                     "fc_units": min(merged.get("fc_units", 4096), 256), "batch_size": 16,
                                     "input_size": min(merged.get("input_size", 32), 32), "require_learning": False}))
    return layers


def _cmd_train(a) -> int:
    from hpe.config import build_train_config, fusepred_training, read_toml
    from hpe.train import train
    cfg = build_train_config(_run_layers(a))
    if a.experiment and "fusepred" in read_toml(a.experiment) and \
            fusepred_training(a.experiment, cfg.profile) == "independent":
        raise ValueError(f"{a.experiment} is FusePred-Net fused from two trained runs under profile {cfg.profile} "
                         f"([fusepred] training): run `hpe fusepred {a.experiment} --depth-run RUN --rgb-run RUN`; "
                         f"`hpe train` would train the joint net instead")
    result = train(cfg, resume=a.resume, restart_if_changed=a.restart_if_changed)
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "provenance")}, indent=2))
    ok = result["status"] in ("done", "stopped")
    print(f"hpe train: {result['status']}: {result['reason']}" + ("" if ok else " (exit status 3)"), file=sys.stderr)
    return 0 if ok else 3


def _cmd_evaluate(a) -> int:
    from hpe.baselines import bundled
    from hpe.evaluate import collect, format_table, load_ground_truth, summaries, write_results
    from hpe.nyu import parse_joint_order
    if a.name and len(a.name) != len(a.pred):
        raise ValueError(f"{len(a.name)} --name labels for {len(a.pred)} --pred files")
    for label in a.name or []:
        _check_label(label, "--name")
    gt = load_ground_truth(a.gt, a.subject1_frames)
    preds = list(zip(a.name or [Path(p).name.split(".")[0] for p in a.pred], a.pred))
    baselines = bundled("KIT_MANIFEST.tsv").parent if a.baselines == "bundled" else a.baselines
    methods = collect(preds, gt, a.format, parse_joint_order(a.joint_order), _tompson(a.tompson), a.depth_dir,
                      baselines, a.allow_unfinished)
    results = summaries(methods, gt, a.success)
    print(f"ground truth: {gt.source}")
    print(format_table(results))
    warnings = [f"warning: {m.warning}" for m in methods if m.warning]
    for w in warnings:
        print(w, file=sys.stderr)
    write_results(results, a.json, a.csv, warnings)
    return 0


def _cmd_figure_frame(a) -> int:
    from hpe.baselines import bundled
    from hpe.nyu import EVAL_JOINTS, load_joint_data, read_depth, read_joints_txt, read_rgb
    from hpe.plots import figure_frame
    depth = a.depth or bundled("sample/depth_1_0000001.png")
    rgb = a.rgb or bundled("sample/rgb_1_0000001.png")
    if a.joints_mat:
        labels = load_joint_data(a.joints_mat).uvd[:, list(EVAL_JOINTS)]
    else:
        labels = read_joints_txt(a.label or bundled("nyu_test_groundtruth_label.txt"), role="label")
    if not 1 <= a.frame <= len(labels):
        raise ValueError(f"--frame {a.frame}: {a.joints_mat or 'the label file'} has frames 1-{len(labels)}")
    uvd = labels[a.frame - 1]
    mean = std = None
    source = "this frame's"
    if a.stats:
        from hpe.dataset import open_prepared
        info = open_prepared(a.stats)
        mean, std, source = info.attrs["rgb_mean"], info.attrs["rgb_std"], f"{Path(a.stats).name}'s training"
    paths = figure_frame(read_depth(depth, a.frame, user_frame=True), read_rgb(rgb, a.frame), uvd, a.out, a.cube,
                         rgb_mean=mean, rgb_std=std, stats_source=source, title=a.title or "", width=a.width)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _tompson(arg: str | None) -> Path | None:
    """--tompson FILE, or 'bundled' for the copy of test_predictions.mat that ships with hpe."""
    from hpe.baselines import bundled
    return None if arg is None else bundled("test_predictions.mat") if arg == "bundled" else Path(arg)


def _check_label(label: str, what: str) -> None:
    """A method's label names a row of the table, the CSV and the JSON: printable, not blank, on one line."""
    if not label.strip() or not label.isprintable():
        raise ValueError(f"{what} {label!r}: a label must be non-blank printable text on one line (it names a row of "
                         f"the table, the CSV and the JSON)")


def _pairs(items: list[str], what: str) -> list[tuple[str, Path]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} '{item}' must look like NAME=PATH")
        k, v = item.split("=", 1)
        _check_label(k, what)
        if not v:
            raise ValueError(f"{what} '{item}': no PATH after '='")
        out.append((k, Path(v)))
    return out


def _cmd_figure_compare(a) -> int:
    from hpe.baselines import THESIS_BASELINES, bundled
    from hpe.experiments import compare, print_summary
    methods = _pairs(a.method, "--method")
    for name in a.bundled or []:
        methods.append((name, bundled(THESIS_BASELINES[name])))
    results = compare(methods, a.gt, a.out, a.title or "", _tompson(a.tompson), a.depth_dir, a.note, a.baselines,
                      a.success, leaderboard=a.leaderboard, allow_unfinished=a.allow_unfinished, width=a.width)
    print_summary(results, a.note)
    print(f"wrote {a.out}.png, .pdf, .csv, .json")
    return 0


def _cmd_figure_table(a) -> int:
    from hpe.experiments import TABLE43_NOTE, table43
    if not a.method:
        raise ValueError("give the runs to tabulate: --method net1=RUN ... --method net9=RUN")
    header, rows = table43(_pairs(a.method, "--method"), a.out, a.allow_unfinished, width=a.width)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for r in [header] + rows:
        print("  " + "  ".join(f"{c:>{w}}" for c, w in zip(r, widths)))
    print(f"  note: {TABLE43_NOTE}")
    print(f"wrote {a.out}.png, .pdf, .csv, .md, .tex")
    return 0


def _cmd_figure_qualitative(a) -> int:
    from hpe.experiments import qualitative
    for p in qualitative(a.run, a.data, a.out, allow_unfinished=a.allow_unfinished, width=a.width):
        print(f"wrote {p}")
    return 0


def _cmd_figure_centres(a) -> int:
    from hpe.experiments import centre_study
    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit {a.limit}: at least 1 test frame (leave it out for all)")
    rows = centre_study(a.run, a.root, a.out, a.limit, centre_runs=a.centre_run, held_out=a.held_out_root,
                        allow_unfinished=a.allow_unfinished, width=a.width, progress=not a.quiet)
    w = max(len(r[0]) for r in rows)
    print(f"  {'frames':{w}s} {'centre':8s} {'n':>5} {'to palm mm':>10} {'median':>7} {'joint err mm':>12} "
          f"{'vs palm':>8}")
    for r in rows:
        print(f"  {r[0]:{w}s} {r[1]:8s} {r[2]:>5} {r[3]:>10} {r[4]:>7} {r[5]:>12} {r[6]:>8}")
    print(f"wrote {a.out}.png, .pdf, .csv, .md, .tex")
    return 0


def _cmd_fusepred(a) -> int:
    from hpe.config import parse_overrides, user_layers
    from hpe.experiments import fusepred
    layers = user_layers(None, a.preset, parse_overrides(a.set))
    cli = {k: str(getattr(a, k)) for k in ("data", "device") if getattr(a, k, None)}
    if cli:
        layers.insert(len(layers) - bool(a.set), ("command line", {**cli, "progress": "epochs"}))
    result = fusepred(a.experiment, a.depth_run, a.rgb_run, a.out, a.weights, a.training, layers, a.allow_unfinished,
                      a.resume, a.restart_if_changed)
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "provenance")}, indent=2))
    if result["status"] not in ("done", "stopped"):
        print(f"hpe fusepred: {result['status']}: {result.get('reason')} (exit status 3)", file=sys.stderr)
        return 3
    return 0


def _cmd_sweep_fusion(a) -> int:
    from hpe.experiments import sweep_fusion
    merged = {k: v for _, layer in _run_layers(a) for k, v in layer.items()}
    out = merged.pop("out")
    sweep_fusion(merged, a.layers, Path(out))
    return 0


def _cmd_search(a) -> int:
    from hpe.search import SearchConfig, search
    merged = {k: v for _, layer in _run_layers(a) for k, v in layer.items()}
    out = merged.pop("out")
    sc = SearchConfig(rounds=a.rounds, samples=a.samples, shrink=a.shrink, seed=a.seed, study=a.study,
                      storage=a.storage, heartbeat_s=a.heartbeat, dry_run=a.dry_run)
    if a.dry_run:  # one round of two tiny trials (the tiny layers come from _run_layers): the path, in seconds
        sc.rounds, sc.samples = min(sc.rounds, 1), min(sc.samples, 2)
    for item in a.range or []:
        try:
            name, lo, hi, scale = item.split(":")
            sc.ranges[name] = (float(lo), float(hi), {"log": True, "linear": False}[scale])
        except (ValueError, KeyError):
            raise ValueError(f"--range {item}: give NAME:LOW:HIGH:log or NAME:LOW:HIGH:linear") from None
    say = (lambda line: None) if a.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = search(merged, Path(out), sc, a.max_trials, say)
    print(json.dumps(result, indent=2))
    if result.get("warning"):  # at the end too (and under --quiet): the best may mean nothing
        print(f"hpe search: warning: {result['warning']}", file=sys.stderr)
    if result["complete"] == 0:
        print(f"hpe search: error: no trial completed ({result['failed']} failed; see {Path(out) / 'trials.csv'}) "
              f"(exit status 3)", file=sys.stderr)
        return 3
    return 0


def _cmd_bench(a) -> int:
    from hpe import bench
    if a.report:
        print(bench.report(a.report))
        return 0
    if a.table:
        print(bench.update_readme(a.table, a.readme) if a.readme else bench.speed_table(a.table))
        return 0
    if a.readme:
        raise ValueError("--readme goes with --table DIR [DIR ...] (the folders whose numbers it tabulates)")
    bench.main(a.device, a.size, a.compile_mode, a.profile_ops, a.json)
    return 0


def _cmd_scale_measure(a) -> int:
    from hpe.scale import measure
    h5 = dict(_pairs(a.h5, "--h5")) if a.h5 else {}
    quiet = a.quiet
    measure(a.out, a.root, h5, a.preset, a.work, a.baseline, a.baseline_frames, a.decode_frames, a.steps,
            a.workers, a.only, log=(lambda msg: None) if quiet else (lambda msg: print(msg, flush=True)))
    print(f"wrote {a.out}")
    return 0


def _cmd_scale_tile(a) -> int:
    from hpe.scale import tile_to_nyu
    sizes = tile_to_nyu(a.src, a.out)
    print(f"wrote {a.out}: {sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,} frames tiled from {a.src}")
    return 0


def _cmd_scale_table(a) -> int:
    from hpe.scale import results_table, update_readme
    print(update_readme(a.results, a.readme) if a.readme else results_table(a.results))
    return 0


def _cmd_baselines_fetch(a) -> int:
    from hpe.baselines import fetch
    report = fetch(a.dest, a.mirror, a.only, a.all, progress=not a.quiet)
    bad = {k: v for k, v in report.items() if v not in ("ok", "present")}
    print(f"{sum(v == 'ok' for v in report.values())} downloaded, {sum(v == 'present' for v in report.values())} "
          f"already present and verified, {len(bad)} failed, in {a.dest}")
    for name, why in bad.items():
        print(f"hpe baselines fetch: error: {name}: {why}", file=sys.stderr)
    return 1 if bad else 0


def _cmd_baselines_list(a) -> int:
    from hpe.baselines import kit_results
    for f in sorted(kit_results(a.all), key=lambda f: f.published_mm or 1e9):
        print(f"{f.method or '-':24s} {'' if f.published_mm is None else f'{f.published_mm:7.3f}':>7}  {f.name}")
    return 0


def _cmd_predict(a) -> int:
    from hpe.predict import predict
    records = predict(a.run, a.inputs, a.out, a.centre, a.rgb, a.camera, a.depth_scale, a.cube, a.batch_size,
                      a.device, a.overlay, a.refine_steps, progress=not a.quiet, centre_runs=a.centre_run,
                      allow_unfinished=a.allow_unfinished, hand=a.hand)
    print(f"predicted {len(records)} frames: {Path(a.out) / 'predictions_uvd.txt'}, "
          f"{Path(a.out) / 'predictions.json'}" + (f", {Path(a.out) / 'overlays'}/" if a.overlay else ""))
    handless = [r for r in records if not r["hand_like"]]
    if handless:
        print(f"warning: {len(handless)} of {len(records)} frames hold no hand-like object in the crop (e.g. "
              f"{handless[0]['file']}: {handless[0]['no_hand']}); they are flagged \"hand_like\": false in "
              f"predictions.json", file=sys.stderr)
    for w in records[0].get("warnings", []) if records else []:
        print(f"warning: {w}", file=sys.stderr)
    if a.centre == "refined" and not a.centre_run and not a.quiet:
        print("note: no --centre-run: the pose net's own palm joint refines the centre, which lands far less close "
              "to the hand (README 'Predicting on your own frames': make predict-models)", file=sys.stderr)
    return 0


def _cmd_export(a) -> int:
    from hpe.export import export
    meta = export(a.run, a.format, a.out, a.allow_unfinished)
    inputs = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))}" for i in meta["inputs"])
    print(f"wrote {a.out} ({a.format}; inputs {inputs})")
    return 0


# --- parser ------------------------------------------------------------------------------------------------
class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown for options that have one (not for flags and unset options)."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _allow_unfinished(s: argparse.ArgumentParser) -> None:
    s.add_argument("--allow-unfinished", action="store_true",
                   help="use runs that are unfinished, not-learned or diverged (refused otherwise); outputs say so")


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", help="log more (INFO)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p


def _add_run_args(s: argparse.ArgumentParser, experiment_help: str, out_help: str, out_required: bool = False) -> None:
    """The arguments every training command shares (they feed :func:`_run_layers`)."""
    s.add_argument("experiment", type=Path, nargs="?", help=experiment_help)
    s.add_argument("--preset", type=Path, help="compute preset, e.g. experiments/presets/synthetic.toml")
    s.add_argument("--data", help="prepared .h5 (its profile is the run's)")
    s.add_argument("--out", required=out_required, help=out_help)
    s.add_argument("--device", help="auto (a GPU if there is one), cpu, cuda, cuda:N")
    s.add_argument("--tensorboard", metavar="DIR", help="also write log.csv's per-epoch scalars for TensorBoard "
                                                        "into DIR/<run> (pip install 'hpe[tensorboard]')")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeat); see README 'Experiments' for the keys")
    s.add_argument("--progress", choices=["bar", "epochs", "none"], help="a progress bar, one line per epoch, or none")
    s.add_argument("--dry-run", action="store_true", help="2 tiny epochs on 64 frames: checks the whole path (search: one round of "
                                                          "2 such trials, marked dry_run)")


def _data_commands(add, common) -> None:
    """The subcommands synth, prep, nets."""
    s = add("synth", "write a synthetic dataset in NYU's on-disk format (refuses a non-empty ROOT)")
    s.add_argument("root", type=Path, help="new dataset folder (gets train/ and test/)")
    s.add_argument("--train", type=int, default=1800, help="training frames")
    s.add_argument("--test", type=int, default=600, help="test frames")
    s.add_argument("--seed", type=int, default=0, help="random seed (the data is deterministic for a seed)")
    s.add_argument("--workers", type=int, help="processes (default: all cores)")
    s.add_argument("--force", action="store_true", help="replace ROOT if hpe generated it (its sidecar says so)")
    s.add_argument("--subject2-scale", type=float,
                   help="hand size of the second test subject relative to the first (default NYU's: 0.87)")
    s.set_defaults(func=_cmd_synth, outputs=[Out("root", "dataset")])

    s = add("prep", "crop + normalise a labelled NYU-layout dataset into HDF5 (eqs. 4.3-4.12)")
    s.add_argument("root", type=Path, help="NYU root holding train/ and test/ with joint_data.mat")
    s.add_argument("out", type=Path, help="output .h5 (written atomically)")
    s.add_argument("--profile", choices=["thesis", "icip2018"], default="thesis", help="behaviour to reproduce")
    s.add_argument("--centre", choices=["palm", "com", "segment"], default="palm",
                   help="crop centre: ground-truth palm joint, centre of mass around it, or nearest object")
    s.add_argument("--cube", type=float, help="cube edge in mm (default: the profile's, 300)")
    s.add_argument("--cube-subject2", type=float, help="cube edge for test subject 2 (thesis 300, icip2018 261)")
    s.add_argument("--size", type=int, help="crop size in pixels (default 128)")
    s.add_argument("--val-fraction", type=float, help="validation share of train/ (default: the profile's)")
    s.add_argument("--seed", type=int, help="validation split seed (default: the profile's)")
    s.add_argument("--joints", choices=["eval", "all"], help="the 14 evaluation joints (default) or all 36")
    s.add_argument("--limit", type=int, help="only the first N frames of each split")
    s.add_argument("--skip-bad", action="store_true", help="log and skip bad frames instead of stopping")
    s.add_argument("--xyz-tolerance", type=float, help="mm joint_xyz may differ from joint_uvd (default 1)")
    s.add_argument("--workers", type=int, help="processes (default: all cores)")
    s.add_argument("--centre-depth", choices=["label", "image"],
                   help="z_c of eqs. 4.6/4.9: the centre's own depth, or the image's I(c_m) (default: the profile's)")
    s.add_argument("--rgb-stats", choices=["masked-crop", "hand-pixels"],
                   help="what the RGB mean/std of eqs. 4.10-4.12 cover (default: the profile's)")
    s.add_argument("--paste", choices=["round", "floor"], help="resized crop's size and offset (default: profile's)")
    s.add_argument("--rgb-resize", choices=["pil", "opencv"], help="RGB resampling (default: the profile's)")
    s.set_defaults(func=_cmd_prep, outputs=[Out("out", "file", ("hdf5",))])

    s = add("nets", "list Net1-Net9 with their parameter counts")
    s.add_argument("--profile", choices=["thesis", "icip2018"], default="thesis", help="pooling of the profile")
    s.add_argument("--input-size", type=int, default=128, help="input crop size")
    s.add_argument("--joints", type=int, default=14, help="joints regressed")
    s.set_defaults(func=_cmd_nets)


def _training_commands(add, common) -> None:
    """The subcommands train, sweep-fusion, search."""
    s = add("train", "train one model from an experiment file")
    _add_run_args(s, "experiments/... .toml (a thesis table row)", "run folder")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--restart-if-changed", action="store_true",
                   help="with --resume: start over if the run's settings or data changed (what Make does)")
    s.set_defaults(func=_cmd_train)

    s = add("sweep-fusion", "train Fuse-Net fused at every layer (or --layers) and tabulate")
    _add_run_args(s, "a Fuse-Net experiment file", "folder: one run per layer + sweep.png/.csv", out_required=True)
    s.add_argument("--layers", nargs="*", help="subset, e.g. conv2 conv4 fc1 (default: all)")
    s.set_defaults(func=_cmd_sweep_fusion, outputs=[Out("out", "keep")])

    s = add("search", "random-search hyperparameters (Optuna; several workers may share a study)")
    _add_run_args(s, "the experiment to tune", "folder: trials, study.db (default storage), trials.csv, search.png",
                  out_required=True)
    s.add_argument("--storage", help="database URL shared by workers, e.g. postgresql://user@host/db")
    s.add_argument("--study", default="hpe-search", help="study name in the storage")
    s.add_argument("--rounds", type=int, default=3, help="rounds of random samples")
    s.add_argument("--samples", type=int, default=50, help="samples per round")
    s.add_argument("--shrink", type=float, default=0.5, help="range width factor per round, centred on the best")
    s.add_argument("--range", action="append", metavar="NAME:LOW:HIGH:log|linear", help="override a range; repeat")
    s.add_argument("--max-trials", type=int, help="this worker stops after N trials")
    s.add_argument("--heartbeat", type=int, default=60, help="seconds; a silent worker's trial is failed + retried")
    s.add_argument("--seed", type=int, default=0, help="trial k samples with seed + k")
    s.set_defaults(func=_cmd_search, outputs=[Out("out", "shared")])


def _figure_commands(add, common) -> None:
    """The subcommand figure KIND: each kind with only its own options."""
    fig = add("figure", "draw a thesis figure").add_subparsers(dest="kind", metavar="KIND", required=True)
    page = argparse.ArgumentParser(add_help=False)
    page.add_argument("--width", choices=["text", "column"], default="text",
                      help="figure width: a page's text width (6.3 in) or one column (3.3 in); fonts 7-9 pt at it")
    fadd = lambda name, help: fig.add_parser(name, help=help, description=help,  # noqa: E731
                                             parents=[common, page], formatter_class=_Help)
    s = fadd("frame", "figures 4.1/4.2 for one frame (default: the bundled real NYU test frame 1)")
    s.add_argument("--out", type=Path, required=True, help="output prefix (writes .png, .pdf, .csv)")
    s.add_argument("--depth", type=Path, help="depth PNG (NYU packing)")
    s.add_argument("--rgb", type=Path, help="registered RGB PNG")
    s.add_argument("--label", type=Path, help="label file (14 x u v d a line; default: the bundled NYU test labels)")
    s.add_argument("--joints-mat", type=Path, help="joint_data.mat instead of a label file")
    s.add_argument("--frame", type=int, default=1, help="1-based frame number (line of the labels)")
    s.add_argument("--cube", type=float, default=300.0, help="cube edge in mm")
    s.add_argument("--stats", type=Path, help="prepared .h5 whose training RGB statistics standardise the RGB panel "
                                              "(default: the frame's own; use real data's for a real frame)")
    s.add_argument("--title", help="figure title")
    s.set_defaults(func=_cmd_figure_frame, outputs=[Out("out", "prefix")])
    s = fadd("compare", "figures 4.7-4.9 and the leaderboard: success rate and mean error per joint")
    s.add_argument("--out", type=Path, required=True, help="output prefix (writes .png, .pdf, .csv, .json)")
    s.add_argument("--method", action="append", default=[], metavar="NAME=PATH",
                   help="a run folder or prediction file (uvd text); repeat")
    s.add_argument("--bundled", action="append", choices=["DeepPrior", "DeepPrior-Refine", "Feedback", "DeepModel"],
                   help="add a bundled thesis baseline; repeat")
    s.add_argument("--baselines", type=Path, help="add every kit result file in this folder")
    s.add_argument("--gt", type=Path, help="ground truth (default: the bundled NYU test labels)")
    s.add_argument("--tompson", help="Tompson's test_predictions.mat, or 'bundled' (needs --depth-dir)")
    s.add_argument("--depth-dir", type=Path, help="NYU test depth images for Tompson's lift to 3D")
    s.add_argument("--success", choices=["max", "mean", "joint"], default="max", help="success-rate definition")
    s.add_argument("--leaderboard", action="store_true", help="highlight the --method runs, grey the rest")
    s.add_argument("--note", action="append", default=[], help="a note printed under the figure")
    s.add_argument("--title", help="figure title")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_figure_compare, outputs=[Out("out", "prefix")])
    s = fadd("table4.3", "table 4.3 from Net1-Net9 run folders")
    s.add_argument("--out", type=Path, required=True, help="output prefix (writes .png, .pdf, .csv, .md, .tex)")
    s.add_argument("--method", action="append", default=[], metavar="NAME=RUN", help="netN=run folder; repeat")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_figure_table, outputs=[Out("out", "prefix")])
    s = fadd("qualitative", "figures 4.10/4.11 from a run's test predictions")
    s.add_argument("--out", type=Path, required=True, help="output prefix")
    s.add_argument("--run", type=Path, required=True, help="run folder")
    s.add_argument("--data", type=Path, required=True, help="the prepared .h5 it was trained on")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_figure_qualitative, outputs=[Out("out", "prefix")])

    s = fadd("centres", "hand centres without labels: distance to the palm and cost in joint error (a table)")
    s.add_argument("--out", type=Path, required=True, help="output prefix (writes .png, .pdf, .csv, .md, .tex)")
    s.add_argument("--run", type=Path, required=True, help="a trained Depth-Net run folder")
    s.add_argument("--root", type=Path, required=True, help="labelled NYU-layout root whose test/ frames to use")
    s.add_argument("--limit", type=int, help="only the first N test frames")
    s.add_argument("--centre-run", type=Path, action="append", default=[],
                   help="a centre-refinement run (target = centre) for 'refined'; repeat for coarse + fine")
    s.add_argument("--held-out-root", type=Path, action="append", default=[],
                   help="another labelled root whose test frames nobody tuned on (its rows follow --root's)")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_figure_centres, outputs=[Out("out", "prefix")])


def _evaluation_commands(add, common) -> None:
    """The subcommands evaluate, fusepred, baselines ACTION."""
    s = add("evaluate", "score prediction files against the NYU test labels (bundled) or another ground truth")
    s.add_argument("--pred", action="append", default=[], type=Path, help="prediction file (or run folder); repeat")
    s.add_argument("--name", action="append", default=[], help="label for each --pred (default: file name)")
    s.add_argument("--gt", type=Path, help="ground truth: label .txt[.gz], test joint_data.mat or prepared .h5 "
                                           "(default: the bundled NYU test labels)")
    s.add_argument("--format", choices=["uvd", "xyz"], default="uvd", help="what the --pred files hold")
    s.add_argument("--joint-order", default="kit",
                   help="the NYU joint each column holds: kit, fusenet, or 14 comma-separated indices")
    s.add_argument("--baselines", help="folder of the kit's result files (hpe baselines fetch), or 'bundled'")
    s.add_argument("--success", choices=["max", "mean", "joint"], default="max",
                   help="success rate over each frame's max joint error (thesis), mean joint error, or single joints")
    s.add_argument("--tompson", help="Tompson's test_predictions.mat, or 'bundled' (needs --depth-dir)")
    s.add_argument("--depth-dir", type=Path, help="folder with the test depth_1_*.png images (NYU_ROOT/test)")
    s.add_argument("--subject1-frames", type=int,
                   help=f"test frames of subject 1 (default: a synthetic root's own, else NYU's {TEST_SUBJECT1_FRAMES})")
    s.add_argument("--json", type=Path, help="write the results as JSON")
    s.add_argument("--csv", type=Path, help="write the results as CSV")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_evaluate, outputs=[Out("json", "file", ("json",)), Out("csv", "file", ("text",))])

    s = add("fusepred", "FusePred-Net: score fusion of a trained Depth-Net and RGB-Net")
    s.add_argument("experiment", type=Path, help="experiments/fig4.7/fusepred.toml (its [fusepred] weights)")
    s.add_argument("--depth-run", type=Path, help="Depth-Net run folder (independent training)")
    s.add_argument("--rgb-run", type=Path, help="RGB-Net run folder (independent training)")
    s.add_argument("--weights", choices=["fixed", "error", "learned"], help="override the experiment's weights")
    s.add_argument("--training", choices=["independent", "joint"],
                   help="override the experiment's [fusepred] training for the profile")
    s.add_argument("--data", type=Path, help="prepared .h5 (joint training; its profile picks the training)")
    s.add_argument("--preset", type=Path, help="compute preset (joint training)")
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N (joint training)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (joint training); repeat")
    s.add_argument("--resume", action="store_true", help="continue the joint net's run in --out (joint training)")
    s.add_argument("--restart-if-changed", action="store_true",
                   help="with --resume: start over when the settings or data changed (joint training)")
    s.add_argument("--out", type=Path, required=True, help="output folder")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_fusepred, outputs=[Out("out", "folder")])

    bl = add("baselines", "the NYU field's published results").add_subparsers(dest="action", metavar="ACTION",
                                                                               required=True)
    s = bl.add_parser("fetch", help="download and verify the evaluation kit's NYU result files",
                      description="download and verify the evaluation kit's NYU result files (pinned commit)",
                      parents=[common], formatter_class=_Help)
    s.add_argument("--dest", type=Path, required=True, help="folder for the files")
    s.add_argument("--mirror", help="base URL instead of the kit's raw files at the pinned commit")
    s.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                   help="file or method names; repeat or list several (default: the kit's leaderboard)")
    s.add_argument("--all", action="store_true", help="every NYU result file, not only the leaderboard's")
    s.set_defaults(func=_cmd_baselines_fetch, outputs=[Out("dest", "keep")])
    s = bl.add_parser("list", help="the kit's NYU methods and published means", parents=[common], formatter_class=_Help)
    s.add_argument("--all", action="store_true", help="every NYU result file")
    s.set_defaults(func=_cmd_baselines_list)


def _scale_commands(add, common) -> None:
    sc = add("scale", "the NYU-size dress rehearsal: what the pipeline costs (make rehearsal)").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    s = sc.add_parser("measure", help="measure generation, prep, loading and full-size steps into a JSON file",
                      description="measure generation, prep, loading and full-size training steps; each section is "
                                  "written into --out as soon as it is measured", parents=[common], formatter_class=_Help)
    s.add_argument("--out", type=Path, required=True, help="results file, e.g. results/scale/nyu-size.json")
    s.add_argument("--root", type=Path, help="the synthetic root `hpe synth` wrote (generation, prep)")
    s.add_argument("--h5", action="append", default=[], metavar="PROFILE=PATH",
                   help="prepared file per profile (written by the prep step; read by load and steps); repeat")
    s.add_argument("--preset", type=Path, default=Path("experiments/presets/nyu.toml"), help="compute preset")
    s.add_argument("--work", type=Path, help="folder for scratch files (checkpoints, side-by-side roots)")
    s.add_argument("--baseline", type=Path, help="an earlier hpe/synthetic.py to time generation against")
    s.add_argument("--baseline-frames", type=int, default=400, help="frames per side-by-side run")
    s.add_argument("--decode-frames", type=int, default=6000, help="training frames the decode bound decodes")
    s.add_argument("--steps", type=int, default=3, help="training steps per net (the first is a warm-up)")
    s.add_argument("--workers", type=int, help="processes (default: all cores)")
    s.add_argument("--only", nargs="+", action="extend", choices=["generation", "side-by-side", "prep", "load", "steps"],
                   help="measure only these sections (the file keeps the others)")
    s.set_defaults(func=_cmd_scale_measure, outputs=[Out("out", "file", ("json",))])
    s = sc.add_parser("tile", help="a prepared file's frames repeated up to NYU's split sizes (memory checks only)",
                      parents=[common], formatter_class=_Help)
    s.add_argument("src", type=Path, help="prepared .h5")
    s.add_argument("out", type=Path, help="output .h5")
    s.set_defaults(func=_cmd_scale_tile, outputs=[Out("out", "file", ("hdf5",))])
    s = sc.add_parser("table", help="the README Scale table of a results file", parents=[common],
                      formatter_class=_Help)
    s.add_argument("results", type=Path, help="results/scale/nyu-size.json")
    s.add_argument("--readme", type=Path, help="rewrite the table between this file's scale-table markers")
    s.set_defaults(func=_cmd_scale_table, outputs=[Out("readme", "file", ("text",))])


def _tool_commands(add, common) -> None:
    """The subcommands bench, predict, export."""
    s = add("bench", "speed benchmark: training/inference images/s, loop vs bare ratio, prep (JSON)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    s.add_argument("--quick", dest="size", action="store_const", const="quick", help="same as --size quick")
    s.add_argument("--size", choices=["full", "quick", "tiny"],
                   help="full (128 px, width 1), quick (64 px, width 1/4: default on a CPU), tiny (32 px: tests)")
    s.add_argument("--compile-mode", default="default",
                   choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode for the fast path on CUDA")
    s.add_argument("--profile-ops", action="store_true", help="add the fast thesis loop's top operators")
    s.add_argument("--json", type=Path, help="also write the JSON object to this file")
    s.add_argument("--report", type=Path, metavar="DIR", help="summarise DIR (as `make gpu-check` leaves it)")
    s.add_argument("--table", type=Path, nargs="+", metavar="DIR",
                   help="README's Speed table of these benchmark folders (each holding a bench.json)")
    s.add_argument("--readme", type=Path, help="with --table: rewrite the table between this file's speed-table "
                                               "markers")
    s.set_defaults(func=_cmd_bench, outputs=[Out("json", "file", ("json",)), Out("readme", "file", ("text",))])

    s = add("predict", "run a trained model on depth frames without labels")
    s.add_argument("inputs", nargs="+", metavar="FILE|DIR|GLOB", help="depth frames: NYU PNG, 16-bit PNG or .npy")
    s.add_argument("--run", type=Path, required=True, help="trained run folder (its best.pt)")
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument("--centre", default="refined", help="segment, com, refined, or a fixed U,V,D")
    s.add_argument("--centre-run", type=Path, action="append", default=[],
                   help="centre-refinement run (target = centre) for --centre refined; repeat: runs on larger cubes "
                        "go first (default: the pose run's own palm prediction)")
    s.add_argument("--rgb", nargs="+", metavar="FILE|DIR", help="registered colour frames (RGB and fusion nets)")
    s.add_argument("--camera", help="fx,fy,cx,cy of your sensor (default: NYU's, for 640x480 frames)")
    s.add_argument("--depth-scale", type=float, default=1.0, help="mm per stored unit (e.g. 0.1, 0.125)")
    s.add_argument("--cube", type=float, help="cube edge in mm (default: the run's)")
    s.add_argument("--refine-steps", type=int, default=3,
                   help="re-crops on the predicted palm per centre run (--centre refined)")
    s.add_argument("--batch-size", type=int, default=64, help="frames per batch")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    s.add_argument("--overlay", action="store_true", help="also draw each frame's skeleton (overlays/*.png)")
    s.add_argument("--hand", choices=["right", "left", "auto"], default="right",
                   help="left: mirror the frame, predict, mirror the joints back (the models know right hands "
                        "only); auto: both, keeping per frame the pose that fits the depth better (predictions.json "
                        "records which)")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_predict, outputs=[Out("out", "folder")])

    s = add("export", "export a trained run's network to ONNX or TorchScript")
    s.add_argument("--run", type=Path, required=True, help="trained run folder")
    s.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="file format")
    s.add_argument("--out", type=Path, required=True, help="output file")
    _allow_unfinished(s)
    s.set_defaults(func=_cmd_export, outputs=[Out("out", "file", ("onnx", "zip"))])


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(prog="hpe", formatter_class=_Help, parents=[common],
                                description="Hand pose estimation with ConvNets on RGB-D data (Kazakos 2017), "
                                            "reproduced in PyTorch.")
    p.add_argument("--version", action="version", version=f"hpe {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    add = lambda name, help: sub.add_parser(name, help=help, description=help, parents=[common],  # noqa: E731
                                            formatter_class=_Help)
    _data_commands(add, common)
    _training_commands(add, common)
    _evaluation_commands(add, common)
    _figure_commands(add, common)
    _tool_commands(add, common)
    _scale_commands(add, common)
    _file_outputs_refuse_folders(p)
    return p


def _file_outputs_refuse_folders(parser: argparse.ArgumentParser) -> None:
    """A file output (or a file-name prefix) typed with a trailing '/' means a folder: refused at parse time for
    every command that declares one, rather than writing ``DIR.png`` beside the folder the user meant."""
    def file_path(text: str) -> Path:
        if text.endswith(("/", os.sep)):
            raise argparse.ArgumentTypeError(f"{text} ends in '/', a folder: give a file name (e.g. {text}NAME)")
        return Path(text)

    kinds = {o.arg for o in parser.get_default("outputs") or () if o.kind in ("file", "prefix")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _file_outputs_refuse_folders(child)
        elif action.dest in kinds:
            action.type = file_path


def _input_paths(a) -> list[Path]:
    """Every path argument that is not a declared output: what the command reads."""
    outs = {o.arg for o in getattr(a, "outputs", ())}
    found = []
    for key, value in vars(a).items():
        if key in outs or key == "outputs":
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, Path):
                found.append(v)
    return found


def _command_parser(parser: argparse.ArgumentParser, a: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``a`` names, e.g. ``figure frame``'s: its errors say ``hpe figure frame:``."""
    for name in filter(None, (getattr(a, dest, None) for dest in ("cmd", "kind", "action"))):
        sub = next((act for act in parser._actions if isinstance(act, argparse._SubParsersAction)), None)
        if sub is None or name not in sub.choices:
            break
        parser = sub.choices[name]
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name the top parser ("hpe: error:"), not the command the user typed
        _command_parser(parser, a).error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    name = " ".join(filter(None, [a.cmd, getattr(a, "kind", None), getattr(a, "action", None)]))
    for o in getattr(a, "outputs", ()):
        given = getattr(a, o.arg, None)
        prefix = as_prefix(given) if o.kind == "prefix" and given else None
        if prefix is not None and prefix != Path(given):
            setattr(a, o.arg, type(given)(prefix))
            print(f"note: --{o.arg} {given} names the outputs' prefix: writing {prefix}.* instead of {given}.*",
                  file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    outputs = [(Path(getattr(a, o.arg)), o.kind) for o in getattr(a, "outputs", ()) if getattr(a, o.arg, None)]
    try:
        check_apart(outputs, _input_paths(a))
        holds = {Path(getattr(a, o.arg)): o.holds for o in getattr(a, "outputs", ()) if getattr(a, o.arg, None)}
        with catch_dropped_interrupts(), claim(outputs, name, holds):
            code = a.func(a)
            raise_dropped_interrupt()
            return code
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"hpe {name}: error: {exc}", file=sys.stderr)
        return 2
    except _Terminated:
        print(f"hpe {name}: terminated; nothing half-written was kept", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"hpe {name}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpe nets | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # unreadable input, unwritable output, a disk that filled up
        print(f"hpe {name}: error: {io_error_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # torch's allocators: a net or batch too big for this machine
        if not isinstance(exc, MemoryError) and "alloc" not in str(exc) and "out of memory" not in str(exc):
            raise
        print(f"hpe {name}: error: out of memory ({str(exc).splitlines()[0][:160]}): a smaller input_size, "
              f"width or batch_size, or a machine with more memory", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
