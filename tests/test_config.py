"""One config chain, validated by type and range whichever layer a value comes from."""

import pytest

from hpe import DataError
from hpe.config import TrainConfig, build_train_config, config_from_dict, parse_overrides, profile_section, user_layers
from hpe.prep import prep, prep_config


@pytest.fixture(scope="module")
def icip_h5(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("icip") / "icip.h5"
    prep(synthetic_root, out, prep_config("icip2018", size=32, workers=1, limit=24), progress=False)
    return out


@pytest.mark.parametrize("layer, message", [
    ({"lr": "abc"}, "lr = 'abc': expected a number, got str"),
    ({"lr": "0.01"}, "lr = '0.01': expected a number"),
    ({"lr": float("nan")}, "lr = nan: must be a finite number"),
    ({"lr": float("inf")}, "must be a finite number"),
    ({"lr": 0.0}, "lr = 0.0: must be > 0"),
    ({"batch_size": 0}, "batch_size = 0: must be >= 1"),
    ({"batch_size": -3}, "batch_size = -3: must be >= 1"),
    ({"batch_size": 16.0}, "batch_size = 16.0: expected an integer"),
    ({"max_epochs": 0}, "max_epochs = 0: must be >= 1"),
    ({"width": 0}, "width = 0: must be > 0"),
    ({"dropout": 1.0}, "dropout = 1.0: must be < 1"),
    ({"momentum": 1.5}, "momentum = 1.5: must be <= 1"),
    ({"channels_last": 1}, "channels_last = 1: expected true or false"),
    ({"inputs": "thermal"}, "inputs = 'thermal': must be one of depth, rgb, rgbd, depth\\+rgb"),
    ({"profile": "icip"}, "profile = 'icip': must be one of thesis, icip2018"),
    ({"bogus": 1}, "unknown config keys: bogus"),
])
def test_bad_values_are_one_line_naming_key_value_and_layer(layer, message):
    with pytest.raises(ValueError, match=message) as info:
        build_train_config([("my.toml", layer)])
    assert str(info.value).startswith("my.toml: ") and "\n" not in str(info.value)


def test_a_falsy_value_never_falls_back_to_a_default(synthetic_h5):
    with pytest.raises(ValueError, match="max_epochs = 0"):
        build_train_config([("--set", {"data": str(synthetic_h5), "max_epochs": 0})])
    cfg = build_train_config([("--set", {"data": str(synthetic_h5), "max_halvings": 0, "dropout": 0.0})])
    assert cfg.max_halvings == 0 and cfg.dropout == 0.0


def test_toml_strings_for_numbers_are_refused(tmp_path, synthetic_h5):
    exp = tmp_path / "e.toml"
    exp.write_text('[train]\nlr = "0.01"\n')
    with pytest.raises(ValueError, match=f"{exp}: lr = '0.01': expected a number"):
        build_train_config(user_layers(exp, overrides={"data": str(synthetic_h5)}))


def test_overrides_parse_like_the_command_line():
    assert parse_overrides(["lr=0.5", "channels_last=true", "net=net1", "limit_train=None", "a=False"]) == {
        "lr": 0.5, "channels_last": True, "net": "net1", "limit_train": None, "a": False}
    assert parse_overrides(["lr=abc"]) == {"lr": "abc"}  # judged by validation, not here
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_profiles_are_data_under_the_user_layers(synthetic_h5, icip_h5):
    thesis = build_train_config([("x", {"data": str(synthetic_h5)})])
    assert (thesis.profile, thesis.pool, thesis.batch_size, thesis.nesterov, thesis.loss_scale) == (
        "thesis", 2, 128, False, "1/(2J)")
    assert thesis.input_size == 64  # the prepared crop size
    icip = build_train_config([("x", {"data": str(icip_h5)}), ("preset", {"batch_size": 16})])
    assert icip.profile == "icip2018" and icip.pool == 3 and icip.on_plateau == "halve-restore-rewind"
    assert icip.batch_size == 16  # the preset wins over the profile
    assert profile_section("icip2018", "train")["patience"] == 6


def test_the_data_file_decides_the_profile(synthetic_h5, icip_h5):
    with pytest.raises(ValueError, match="prepared with profile 'icip2018' but the config asks for 'thesis'"):
        build_train_config([("--set", {"data": str(icip_h5), "profile": "thesis"})])
    from hpe.train import train
    with pytest.raises(ValueError, match="prepared with profile 'thesis' but the config says 'icip2018'"):
        train(TrainConfig(data=str(synthetic_h5), profile="icip2018"))


def test_saved_configs_round_trip_and_foreign_ones_are_refused(synthetic_h5):
    cfg = build_train_config([("x", {"data": str(synthetic_h5)})])
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DataError, match="written by another hpe version"):
        config_from_dict({**cfg.to_dict(), "old_key": 1})


def test_cli_prints_one_line(synthetic_h5, tmp_path, hpe_cli):
    code, _, err = hpe_cli("train", "--data", synthetic_h5, "--out", tmp_path / "r", "--set", "batch_size=0")
    assert code == 2 and err.strip() == "hpe train: error: --set: batch_size = 0: must be >= 1"


def test_a_binary_or_a_folder_given_as_the_experiment_is_one_line(tmp_path):
    """Found by a careless user: `hpe train data/syn.h5 ...` printed a bare UnicodeDecodeError."""
    from hpe.config import read_toml
    binary = tmp_path / "syn.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\x00\xff")
    with pytest.raises(ValueError, match="syn.h5 is not a text file: give an experiment/preset .toml file"):
        read_toml(binary)
    with pytest.raises(FileNotFoundError, match="is a folder"):
        read_toml(tmp_path)
