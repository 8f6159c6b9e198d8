"""hpe scale: tiling a prepared file to NYU's split sizes, the loading measurement, the README table."""
import json

import h5py
import numpy as np
import pytest

from hpe import DataError
from hpe.dataset import SCHEMA, open_prepared
from hpe.scale import BEGIN, END, child_load, nyu_split_sizes, table, tile_to_nyu, update_readme


def test_nyu_split_sizes_follow_the_profile(synthetic_h5):
    with h5py.File(synthetic_h5) as f:
        attrs = dict(f.attrs)
    assert nyu_split_sizes(attrs) == {"train": 54568, "val": 18189, "test": 8252}  # thesis: 25 % uniform
    attrs.update(val_method="train_test_split", val_fraction=0.5, val_seed=10)
    assert nyu_split_sizes(attrs) == {"train": 36378, "val": 36379, "test": 8252}  # icip2018: sklearn's half


def test_tiled_file_has_prep_layout_and_subject_order(synthetic_h5, tmp_path):
    out = tmp_path / "tiled.h5"
    sizes = tile_to_nyu(synthetic_h5, out, block=7, sizes={"train": 50, "val": 20, "test": 30}, subject1=12)
    assert open_prepared(out).sizes == sizes == {"train": 50, "val": 20, "test": 30}
    with h5py.File(out) as f, h5py.File(synthetic_h5) as src:
        assert f.attrs["test_subject1_frames"] == 12 and "tiled from" in f.attrs["source"]
        for name in SCHEMA:
            assert f["train"][name].dtype == src["train"][name].dtype
            assert f["train"][name].chunks[1:] == src["train"][name].chunks[1:]
        subject = f["test/subject"][:]
        assert (subject[:12] == 1).all() and (subject[12:] == 2).all()
        n = len(src["train/depth"])
        assert n < 50 and np.array_equal(f["train/depth"][n:], src["train/depth"][:50 - n])  # frames repeat in order


def test_load_measurement_reports_compact_and_peak(synthetic_h5):
    r = child_load(str(synthetic_h5), "experiments/fig4.7/rgbdnet.toml", "experiments/presets/tiny.toml")
    with h5py.File(synthetic_h5) as f:
        frames = len(f["train/depth"]) + len(f["val/depth"])
    assert r["inputs"] == "rgbd" and r["frames"] == frames and r["input_size"] == 32
    assert r["compact_bytes"] >= frames * 32 * 32 * 5 and r["load_peak_rss"] >= r["rss_before_load"] > 0
    assert r["model_bytes"] > 0


def test_table_and_readme_round_trip(tmp_path):
    doc = {"load": {"depth": {"load_peak_rss": 3 * 2**30, "compact_bytes": 2 * 2**30, "peak_over_compact": 1.5,
                              "growth_over_compact": 1.05, "load_seconds": 12.0}},
           "machine": {"cores": 2, "cpu": "CPU", "memory_bytes": 24 * 2**30, "load_average": [1.0, 1.0, 1.0]}}
    results = tmp_path / "r.json"
    results.write_text(json.dumps(doc))
    text = table(doc)
    assert "peak RSS 3.00 GiB for 2.00 GiB compact" in text and "2 x CPU, 24 GiB" in text
    readme = tmp_path / "README.rst"
    readme.write_text(f"Scale\n-----\n{BEGIN}\n\nold table\n\n{END}\nafter\n")
    update_readme(results, readme)
    new = readme.read_text()
    assert "old table" not in new and text in new and new.endswith(f"{END}\nafter\n")
    readme.write_text("no markers\n")
    with pytest.raises(DataError, match="markers"):
        update_readme(results, readme)
