"""hpe scale: tiling a prepared file to NYU's split sizes, the loading measurement, the README table."""
import json
import re
from pathlib import Path

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
    assert r["model_bytes"] > 0 and r["widened"] == []


def test_a_loader_that_widens_a_split_fails_the_bound(synthetic_h5, monkeypatch):
    """A careless user's find: the compact size was counted from the tensors the loader returned, so a loader that
    kept a split in float32 looked better, not worse.  It is counted in the stored dtypes, and a widened split
    fails the bound whatever the peak."""
    import hpe.train
    load = hpe.train.load_training_splits

    def widening(cfg, attrs):
        train_d, val_d, rest = load(cfg, attrs)
        val_d.depth = val_d.depth.float()
        return train_d, val_d, rest
    args = (str(synthetic_h5), "experiments/fig4.7/depthnet.toml", "experiments/presets/tiny.toml")
    honest = child_load(*args)
    monkeypatch.setattr(hpe.train, "load_training_splits", widening)
    wide = child_load(*args)
    assert wide["compact_bytes"] == honest["compact_bytes"]
    assert wide["widened"] == ["depth torch.float32"] and not wide["within_bound"]


def test_scale_commands_refuse_what_they_cannot_measure(synthetic_h5, tmp_path, hpe_cli):
    """One line each, no file written, no scratch folder left (a careless user's finds)."""
    import glob
    import tempfile
    out = tmp_path / "s.json"
    before = set(glob.glob(str(Path(tempfile.gettempdir()) / "hpe-scale-*")))
    for args, message in ((["--only", "load"], "nothing to measure"),
                          (["--h5", f"thesis={synthetic_h5}", "--steps", "0"], "--steps 0: at least 2"),
                          (["--root", str(tmp_path), "--decode-frames", "0"], "--decode-frames 0: at least 1")):
        code, _, err = hpe_cli("scale", "measure", "--out", out, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not out.exists() and set(glob.glob(str(Path(tempfile.gettempdir()) / "hpe-scale-*"))) == before
    for text, message in (("{", "is not valid JSON"), ("{}", "holds no measured section"),
                          ('{"prep": {"decode_bound": {}}}', "lacks 'frames_per_s'")):
        (tmp_path / "r.json").write_text(text)
        code, _, err = hpe_cli("scale", "table", tmp_path / "r.json")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (text, err)
    import h5py
    h5py.File(tmp_path / "bare.h5", "w").create_group("train")
    code, _, err = hpe_cli("scale", "tile", tmp_path / "bare.h5", tmp_path / "o.h5")
    assert code == 2 and "bare.h5 lacks the attribute(s)" in err and not (tmp_path / "o.h5").exists()


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


def test_a_results_file_measured_by_two_runs_says_so(synthetic_root, synthetic_h5, tmp_path):
    """`hpe scale measure --out EXISTING` by hand keeps the sections it does not measure: the file records which
    run measured each section, and the table names the runs when they differ."""
    from hpe.scale import measure, runs_of
    out, said = tmp_path / "r.json", []
    measure(out, root=synthetic_root, h5={"thesis": synthetic_h5}, only=["generation"], log=said.append)
    first = json.loads(out.read_text())
    assert len(runs_of(first)) == 1 and "measured by" not in table(first)
    measure(out, root=synthetic_root, only=["generation"], log=said.append)
    doc = json.loads(out.read_text())
    assert doc["measured_by"]["generation"] != doc["measured_by"]["hdf5_thesis"] == first["measured_by"]["generation"]
    assert re.search(r"\nmeasured by +2 runs: ", table(doc)) and any(line.startswith("note: ") for line in said)


def test_steps_beyond_a_small_files_frames_and_experiments_from_any_folder(synthetic_h5, tmp_path, monkeypatch,
                                                                           hpe_cli):
    """Careless users' finds: `scale measure --steps 100` on a small file ended in a child's IndexError (the batches
    ran past the frames: they wrap round now), and outside the repository the experiment files were not found
    (they are looked up in the checkout too; a missing --preset is one line before any work)."""
    from hpe.scale import child_steps
    monkeypatch.chdir(tmp_path)  # not the repository: experiments/... resolve in the checkout
    with h5py.File(synthetic_h5) as f:
        frames = len(f["train/depth"])
    r = child_steps(str(synthetic_h5), "experiments/fig4.7/depthnet.toml", "experiments/presets/tiny.toml", {},
                    steps=frames // 32 + 3, work=str(tmp_path / "w"))
    assert len(r["step_seconds"]) == frames // 32 + 3 and r["train_frames_loaded"] == frames
    code, _, err = hpe_cli("scale", "measure", "--out", tmp_path / "s.json", "--h5", f"thesis={synthetic_h5}",
                           "--only", "steps", "--preset", tmp_path / "nope.toml")
    assert code == 2 and "nope.toml: no such experiment file here or in" in err and not (tmp_path / "s.json").exists()
