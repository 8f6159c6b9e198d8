import os

import pytest
from hpe.baselines import bundled

try:
    from hypothesis import Phase, settings
except ModuleNotFoundError:  # tests/test_properties.py fails and says how to install it; the rest runs
    pass
else:
    # HYPOTHESIS_PROFILE=mutation (make mutation): the same examples every run and no shrinking -- a mutant only needs
    # one failing example to be killed, and shrinking it costs a minute.
    settings.register_profile("mutation", derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                              database=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Under pytest-xdist (make test: two workers on two cores) each worker and every process it starts computes on one
# thread: two workers of two threads each would fight over two cores.  Results do not depend on it (the tests that
# compare runs bit for bit run both sides under the same setting).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def nyu_labels():
    """The bundled NYU test ground truth (gzipped label file)."""
    return bundled("nyu_test_groundtruth_label.txt")


@pytest.fixture(scope="session")
def sample_frame():
    """The bundled real NYU test frame 1: (depth PNG, RGB PNG)."""
    return bundled("sample/depth_1_0000001.png"), bundled("sample/rgb_1_0000001.png")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic NYU-layout dataset: 40 training and 16 test frames."""
    from hpe.synthetic import generate
    root = tmp_path_factory.mktemp("synthetic") / "nyu"
    generate(root, 40, 16, seed=3, workers=2)
    return root


def _prepared(root, tmp_path_factory, name: str, size: int):
    from hpe.prep import prep, prep_config
    out = tmp_path_factory.mktemp("h5") / name
    prep(root, out, prep_config(size=size, workers=2), progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_h5(synthetic_root, tmp_path_factory):
    return _prepared(synthetic_root, tmp_path_factory, "syn.h5", 64)


# --- tiny trained runs shared by the output-layer, run-contract and sweep tests (issue 19) -----------------------
TINY_RUN = dict(width=0.125, fc_units=64, input_size=32, batch_size=8, progress="none", device="cpu", max_epochs=2,
                limit_train=16, require_learning=False)


@pytest.fixture(scope="session")
def tiny_runs(synthetic_h5, tmp_path_factory):
    """Run folders in each state the run-folder contract knows: ``done`` (depth), ``rgb`` (an RGB-Net, done),
    ``centre`` (target = centre, done), ``not_learned``, ``diverged`` and ``unfinished`` (no result.json)."""
    import shutil

    from hpe.train import train
    base = tmp_path_factory.mktemp("tiny-runs")
    train(dict(data=str(synthetic_h5), out=str(base / "done"), **TINY_RUN))
    train(dict(data=str(synthetic_h5), out=str(base / "rgb"), inputs="rgb", **TINY_RUN))
    train(dict(data=str(synthetic_h5), out=str(base / "centre"), target="centre", centre_jitter_mm=20.0, **TINY_RUN))
    train(dict(data=str(synthetic_h5), out=str(base / "not_learned"), **{**TINY_RUN, "require_learning": True,
                                                                         "max_epochs": 1, "limit_train": 8}))
    train(dict(data=str(synthetic_h5), out=str(base / "diverged"), **{**TINY_RUN, "lr": 1e6, "max_epochs": 4}))
    shutil.copytree(base / "done", base / "unfinished")
    (base / "unfinished" / "result.json").unlink()
    return base


@pytest.fixture(scope="session")
def other_h5(synthetic_root, tmp_path_factory):
    """A prepared file of the same frames with another crop size: other data, another fingerprint."""
    return _prepared(synthetic_root, tmp_path_factory, "other.h5", 48)



@pytest.fixture
def hpe_cli(capsys):
    """``hpe ARGS`` run in this process: (exit status, stdout, stderr).  For refusals and messages: a subprocess
    would pay an interpreter start and a torch import (~3 s under coverage) to test the same code; the tests that
    need a real process (signals, pipes, locks, disk full, the entry point) start one."""
    from hpe.cli import main

    def run(*argv) -> tuple[int, str, str]:
        import torch
        deterministic = torch.are_deterministic_algorithms_enabled()  # `--set deterministic=true` sets it for good
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors and --help
            code = exc.code
        finally:
            torch.use_deterministic_algorithms(deterministic)
        out, err = capsys.readouterr()
        return code, out, err
    return run
