from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix import Pix2Pix
from pix2pix.hub.folder import load_model, save_model
from pix2pix.hub.model_config import CheckpointError
from pix2pix.inference.generator import pad_to_multiple, run_generator
from pix2pix.models.networks import UNetGenerator, init_weights


@pytest.fixture
def model(tmp_path: Path) -> Pix2Pix:
    """A tiny U-Net (depth 5: sides must be multiples of 32) saved and loaded as a model folder,
    with non-trivial batch-norm running statistics so eval and paper modes differ."""
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, base_channels=4, depth=5)
    init_weights(g)
    g.train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(2, 3, 64, 64) * 0.5 + 0.2)
    config = {
        "architecture": "unet",
        "generator": {"in_channels": 3, "out_channels": 3, "base_channels": 4, "depth": 5},
        "direction": "BtoA",
        "crop_size": 32,
    }
    save_model(tmp_path / "model", g, config)
    return Pix2Pix.load(tmp_path / "model")


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_model_folder_round_trip_gives_the_same_output(model: Pix2Pix, tmp_path: Path) -> None:
    save_model(tmp_path / "copy", model.generator, model.config)
    again = Pix2Pix.load(tmp_path / "copy")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(model.translate(x, mode="eval"), again.translate(x, mode="eval"))


@pytest.mark.parametrize("size", [(50, 37), (32, 32), (100, 7), (1, 1), (300, 200)])
def test_any_size_comes_back_at_its_own_size(model: Pix2Pix, size: tuple[int, int]) -> None:
    out = model.translate(_image(*size), mode="eval")
    assert isinstance(out, Image.Image) and out.size == size and out.mode == "RGB"


def test_padding_is_cropped_back_exactly() -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded, (top, left, h, w) = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (8, 8)
    assert torch.equal(padded[:, :, top : top + h, left : left + w], x)


def test_eval_mode_is_deterministic_and_batch_independent(model: Pix2Pix) -> None:
    x = torch.rand(3, 3, 32, 64) * 2 - 1
    batched = model.translate(x, mode="eval")
    single = torch.cat([model.translate(x[i : i + 1], mode="eval") for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.translate(x, mode="eval"), batched)


def test_paper_mode_is_seeded_noise_and_leaves_the_model_untouched(model: Pix2Pix) -> None:
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    a = model.translate(x, mode="paper", seed=1)
    b = model.translate(x, mode="paper", seed=1)
    c = model.translate(x, mode="paper", seed=2)
    assert torch.equal(a, b)  # same seed, same dropout mask
    assert not torch.equal(a, c)  # dropout is the noise z (section 3.1)
    assert not torch.equal(a, model.translate(x, mode="eval"))  # test-batch statistics differ
    after = model.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "paper mode changed running stats"
    assert not model.generator.training


def test_paper_mode_uses_each_images_own_statistics(model: Pix2Pix) -> None:
    # the paper tests with batch 1: an image's output must not depend on its batch-mates
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    together = run_generator(model.generator, x, mode="paper", seed=3)
    alone = run_generator(model.generator, x[:1], mode="paper", seed=3)
    torch.testing.assert_close(together[:1], alone)


def test_translate_checks_tensor_shapes(model: Pix2Pix) -> None:
    assert model.translate(torch.zeros(3, 40, 40), mode="eval").shape == (3, 40, 40)
    with pytest.raises(ValueError, match="C = 3"):
        model.translate(torch.zeros(1, 40, 40))
    with pytest.raises(TypeError):
        model.translate("image.png")


def test_translate_files_keeps_sizes_names_and_takes_the_input_half(model: Pix2Pix, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _image(64, 32, 1).save(src / "pair.png")  # an aligned pair: 32 | 32
    _image(45, 27, 2).save(src / "sub" / "single.jpg")
    (src / "notes.txt").write_text("not an image")
    written = model.translate_files([src], tmp_path / "out", mode="eval")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["pair.png", "sub/single.png"]
    assert Image.open(tmp_path / "out" / "sub" / "single.png").size == (45, 27)

    halves = model.translate_files([src / "pair.png"], tmp_path / "halves", mode="eval", half="input")
    assert Image.open(halves[0]).size == (32, 32)
    right = _image(64, 32, 1).crop((32, 0, 64, 32))  # direction BtoA: the input is the right half
    expected = model.translate(right, mode="eval")
    assert np.array_equal(np.asarray(Image.open(halves[0])), np.asarray(expected))


def test_translate_files_never_overwrites_unless_asked(model: Pix2Pix, tmp_path: Path) -> None:
    _image(32, 32).save(tmp_path / "a.png")
    model.translate_files([tmp_path / "a.png"], tmp_path / "out")
    with pytest.raises(FileExistsError, match="--overwrite"):
        model.translate_files([tmp_path / "a.png"], tmp_path / "out")
    assert model.translate_files([tmp_path / "a.png"], tmp_path / "out", overwrite=True)


def test_broken_model_folders_give_clear_errors(model: Pix2Pix, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path / "nowhere")
    folder = tmp_path / "model"
    (folder / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(folder)


def test_model_card_reads_old_folders_and_keeps_unknown_keys(tmp_path: Path) -> None:
    from pix2pix.hub.model_config import ModelConfig

    torch.manual_seed(0)
    g = UNetGenerator(3, 3, base_channels=4, depth=5)
    save_model(tmp_path / "new", g, {"architecture": "unet", "generator": {"base_channels": 4, "depth": 5}})
    # a folder as version 0.1.0 wrote it before model cards: the same weights, a hand-made config
    old = tmp_path / "old"
    old.mkdir()
    (old / "generator.safetensors").write_bytes((tmp_path / "new" / "model.safetensors").read_bytes())
    layout = {
        "pix2pix_version": "0.1.0",
        "architecture": "unet",
        "generator": {"in_channels": 3, "out_channels": 3, "base_channels": 4, "norm": "batch", "dropout": 0.5,
                      "depth": 5, "skips": True, "innermost_norm": False},
        "direction": "BtoA",
        "crop_size": 32,
        "source": {"file": "latest_net_G.pth"},
    }  # fmt: skip
    (old / "config.json").write_text(json.dumps(layout))
    model = Pix2Pix.load(old)
    assert isinstance(model.config, ModelConfig)
    assert (model.config.direction, model.config.crop_size, model.input_half) == ("BtoA", 32, "right")
    assert model.config.extra == {"pix2pix_version": "0.1.0", "source": {"file": "latest_net_G.pth"}}
    save_model(tmp_path / "again", model.generator, model.config)
    written = json.loads((tmp_path / "again" / "config.json").read_text())
    assert {k: written[k] for k in layout} == layout  # every key as it was, the version too
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(Pix2Pix.load(tmp_path / "again").translate(x, mode="eval"), model.translate(x, mode="eval"))
