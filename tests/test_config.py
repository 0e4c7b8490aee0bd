"""TrainConfig: the paper's defaults, objective names (Table 1) and presets with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from pix2pix.config import Objective, TrainConfig, list_presets, load_preset, parse_objective


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # the five rows of Table 1
        ("l1", Objective(l1=True, l2=False, adversarial=None)),
        ("gan", Objective(l1=False, l2=False, adversarial="gan")),
        ("cgan", Objective(l1=False, l2=False, adversarial="cgan")),
        ("l1+gan", Objective(l1=True, l2=False, adversarial="gan")),
        ("l1+cgan", Objective(l1=True, l2=False, adversarial="cgan")),
        # L2 variants (section 3.1 discusses L2 against L1)
        ("l2", Objective(l1=False, l2=True, adversarial=None)),
        ("l1+l2", Objective(l1=True, l2=True, adversarial=None)),
        ("l2+cgan", Objective(l1=False, l2=True, adversarial="cgan")),
        # order, case and spaces do not matter
        ("cGAN + L1", Objective(l1=True, l2=False, adversarial="cgan")),
    ],
)
def test_parse_objective(name: str, expected: Objective) -> None:
    objective = parse_objective(name)
    assert objective == expected
    assert objective.conditional is (expected.adversarial == "cgan")


@pytest.mark.parametrize("name", ["gan+cgan", "foo", "", "l1+", "l1+l1", "l1,cgan"])
def test_parse_objective_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        parse_objective(name)


def test_defaults_are_the_papers() -> None:
    cfg = TrainConfig()
    # section 3.3: Adam, lr 0.0002, momentum 0.5; eq. 4: lambda 100
    assert (cfg.lr, cfg.beta1, cfg.beta2) == (2e-4, 0.5, 0.999)
    assert cfg.lambda_l1 == 100.0
    assert cfg.objective == "l1+cgan" and cfg.gan_mode == "vanilla"
    # appendix 6.1: 70x70 PatchGAN, U-Net with batch norm and dropout 0.5, ngf = ndf = 64
    assert cfg.receptive_field == 70
    assert cfg.generator == "unet" and cfg.skips
    assert cfg.norm == "batch" and cfg.dropout == 0.5
    assert (cfg.g_channels, cfg.d_channels) == (64, 64)
    assert not cfg.innermost_norm  # the errata
    # appendix 6.2: jitter 256 -> 286 -> random crop 256 and mirroring; batch 1
    assert (cfg.load_size, cfg.crop_size, cfg.preprocess, cfg.flip) == (286, 256, "resize_and_crop", True)
    assert cfg.batch_size == 1
    assert cfg.depth == 8  # 256 px reaches 1x1


def test_depth_follows_crop_size_unless_given() -> None:
    assert TrainConfig(load_size=128, crop_size=128).depth == 7
    assert TrainConfig(unet_depth=5).depth == 5


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"norm": "group"}, "norm"),
        ({"receptive_field": 64}, "receptive_field"),
        ({"load_size": 200}, "load_size 200 is smaller than crop_size 256"),
        ({"batch_size": 0}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"objective": "gan+cgan"}, "objective"),
        ({"direction": "AtoC"}, "direction"),
    ],
)
def test_invalid_config_raises(values: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**values)


def test_every_shipped_preset_builds_a_valid_config() -> None:
    names = list_presets()
    assert "shapes" in names and "cityscapes_label2photo" in names
    for name in names:
        values = load_preset(name)
        assert "description" not in values and "paper" not in values
        cfg = TrainConfig.from_dict(values, name)
        assert cfg.depth >= 2, name
        for key, value in values.items():
            assert getattr(cfg, key) == value, (name, key)


def test_from_dict_accepts_an_int_for_a_float() -> None:
    assert TrainConfig.from_dict({"lambda_l1": 10}).lambda_l1 == 10.0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_preset_file_is_loaded(tmp_path: Path) -> None:
    path = _write(tmp_path, 'description = "x"\nbatch_size = 4\nlambda_l1 = 10.0\n')
    assert load_preset(str(path)) == {"batch_size": 4, "lambda_l1": 10.0}


def test_preset_misspelled_key_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "batch_sise = 4\n")
    with pytest.raises(ValueError, match="batch_sise") as err:
        load_preset(str(path))
    assert str(path) in str(err.value)


def test_preset_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "batch_size = 'four'\n")
    with pytest.raises(ValueError, match="batch_size") as err:
        load_preset(str(path))
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="flip"):
        load_preset(str(_write(tmp_path, "flip = 1\n")))  # an int is not a bool


def test_preset_bad_value_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "receptive_field = 64\n")
    with pytest.raises(ValueError, match="receptive_field") as err:
        load_preset(str(path))
    assert str(path) in str(err.value)


def test_preset_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "batch_size = \n")
    with pytest.raises(ValueError, match="not valid TOML") as err:
        load_preset(str(path))
    assert str(path) in str(err.value)


def test_missing_preset_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.toml"):
        load_preset(str(tmp_path / "nothere.toml"))


def test_unknown_preset_lists_the_shipped_ones() -> None:
    with pytest.raises(ValueError, match="facade") as err:
        load_preset("facade")
    assert all(name in str(err.value) for name in list_presets())
