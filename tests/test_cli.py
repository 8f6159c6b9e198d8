"""The command line: help on every option, choices, defaults, versions, pipes, and an install outside a checkout."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from hpe import __version__
from hpe.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_option_has_help_and_enumerations_have_choices():
    enumerated = {"--profile", "--format", "--success", "--centre", "--joints", "--compile-mode", "--weights",
                  "--progress", "--bundled"}
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"hpe {name} {action.option_strings or action.dest} has no help"
            free = action.type in (int, float) or (name == "predict" and "--centre" in action.option_strings)  # U,V,D
            if set(action.option_strings) & enumerated and not free:
                assert action.choices, f"hpe {name} {action.option_strings} should list its choices"


def test_help_shows_defaults_and_figure_kinds_have_only_their_options(hpe_cli):
    code, out, _ = hpe_cli("synth", "--help")
    assert code == 0 and "(default: 1800)" in out
    _, table, _ = hpe_cli("figure", "table4.3", "--help")
    assert "--method" in table and "--depth" not in table and "--tompson" not in table
    code, _, err = hpe_cli("figure", "frame", "--out", "x", "--run", "y")
    assert code == 2 and "unrecognized arguments: --run" in err


def test_version_flags_after_the_subcommand_and_pipes(hpe_cli):
    r = subprocess.run([sys.executable, "-m", "hpe", "--version"], capture_output=True, text=True)
    assert r.stdout.strip() == f"hpe {__version__}"
    small = ["--input-size", "32"]
    code, out, _ = hpe_cli("nets", "-v", "--quiet", *small)
    assert code == 0 and "Depth-Net" in out
    # `hpe nets | head`: the reader has left before hpe writes a byte (closed here at once, so the write surely
    # meets a broken pipe); hpe's own exit status is checked, not the reader's.
    p = subprocess.Popen([sys.executable, "-m", "hpe", "nets"] + small, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait() == 0 and err == ""


def test_installed_package_finds_its_bundled_files(tmp_path):
    """`pip install .` (not an editable checkout): the labels, profiles and sample frame are package data."""
    import shutil  # built from a copy: setuptools leaves build/ and hpe.egg-info/ in the tree it builds from
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "data", "results", "mutants", "build",
                                                             "*.egg-info", "__pycache__", ".coverage*", "*.h5"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                        str(tmp_path / "site"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "site").iterdir() if not p.name.endswith(".dist-info")) == ["bin", "hpe"]
    site, env = tmp_path / "site", {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    code = ("import hpe, hpe.baselines as b, hpe.config as c; print(hpe.__file__); "
            "print(b.bundled('nyu_test_groundtruth_label.txt')); "
            "print(c.profile_section('icip2018', 'prep')['val_seed'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stderr
    assert lines[0].startswith(str(site)) and lines[1].startswith(str(site)) and lines[2] == "10"
    feedback = site / "hpe" / "reference" / "nyu" / "ICCV15_NYU_Feedback.txt.gz"
    r = subprocess.run([sys.executable, "-m", "hpe", "evaluate", "--pred", str(feedback)], cwd=tmp_path,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "15.973" in r.stdout, r.stderr


@pytest.mark.parametrize("args, message", [
    (["search", "--data", "x.h5"], "the following arguments are required: --out"),
    (["sweep-fusion", "--data", "x.h5"], "the following arguments are required: --out"),
    (["nets", "--input-size", "0"], "--input-size 0 and --joints 14 must be positive"),
    (["prep", "root", "o.h5", "--size", "0"], "command line: size = 0: must be >= 8"),
    (["predict", "--run", "r", "--out", "o", "f.png", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
])
def test_careless_arguments_are_one_line(args, message, hpe_cli):
    code, _, err = hpe_cli(*args)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_repeated_list_options_add_up():
    """``--only A --only B`` means both (argparse's default kept only the last, and fetched one file of two)."""
    from hpe.cli import build_parser
    a = build_parser().parse_args(["baselines", "fetch", "--dest", "k", "--only", "DeepPrior", "--only", "Feedback",
                                   "DeepModel"])
    assert a.only == ["DeepPrior", "Feedback", "DeepModel"]
