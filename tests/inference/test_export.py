"""ONNX export: eval-mode parity with PyTorch, dynamic batch and size, the onnxruntime backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix import Pix2Pix
from pix2pix.cli import main
from pix2pix.hub.folder import save_model
from pix2pix.inference.export import PARITY_TOLERANCE, OnnxGenerator, check_parity, export_onnx, load_onnx
from pix2pix.models.networks import ResnetGenerator, UNetGenerator, init_weights

from ..conftest import shared_dataset


@pytest.fixture(scope="module", autouse=True)
def onnx_packages() -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f'{name} is not installed: pip install "pix2pix[export]" (or ".[test]")')


def _calibrated(generator: torch.nn.Module) -> torch.nn.Module:
    """Random weights and batch-norm running statistics unlike any single batch's, so eval mode
    differs from the paper's test-batch statistics."""
    torch.manual_seed(0)
    init_weights(generator)
    generator.train()
    with torch.no_grad():
        for _ in range(3):
            generator(torch.randn(2, generator_in_channels(generator), 64, 64) * 0.5 + 0.2)
    return generator.eval()


def generator_in_channels(generator: torch.nn.Module) -> int:
    return next(m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny U-Net (depth 5: sides are multiples of 32) as a model folder."""
    folder = tmp_path_factory.mktemp("export") / "model"
    g = _calibrated(UNetGenerator(3, 3, base_channels=4, depth=5))
    config = {
        "architecture": "unet",
        "generator": {"in_channels": 3, "out_channels": 3, "base_channels": 4, "depth": 5},
        "direction": "BtoA",
        "crop_size": 32,
    }
    save_model(folder, g, config)
    return folder


@pytest.fixture(scope="module")
def onnx_path(model_dir: Path) -> Path:
    """The model exported by the command line."""
    path = model_dir.parent / "model.onnx"
    assert main(["export", "--model", str(model_dir), "--format", "onnx", str(path)]) == 0
    return path


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_parity_at_two_sizes_and_batch_2_with_dynamic_axes(model_dir: Path, onnx_path: Path) -> None:
    model, onnx_generator = Pix2Pix.load(model_dir), OnnxGenerator(onnx_path)
    batch, _, height, width = onnx_generator.session.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in (batch, height, width)), "batch, H and W must be dynamic"
    results = check_parity(model.generator, onnx_generator, sizes=[(32, 64), (96, 160)], batch_size=2)
    assert [r.shape for r in results] == [(2, 3, 32, 64), (2, 3, 96, 160)]
    assert all(r.max_abs_diff < PARITY_TOLERANCE for r in results), results
    # and the output really has each input's size, straight from the graph
    for shape in [(1, 3, 64, 32), (3, 3, 128, 96)]:
        assert onnx_generator(torch.zeros(shape)).shape == shape


def test_metadata_carries_the_config_for_padding(model_dir: Path, onnx_path: Path) -> None:
    meta = OnnxGenerator(onnx_path).session.get_modelmeta().custom_metadata_map
    assert meta["pix2pix.size_multiple"] == "32"
    assert meta["pix2pix.direction"] == "BtoA" and meta["pix2pix.mode"] == "eval"
    assert json.loads(meta["pix2pix.config"]) == json.loads((model_dir / "config.json").read_text())
    assert load_onnx(onnx_path).input_half == "right"  # BtoA: the right half of a pair is the input


def test_onnxruntime_backend_matches_torch_eval_on_odd_sizes(model_dir: Path, onnx_path: Path, tmp_path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, (w, h) in enumerate([(45, 27), (50, 37), (33, 64)]):
        _image(w, h, seed=i).save(inputs / f"{i}.png")
    common = ["translate", str(inputs), "--batch-size", "2"]
    assert main([*common, "--model", str(onnx_path), "--backend", "onnxruntime", "--out", str(tmp_path / "ort")]) == 0
    assert main([*common, "--model", str(model_dir), "--mode", "eval", "--out", str(tmp_path / "pt")]) == 0
    for i in range(3):
        ort_png = np.asarray(Image.open(tmp_path / "ort" / f"{i}.png"), dtype=int)
        pt_png = np.asarray(Image.open(tmp_path / "pt" / f"{i}.png"), dtype=int)
        assert ort_png.shape == pt_png.shape == np.asarray(Image.open(inputs / f"{i}.png")).shape
        assert np.abs(ort_png - pt_png).max() <= 1  # < 1e-4 apart before rounding to 8 bits
    # before rounding: the same padding and cropping, the same numbers
    x = torch.rand(2, 3, 27, 45) * 2 - 1
    torch_out = Pix2Pix.load(model_dir).translate(x, mode="eval")
    ort_out = load_onnx(onnx_path).translate(x, mode="eval")
    assert ort_out.shape == (2, 3, 27, 45)
    assert (ort_out - torch_out).abs().max().item() < PARITY_TOLERANCE


def test_paper_mode_is_refused_with_a_clear_message(onnx_path: Path, tmp_path: Path, capsys) -> None:
    _image(45, 27).save(tmp_path / "a.png")
    args = ["translate", "--model", str(onnx_path), "--backend", "onnxruntime", str(tmp_path / "a.png")]
    assert main([*args, "--mode", "paper", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--mode paper" in err and "--backend torch" in err and "eval" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="eval mode only"):
        load_onnx(onnx_path).translate(torch.zeros(1, 3, 32, 32), mode="paper")


def test_wrong_files_and_existing_outputs_are_refused(model_dir: Path, onnx_path: Path, tmp_path, capsys) -> None:
    _image(45, 27).save(tmp_path / "a.png")
    image_and_out = [str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]
    assert main(["translate", "--model", str(model_dir), "--backend", "onnxruntime", *image_and_out]) == 2
    assert "is a folder, not an ONNX file" in capsys.readouterr().err
    assert main(["translate", "--model", str(onnx_path), *image_and_out]) == 2
    assert "--backend onnxruntime" in capsys.readouterr().err
    assert main(["export", "--model", str(model_dir), str(onnx_path)]) == 2  # exists: no --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_missing_extra_names_the_pip_command(model_dir: Path, onnx_path: Path, tmp_path, monkeypatch, capsys):
    _image(45, 27).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    args = ["translate", "--model", str(onnx_path), "--backend", "onnxruntime", str(tmp_path / "a.png")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime" in err and 'pip install "pix2pix[export]"' in err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(["export", "--model", str(model_dir), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "onnxscript" in err and 'pip install "pix2pix[export]"' in err
    assert not (tmp_path / "m.onnx").exists()


def test_resnet_with_instance_norm_exports_with_dynamic_size(tmp_path: Path) -> None:
    g = _calibrated(ResnetGenerator(3, 3, base_channels=4, blocks=2, norm="instance"))
    config = {"architecture": "resnet", "generator": {"base_channels": 4, "blocks": 2, "norm": "instance"}}
    export_onnx(g, config, tmp_path / "resnet.onnx")
    onnx_generator = OnnxGenerator(tmp_path / "resnet.onnx")
    assert onnx_generator.size_multiple == 4
    results = check_parity(g, onnx_generator, sizes=[(36, 44), (64, 20)], batch_size=2)
    assert all(r.max_abs_diff < PARITY_TOLERANCE for r in results), results
    x = torch.rand(1, 3, 27, 45) * 2 - 1  # padded to 28 x 48 and cropped back
    ort_out = Pix2Pix(onnx_generator, config).translate(x, mode="eval")
    torch.testing.assert_close(ort_out, Pix2Pix(g, config).translate(x, mode="eval"), atol=PARITY_TOLERANCE, rtol=0)


def test_parity_on_real_cityscapes_images(model_dir: Path, onnx_path: Path) -> None:
    val = shared_dataset("cityscapes") / "val"
    images = sorted(val.glob("*.jpg"))[:2]
    if not images:
        pytest.skip(f"no .jpg images in {val}")
    results = check_parity(Pix2Pix.load(model_dir).generator, OnnxGenerator(onnx_path), images=images, sizes=[])
    assert [r.source for r in results] == [str(p) for p in images]
    assert all(r.max_abs_diff < PARITY_TOLERANCE for r in results), results
