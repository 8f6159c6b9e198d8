import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HPE_SHARED", REPO.parent / "shared"))
BASELINES = SHARED / "baselines" / "nyu"


def need_baselines():
    if not (BASELINES / "nyu_test_groundtruth_label.txt").is_file():
        pytest.skip(f"published NYU baselines not found in {BASELINES} (set HPE_SHARED to the shared/ folder)")
    return BASELINES


@pytest.fixture(scope="session")
def baselines():
    return need_baselines()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic NYU-layout dataset: 40 training and 16 test frames."""
    from data_prep.synthetic_nyu import generate
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, 40, 16, seed=3, workers=2)
    return root


@pytest.fixture(scope="session")
def synthetic_h5(synthetic_root, tmp_path_factory):
    from hpe.prep import PrepConfig, prep
    out = tmp_path_factory.mktemp("h5") / "syn.h5"
    prep(synthetic_root, out, PrepConfig(size=64, workers=2), progress=False)
    return out
