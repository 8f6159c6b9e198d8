import os

import pytest
from hypothesis import Phase, settings

from hpe.baselines import bundled

# HYPOTHESIS_PROFILE=mutation (make mutation): the same examples every run and no shrinking -- a mutant only needs
# one failing example to be killed, and shrinking it costs a minute.
settings.register_profile("mutation", derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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


@pytest.fixture(scope="session")
def synthetic_h5(synthetic_root, tmp_path_factory):
    from hpe.prep import prep, prep_config
    out = tmp_path_factory.mktemp("h5") / "syn.h5"
    prep(synthetic_root, out, prep_config(size=64, workers=2), progress=False)
    return out
