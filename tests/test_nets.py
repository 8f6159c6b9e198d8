import json
from pathlib import Path

import pytest
import torch

from hpe.nets import (
    FUSION_FUNCTIONS,
    FuseNet,
    NetConfig,
    PoseNet,
    count_parameters,
    forward_macs,
    fusion_points,
    list_nets,
    table_parameter_count,
)

SMALL = dict(input_size=32, width=0.125, fc_units=256, num_joints=14)


def _check(model, *inputs):
    out = model(*inputs)
    assert out.shape == (inputs[0].shape[0], 42)
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    out.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list_nets())
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_net_forward_backward(name, channels):
    torch.manual_seed(0)
    _check(PoseNet(NetConfig(name=name, in_channels=channels, **SMALL)), torch.randn(2, channels, 32, 32))


@pytest.mark.parametrize("function", FUSION_FUNCTIONS)
@pytest.mark.parametrize("at, style", [(at, "thesis") for at in fusion_points("net6")]
                         + [("fc1", "author"), ("fc2", "author")])  # the styles differ only at fc layers
def test_every_fusenet(at, function, style):
    torch.manual_seed(0)
    model = FuseNet(NetConfig(name="net6", **SMALL), 3, at, function, style)
    _check(model, torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32, 32))


def test_fc_fusion_as_the_author_builds_it():
    """The author's fc-level conv fusion: a 1-filter Conv1D over the two stacked streams (w_rgb, w_depth, bias =
    3 parameters), no dropout in the streams' fused layer, one dropout after the merge.  The thesis style is eq.
    4.18 on vectors: a linear layer 2D -> D, with each stream's dropout before fusing."""
    cfg = NetConfig(name="net6", **{**SMALL, "fc_units": 4096, "width": 0.125})
    author = FuseNet(cfg, 4, "fc1", "conv", "author")
    thesis = FuseNet(cfg, 4, "fc1", "conv", "thesis")
    assert count_parameters(author.fusion) == 3
    d = cfg.scaled(cfg.fc_units)
    assert count_parameters(thesis.fusion) == 2 * d * d + d  # 33.6 M at full width (d = 4096)
    assert not any(isinstance(m, torch.nn.Dropout) for m in author.depth_stream[-1].modules())
    assert isinstance(author.after, torch.nn.Dropout)
    assert isinstance(thesis.depth_stream[-1][-1], torch.nn.Dropout) and isinstance(thesis.after, torch.nn.Identity)
    a, b = torch.randn(2, d), torch.randn(2, d)
    w = author.fusion.reduce.weight.view(2)
    torch.testing.assert_close(author.fusion(a, b), w[0] * b + w[1] * a + author.fusion.reduce.bias)


def test_parameter_counts_match_tables():
    # Depth-Net, thesis profile, 128x128, 14 joints: about 151.9 M (FACTS.md 4)
    assert count_parameters(PoseNet(NetConfig(name="net6"))) == table_parameter_count("net6") == 151_904_394
    icip = PoseNet(NetConfig(name="net6", pool=3))
    assert count_parameters(icip) == table_parameter_count("net6", pool=3) == 26_075_274
    for name in list_nets():
        cfg = NetConfig(name=name, input_size=64, width=1.0, fc_units=64)
        assert count_parameters(PoseNet(cfg)) == table_parameter_count(name, 64, fc_units=64)


def test_lasagne_init():
    """Glorot uniform (Lasagne's default): U(-b, b), b = sqrt(6 / (fan_in + fan_out)), in every conv and fc layer."""
    torch.manual_seed(0)
    m = PoseNet(NetConfig(name="net1", **SMALL))
    layers = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 4 + 3
    for mod in layers:
        w = mod.weight.detach()
        k = w[0, 0].numel()  # kernel area (1 for a linear layer)
        bound = (6 / (w.shape[1] * k + w.shape[0] * k)) ** 0.5
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
        if w.numel() >= 1000:  # a uniform on (-b, b) has standard deviation b / sqrt(3)
            assert abs(w.std().item() / (bound / 3 ** 0.5) - 1) < 0.1
    assert all((mod.bias == 0).all() for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)))


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown net 'net10'"):
        PoseNet(NetConfig(name="net10"))
    with pytest.raises(ValueError, match="shrinks to nothing at pooling layer 5"):
        PoseNet(NetConfig(name="net8", pool=3))
    with pytest.raises(ValueError, match="fusion layer 'conv10' out of range"):
        FuseNet(NetConfig(name="net6", **SMALL), 3, "conv10")
    with pytest.raises(ValueError, match="unknown fusion function"):
        FuseNet(NetConfig(name="net6", **SMALL), 3, "conv4", "avg")


@pytest.mark.parametrize("name", list_nets())
@pytest.mark.parametrize("pool", [2, 3])
def test_forward_macs_match_the_layers_run(name, pool):
    """The plan-based count equals what the built layers compute, read off forward hooks."""
    size = 48 if pool == 2 else 243 if name == "net8" else 81  # five 3x3 poolings need 3^5 pixels
    cfg = NetConfig(name=name, input_size=size, width=0.25, fc_units=64, pool=pool)
    model, macs = PoseNet(cfg), []

    def hook(m, inp, out):
        w = m.weight
        macs.append(out[0].numel() * w[0].numel() if isinstance(m, torch.nn.Conv2d) else w.numel())
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    model(torch.zeros(1, 1, size, size))
    assert forward_macs(cfg) == sum(macs)
    assert forward_macs(NetConfig(name="net6")) == 986_357_760  # thesis Depth-Net: about 1 GMAC per image


def test_bench_reports_ratio():
    from hpe.bench import bench_net
    r = bench_net("thesis", torch.device("cpu"), 32, 0.125, 8, 2, repeats=1)["reference"]
    assert r["train_images_per_s"] > 0 and 0 < r["loop_over_bare"] < 10 and r["infer_latency_ms_batch1"] > 0
    assert r["onnxruntime_cpu_latency_ms_batch1"] > 0 and r["onnxruntime_cpu_images_per_s_batch128"] > 0


def test_bench_run_counts_bookkeeping(synthetic_h5, tmp_path):
    """The end-to-end part runs train() itself on a tiled prepared file and splits loop from bookkeeping time."""
    import h5py

    from hpe.bench import _tile_h5, bench_run
    _tile_h5(synthetic_h5, tmp_path / "tiled.h5", 40)
    with h5py.File(synthetic_h5) as src, h5py.File(tmp_path / "tiled.h5") as f:
        n0 = src["train/frame"].shape[0]
        assert n0 < 40 and f["train/depth"].shape[0] == 40 and f["val/depth"].shape[0] == 13
        assert (f["train/frame"][n0:] == src["train/frame"][:40 - n0]).all()  # repeated from the start
    r = bench_run(tmp_path / "tiled.h5", torch.device("cpu"), 32, 0.125, 2, "default")
    assert r["train_frames"] == 40 and r["loop_images_per_s"] > 0 and 0 <= r["bookkeeping_share"] < 1
    assert r["projected_nyu_100_epochs_min"] > 0 and r["one_off_s"] >= 0 and r["other_s_per_epoch"] >= 0


def test_bench_projection_pays_one_off_costs_once(synthetic_h5, tmp_path, monkeypatch):
    """The GPU check's projection spread a short run's one-off costs (loading, the final checkpoint writes) over
    every epoch: 1.0 s an epoch, ~100 s of a projected 8.3 min.  Two runs of 1 and 3 epochs separate them; scripted
    timings check the arithmetic."""
    import hpe.bench as B
    B._tile_h5(synthetic_h5, tmp_path / "tiled.h5", 40)
    runs = iter([(10.0, [3.0], [1.0]),                      # 1 epoch: 6 s beyond its loop and validation
                 (20.0, [3.0, 2.0, 2.0], [1.0, 1.0, 1.0])])  # 3 epochs: 10 s beyond: 2 s an epoch, 4 s once
    monkeypatch.setattr(B, "_timed_train", lambda cfg: next(runs))
    monkeypatch.setattr(B, "_checkpoint_seconds", lambda *a: 0.5)
    r = B.bench_run(tmp_path / "tiled.h5", torch.device("cpu"), 32, 0.125, 3, "default")
    assert r["other_s_per_epoch"] == 2.0 and r["one_off_s"] == 4.0 and r["first_epoch_extra_s"] == 1.0
    loop_ips, val_ips = 40 / 2.0, r["val_frames"] / 1.0
    epoch = 54568 / loop_ips + 18189 / val_ips + 2.0
    total = 100 * epoch + 100 * epoch / 30 * 0.5 + 1.0 + 4.0
    assert r["projected_nyu_100_epochs_min"] == round(total / 60, 2)


def test_bench_report_rejects_a_foreign_file(tmp_path):
    from hpe.bench import report
    (tmp_path / "bench.json").write_text('{"device": "cpu", "torch": "x", "compile_mode": "default", '
                                         '"run_thesis_fast": {"loop_images_per_s": 1}}')
    with pytest.raises(ValueError, match="lacks 'val_images_per_s'"):
        report(tmp_path)
    (tmp_path / "bench.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        report(tmp_path)


GPU_RESULTS = Path(__file__).resolve().parent.parent / "results" / "gpu" / "h200"
GPU_FOLDERS = [GPU_RESULTS / name for name in ("check", "repeat", "reduce-overhead", "nyu-size")]


def test_readme_speed_table_is_the_committed_gpu_measurements():
    """README's Speed table is generated from results/gpu/ (`hpe bench --table ... --readme README.rst`): a number
    edited by hand in either place, or a measurement added without regenerating, fails here."""
    from hpe.bench import SPEED_BEGIN, SPEED_END, speed_table
    readme = (GPU_RESULTS.parents[2] / "README.rst").read_text()
    between = readme.split(SPEED_BEGIN, 1)[1].split(SPEED_END, 1)[0].strip()
    assert between == speed_table(GPU_FOLDERS)
    assert "21,366 (126.5)" in between and "NVIDIA H200" in between  # the first GPU check's thesis fast training


def test_speed_table_refuses_what_it_cannot_tabulate(tmp_path, hpe_cli):
    from hpe.bench import update_readme
    import shutil
    good = tmp_path / "check"
    shutil.copytree(GPU_FOLDERS[0], good)
    readme = tmp_path / "README.rst"
    readme.write_text("Speed\n-----\n.. speed-table-begin\n\nold\n\n.. speed-table-end\n\nafter\n")
    body = update_readme([good], readme)
    written = f"Speed\n-----\n.. speed-table-begin\n\n{body}\n\n.. speed-table-end\n\nafter\n"
    assert readme.read_text() == written
    bench = json.loads((good / "bench.json").read_text())
    cases = {"incomplete benchmark": dict(bench, complete=False),
             "lacks 'run_thesis_fast'": {k: v for k, v in bench.items() if k != "run_thesis_fast"}}
    for message, doc in cases.items():
        (good / "bench.json").write_text(json.dumps(doc))
        with pytest.raises(ValueError, match=message):
            update_readme([good], readme)
    (good / "bench.json").write_text("{")
    code, _, err = hpe_cli("bench", "--table", good, "--readme", readme)
    assert code == 2 and "is not valid JSON" in err and len(err.splitlines()) == 1
    code, _, err = hpe_cli("bench", "--table", tmp_path / "nope")
    assert code == 2 and "missing" in err and "nope" in err
    code, _, err = hpe_cli("bench", "--readme", readme)
    assert code == 2 and "--readme goes with --table" in err
    (tmp_path / "plain.rst").write_text("no markers\n")
    code, _, err = hpe_cli("bench", "--table", GPU_FOLDERS[0], "--readme", tmp_path / "plain.rst")
    assert code == 2 and "lacks the '.. speed-table-begin'" in err
    assert (tmp_path / "plain.rst").read_text() == "no markers\n"
    assert readme.read_text() == written  # the refusals left the last good table alone
