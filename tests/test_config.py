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
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)
    assert cfg.loss.lambda_l1 == 100.0
    assert cfg.loss.objective == "l1+cgan" and cfg.loss.gan_mode == "vanilla"
    # appendix 6.1: 70x70 PatchGAN, U-Net with batch norm and dropout 0.5, ngf = ndf = 64
    assert cfg.discriminator.receptive_field == 70
    g = cfg.generator
    assert g.architecture == "unet" and g.skips
    assert g.norm == "batch" and g.dropout == 0.5 and g.dropout_placement == "paper"
    assert (g.channels, cfg.discriminator.channels) == (64, 64)
    assert not g.innermost_norm  # the errata
    # appendix 6.2: jitter 256 -> 286 -> random crop 256 and mirroring; batch 1
    d = cfg.data
    assert (d.load_size, d.crop_size, d.preprocess, d.flip) == (286, 256, "resize_and_crop", True)
    assert cfg.optim.batch_size == 1
    assert cfg.depth == 8  # 256 px reaches 1x1


def test_depth_follows_crop_size_unless_given() -> None:
    assert TrainConfig.from_dict({"load_size": 128, "crop_size": 128}).depth == 7
    assert TrainConfig.from_dict({"unet_depth": 4}).depth == 4


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
        TrainConfig.from_dict(values)


def test_every_shipped_preset_builds_a_valid_config() -> None:
    names = list_presets()
    assert "shapes" in names and "cityscapes_label2photo" in names
    for name in names:
        values = load_preset(name)
        assert "description" not in values and "paper" not in values
        cfg = TrainConfig.from_dict(values, name)
        assert cfg.depth >= 2, name
        flat = cfg.to_dict()
        for key, value in values.items():
            assert flat[key] == value, (name, key)


def test_from_dict_accepts_an_int_for_a_float() -> None:
    assert TrainConfig.from_dict({"lambda_l1": 10}).loss.lambda_l1 == 10.0


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


def test_flat_form_round_trips_and_keeps_the_file_layout() -> None:
    from pix2pix.config import FILE_ORDER

    cfg = TrainConfig.from_dict({"crop_size": 128, "load_size": 143, "g_channels": 32, "objective": "l1"})
    flat = cfg.to_dict()
    assert list(flat) == list(FILE_ORDER)  # config.json keeps one key per option, in one order
    assert TrainConfig.from_dict(flat) == cfg
    assert (cfg.data.crop_size, cfg.generator.channels, cfg.loss.objective) == (128, 32, "l1")
    assert cfg.replace(max_steps=7).run.max_steps == 7 and cfg.run.max_steps == 0  # frozen: a copy
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_which_options_may_change_on_resume_follows_from_the_sections() -> None:
    from pix2pix.config import FLAT_KEYS, resumable_keys

    keys = resumable_keys()
    assert {"max_steps", "device", "workers", "data", "compile", "cache", "checkpoint_every"} <= set(keys)
    assert all(FLAT_KEYS[k][0] in ("speed", "run") for k in keys)
    base = TrainConfig()
    assert base.fixed_changes(base.replace(max_steps=9, compile="default", workers=0)) == []
    assert base.fixed_changes(base.replace(lr=1e-3, precision="bf16")) == ["lr", "precision"]
