"""The README's Python API example runs, on tiny data, exactly as written (bar the paths and the epochs)."""
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.rst"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("\nPython API\n"):]
    block = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section).group(1)
    return textwrap.dedent(block)


def test_readme_python_example_runs(synthetic_root, synthetic_h5, tmp_path, capsys):
    code = readme_example()
    out = tmp_path / "api-demo"
    swaps = {'"data/synthetic-thesis.h5"': repr(str(synthetic_h5)),
             '"results/runs/api-demo"': repr(str(out)),
             '"data/synthetic/test/depth_1_0000001.png"': repr(str(synthetic_root / "test" / "depth_1_0000001.png")),
             '"max_epochs": 25': '"max_epochs": 2, "limit_train": 16, "require_learning": False, "progress": "none"'}
    for old, new in swaps.items():
        assert code.count(old) == 1, f"the README example changed: {old} not found once"
        code = code.replace(old, new)
    ns = {}
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - the README's own example
    assert ns["result"]["run_dir"] == str(out) and ns["result"]["config"]["data"] == str(synthetic_h5)
    assert ns["joints_xyz"].shape == (14, 3) and np.isfinite(ns["joints_xyz"]).all()
    # the array scored through the API equals what train() reported for the same predictions
    assert ns["table"]["mean_mm"] == pytest.approx(ns["result"]["test_mean_mm"], rel=1e-6)
    assert ns["table"]["success"] == "max"
    batch = ns["predict"](np.stack([ns["depth_mm"], ns["depth_mm"]]))
    np.testing.assert_allclose(batch[0], ns["joints_xyz"], atol=1e-4)


def test_predictor_equals_hpe_predict(synthetic_root, synthetic_h5, tmp_path):
    """load_predictor(run)(depth) gives what `hpe predict` writes for the same frame, and bad input is refused."""
    import json

    from hpe import DataError
    from hpe.nyu import read_depth
    from hpe.predict import load_predictor, predict
    from hpe.train import train
    run = tmp_path / "run"
    train({"data": str(synthetic_h5), "out": str(run), "width": 0.125, "fc_units": 64, "input_size": 32,
           "batch_size": 8, "max_epochs": 1, "limit_train": 16, "require_learning": False, "progress": "none"})
    frame = synthetic_root / "test" / "depth_1_0000002.png"
    predict(run, [str(frame)], tmp_path / "p", progress=False, hand="auto")
    rec = json.loads((tmp_path / "p" / "predictions.json").read_text())[0]
    p = load_predictor(run, hand="auto", device="cpu")
    got = p.predict(read_depth(frame).astype(np.float32))
    np.testing.assert_allclose(got["joints_xyz"], rec["joints_xyz"], atol=1e-3)
    assert got["hand"] == rec["hand"]
    with pytest.raises(DataError, match="no valid depth"):
        p(np.zeros((480, 640)))
    with pytest.raises(ValueError, match="shape"):
        p(np.zeros(5))
    with pytest.raises(ValueError, match="hand"):
        load_predictor(run, hand="both")
