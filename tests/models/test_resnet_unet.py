"""Seed 003's resnet18-unet generator: shapes, torchvision-format encoder weights (and the files
refused), pad-and-crop, ONNX parity, and training with the L1 warm-up."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix import Pix2Pix
from pix2pix.cli import main
from pix2pix.config import TrainConfig
from pix2pix.hub.folder import save_model
from pix2pix.metrics.perceptual import sha256_of
from pix2pix.models.networks import build_generator, count_parameters, init_weights
from pix2pix.models.resnet_unet import (
    EncoderWeightsError,
    ResNet18Encoder,
    ResNetUNetGenerator,
    load_encoder,
    read_encoder_weights,
)

# torchvision's resnet18 has 11,689,512 parameters, of which fc holds 512 x 1000 + 1000
TORCHVISION_RESNET18_WITHOUT_FC = 11_689_512 - 513_000


def torchvision_state(seed: int = 0, blocks_in_layer1: int = 2) -> dict[str, torch.Tensor]:
    """A ResNet-18 state dict in torchvision's layout (with fc), random values; with 3 blocks in
    layer1 it has a ResNet-34's extra keys."""
    torch.manual_seed(seed)
    state = {k: _plausible(k, v) for k, v in ResNet18Encoder(3).state_dict().items()}
    for name in [k for k in state if k.startswith("layer1.1.")][: (blocks_in_layer1 - 2) * 10]:
        state[name.replace("layer1.1.", "layer1.2.")] = state[name].clone()
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return state


def _plausible(key: str, value: torch.Tensor) -> torch.Tensor:
    """Random values of a trained net's kind: small conv weights, positive running variances."""
    if not value.is_floating_point():
        return value
    if key.endswith("running_var"):
        return torch.rand_like(value) + 0.5
    if key.endswith("weight") and value.ndim == 1:  # BN scale
        return 1 + 0.1 * torch.randn_like(value)
    return 0.05 * torch.randn_like(value)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("encoder") / "resnet18.pth"
    torch.save(torchvision_state(), path)
    return path


def test_the_encoder_is_resnet18_in_torchvisions_layout() -> None:
    encoder = ResNet18Encoder(3)
    assert count_parameters(encoder) == TORCHVISION_RESNET18_WITHOUT_FC
    keys = encoder.state_dict().keys()
    for key in ("conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"):
        assert key in keys
    features = encoder(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 48),
        (64, 16, 24),
        (128, 8, 12),
        (256, 4, 6),
        (512, 2, 3),
    ]


@pytest.mark.parametrize(("cin", "cout", "size"), [(1, 2, (64, 96)), (3, 3, (32, 32)), (4, 1, (96, 64))])
def test_any_channels_and_sides_that_are_multiples_of_32(cin: int, cout: int, size: tuple[int, int]) -> None:
    g = ResNetUNetGenerator(cin, cout, base_channels=4)
    y = g(torch.randn(2, cin, *size))
    assert y.shape == (2, cout, *size)
    assert y.abs().max() <= 1  # Tanh head


def test_encoder_weights_load_and_a_grey_stem_sums_the_rgb_filters(weights_file: Path) -> None:
    file_state = torch.load(weights_file, weights_only=True)
    grey = read_encoder_weights(weights_file, in_channels=1)
    g = ResNetUNetGenerator(1, 2)
    init_weights(g)
    load_encoder(g, grey)
    loaded = g.encoder.state_dict()
    for key in ("layer3.0.downsample.0.weight", "layer4.1.conv2.weight", "bn1.running_mean"):
        torch.testing.assert_close(loaded[key], file_state[key], rtol=0, atol=0)
    torch.testing.assert_close(loaded["conv1.weight"], file_state["conv1.weight"].sum(1, keepdim=True))
    # the reason for the sum: a grey image on one channel gives the RGB net's response to that grey on three
    rgb = ResNet18Encoder(3)
    rgb.load_state_dict({k: v for k, v in file_state.items() if not k.startswith("fc.")})
    x = torch.rand(2, 1, 64, 64)
    rgb.eval(), g.encoder.eval()
    grey_stem, rgb_stem = g.encoder(x)[0], rgb(x.expand(-1, 3, -1, -1))[0]
    # the same sums in another order: float32 rounding of 147 products per output, nothing more
    scale = rgb_stem.abs().max().item()
    torch.testing.assert_close(grey_stem, rgb_stem, rtol=0, atol=1e-5 * scale)
    assert grey.sha256 == sha256_of(weights_file) and "not a file this tool knows" in grey.source


def test_more_input_channels_share_the_rgb_response(weights_file: Path) -> None:
    state = read_encoder_weights(weights_file, in_channels=5).state
    file_conv = torch.load(weights_file, weights_only=True)["conv1.weight"]
    assert state["conv1.weight"].shape == (64, 5, 7, 7)
    torch.testing.assert_close(state["conv1.weight"].sum(1), file_conv.sum(1), rtol=1e-5, atol=1e-6)
    # the first three keep their colour: R, G and B in proportion
    torch.testing.assert_close(state["conv1.weight"][:, :3], file_conv * 3 / 5)
    two = read_encoder_weights(weights_file, in_channels=2).state["conv1.weight"]
    torch.testing.assert_close(two.sum(1), file_conv.sum(1), rtol=1e-5, atol=1e-6)


class NotATensor:
    """A class pickled into a file: weights_only loading refuses to build it."""


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("resnet34", "a deeper ResNet such as ResNet-34"),
        ("truncated", "cannot be read as a PyTorch state dict"),
        ("code", "holds Python objects beyond tensors"),
        ("shape", "conv1.weight has shape (64, 3, 5, 5), a ResNet-18's is (64, 3, 7, 7)"),
        ("missing", "keys are missing, e.g. layer4.1.conv1.weight"),
        ("absent", "no such file"),
        ("nan", "layer2.0.conv1.weight holds NaN"),
    ],
)
def test_wrong_files_are_refused_naming_the_file(kind: str, message: str, tmp_path: Path, weights_file: Path) -> None:
    path = tmp_path / f"{kind}.pth"
    state = torchvision_state()
    if kind == "resnet34":
        torch.save(torchvision_state(blocks_in_layer1=3), path)
    elif kind == "truncated":
        path.write_bytes(weights_file.read_bytes()[: weights_file.stat().st_size // 2])
    elif kind == "code":
        with path.open("wb") as f:
            pickle.dump({"conv1.weight": NotATensor()}, f, protocol=2)
    elif kind == "shape":
        torch.save({**state, "conv1.weight": torch.zeros(64, 3, 5, 5)}, path)
    elif kind == "missing":
        torch.save({k: v for k, v in state.items() if not k.startswith("layer4.1.")}, path)
    elif kind == "nan":
        state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, path)
    with pytest.raises(EncoderWeightsError, match="^" + str(path).replace(".", r"\.")) as err:
        read_encoder_weights(path, 1)
    assert message in str(err.value)


def test_safetensors_files_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = torchvision_state(seed=3)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "r18.safetensors")
    loaded = read_encoder_weights(tmp_path / "r18.safetensors", 3).state
    torch.testing.assert_close(loaded["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_config_rules() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        TrainConfig.from_dict({"generator": "resnet18-unet", "crop_size": 100, "load_size": 110})
    with pytest.raises(ValueError, match="encoder_weights is for --generator resnet18-unet"):
        TrainConfig.from_dict({"encoder_weights": "r18.pth"})
    with pytest.raises(ValueError, match="g_channels 64"):
        TrainConfig.from_dict({"generator": "resnet18-unet", "encoder_weights": "r18.pth", "g_channels": 8})


def _model_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    g = ResNetUNetGenerator(1, 2, base_channels=4)
    init_weights(g)
    g.train()
    with torch.no_grad():  # running statistics unlike any one batch's
        g(torch.randn(2, 1, 64, 64) * 0.5 + 0.2)
    card = {
        "architecture": "resnet18-unet",
        "generator": {"in_channels": 1, "out_channels": 2, "base_channels": 4},
        "dataset_mode": "colorization",
        "crop_size": 64,
    }
    save_model(tmp_path / "model", g.eval(), card)
    return tmp_path / "model"


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_model_folders_load_and_odd_sizes_are_padded_and_cropped(tmp_path: Path) -> None:
    model = Pix2Pix.load(_model_folder(tmp_path))
    assert model.generator.size_multiple == 32
    assert "U-Net on a ResNet-18 encoder" in (tmp_path / "model" / "README.md").read_text()  # the model card
    for w, h in [(45, 27), (70, 33)]:
        photo = _photo(w, h)
        out = model.translate(photo, mode="eval")
        assert out.size == (w, h)
        ab = model.translate(model.encode(photo), mode="eval")  # L (1, h, w) in, ab out
        assert ab.shape == (2, h, w) and torch.isfinite(ab).all()


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f'{name} is not installed: pip install "pix2pix[export]"')
    from pix2pix.inference.export import PARITY_TOLERANCE, OnnxGenerator, check_parity, float32_error, parity_tolerance

    folder = _model_folder(tmp_path)
    assert main(["export", "--model", str(folder), "--format", "onnx", str(tmp_path / "g.onnx")]) == 0
    onnx_generator = OnnxGenerator(tmp_path / "g.onnx")
    assert onnx_generator.size_multiple == 32
    model = Pix2Pix.load(folder)
    results = check_parity(model.generator, onnx_generator, sizes=[(64, 96), (32, 32)], batch_size=2)
    assert all(r.ok for r in results), results
    # the tolerance: PyTorch's own float32 rounding (against float64) on that input, x4, at least 1e-4
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    rounding = float32_error(copy.deepcopy(model.generator).double(), x, model.translate(x, mode="eval"))
    assert 0 < rounding < PARITY_TOLERANCE / 4
    assert parity_tolerance(rounding) == PARITY_TOLERANCE and parity_tolerance(1e-4) == pytest.approx(4e-4)
    x = torch.rand(1, 1, 27, 45) * 2 - 1  # padded to 32 x 64, cropped back
    torch.testing.assert_close(
        Pix2Pix(onnx_generator, model.config).translate(x, mode="eval"),
        model.translate(x, mode="eval"),
        atol=PARITY_TOLERANCE,
        rtol=0,
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for split, n in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for i in range(n):
            _photo(40, 36, seed=i + 10 * n).save(root / split / f"{i}.png")
    return root


def _train_args(photos: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train", "--preset", "colorization_enhanced", "--data", str(photos), "--run-dir", str(run),
        "--crop-size", "32", "--load-size", "32", "--g-channels", "4", "--d-channels", "4", "--batch-size", "2",
        "--l1-warmup-epochs", "1", "--epochs", "1", "--epochs-decay", "0", "--log-every", "1",
        "--workers", "0", "--device", "cpu", "--no-progress", *extra,
    ]  # fmt: skip


def test_training_warms_up_with_l1_at_its_own_rate_then_adds_the_cgan(photos: Path, tmp_path: Path) -> None:
    assert main(_train_args(photos, tmp_path / "run")) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    warm, adversarial = [r for r in log if r["epoch"] == 0], [r for r in log if r["epoch"] == 1]
    assert warm and adversarial
    assert all(r["lr"] == pytest.approx(1e-4) and "d_real" not in r for r in warm)  # L1 only, no D
    assert all(r["lr"] == pytest.approx(2e-4) and "d_real" in r and "g_gan" in r for r in adversarial)
    card = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert card["architecture"] == "resnet18-unet"
    assert Pix2Pix.load(tmp_path / "run" / "model").generator.size_multiple == 32


def test_the_encoder_file_is_loaded_and_its_hash_recorded(photos: Path, tmp_path: Path, weights_file: Path) -> None:
    args = _train_args(photos, tmp_path / "run", "--g-channels", "64", "--max-steps", "1")
    args += ["--encoder-weights", str(weights_file)]
    assert main(args) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["encoder_sha256"] == sha256_of(weights_file)
    model = Pix2Pix.load(tmp_path / "run" / "model").generator
    file_state = torch.load(weights_file, weights_only=True)
    # one warm-up step at lr 1e-4 moves each weight by about 1e-4 (Adam): far from a fresh init
    diff = (model.encoder.state_dict()["layer4.1.conv2.weight"] - file_state["layer4.1.conv2.weight"]).abs().max()
    assert diff < 1e-3
    # the same config with another file is refused: its hash is not the recorded one
    other = tmp_path / "other.pth"
    torch.save(torchvision_state(seed=5), other)
    cfg = TrainConfig.from_dict({**config, "encoder_weights": str(other), "max_steps": 1})
    from pix2pix.training.train import train

    with pytest.raises(EncoderWeightsError, match="not the encoder_sha256"):
        train(cfg, tmp_path / "run2")
    assert not (tmp_path / "run2").exists()


def test_a_bad_encoder_file_is_a_clear_error_before_the_run_dir(photos: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "resnet34.pth"
    torch.save(torchvision_state(blocks_in_layer1=3), bad)
    args = _train_args(photos, tmp_path / "run", "--g-channels", "64", "--encoder-weights", str(bad))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "ResNet-34" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_without_weights_the_run_says_the_encoder_starts_from_scratch(photos: Path, tmp_path: Path, capsys) -> None:
    assert main(_train_args(photos, tmp_path / "run", "--max-steps", "1")) == 0
    assert "ResNet-18 from scratch" in capsys.readouterr().out


def test_build_generator_reads_the_model_folder_settings() -> None:
    g = build_generator("resnet18-unet", {"in_channels": 1, "out_channels": 2, "base_channels": 8, "norm": "instance"})
    assert isinstance(g, ResNetUNetGenerator) and g(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
