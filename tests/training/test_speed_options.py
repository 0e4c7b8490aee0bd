"""The speed options (--precision bf16, --channels-last, --compile, --cuda-graphs, --cache device),
checked on the CPU: each trains, and its numbers stay with float32 eager ones over a fixed short
run. (On a GPU the same checks are benchmarks/numerics.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.config import TrainConfig
from pix2pix.data.aligned import AlignedDataset, Augment, DatasetError, EpochSampler
from pix2pix.data.device import DeviceBatches
from pix2pix.inference.generator import run_generator
from pix2pix.inference.predict import Pix2Pix
from pix2pix.training.checkpoint import STATE_FILE, load_state
from pix2pix.training.train import compile_mode, config_for_resume, train

from ..conftest import tiny_config


def _losses(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_state(run_dir / STATE_FILE)["generator"]


def _output_difference(run_a: Path, run_b: Path, data: Path) -> float:
    """Mean |G_a(x) - G_b(x)| over the validation inputs (images in [-1, 1]), in the paper's
    test mode with the same dropout seed."""
    x = torch.stack([AlignedDataset(data / "val", "AtoB", Augment("resize", 32, 32))[i]["real_a"] for i in range(2)])
    a, b = (run_generator(Pix2Pix.load(run / "model").generator, x, "paper", seed=0) for run in (run_a, run_b))
    return float((a - b).abs().mean())


@pytest.fixture(scope="module")
def fp32_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("fp32")
    train(tiny_config(tiny_data, max_steps=12), run_dir, progress=False)
    return run_dir


# --- the device cache: the same batches as the loader, cut on the device ---


def test_device_cache_cuts_the_loaders_crops_exactly(tiny_data: Path) -> None:
    augment = Augment("resize_and_crop", 36, 32, flip=True)
    dataset = AlignedDataset(tiny_data / "train", "AtoB", augment, cache="memory")
    pairs = DeviceBatches(dataset, torch.device("cpu"))
    sampler = list(EpochSampler(len(dataset), seed=3, epoch=2))
    flipped = 0
    for index, seed in sampler:
        expected = dataset[(index, seed)]
        got = pairs.batch([(index, seed)])
        assert torch.equal(got["real_a"][0], expected["real_a"])
        assert torch.equal(got["real_b"][0], expected["real_b"])
        assert got["path"] == [expected["path"]]
        _, flip = augment.draw(36, 36, torch.Generator().manual_seed(seed))
        flipped += flip
    assert 0 < flipped < len(sampler)  # both mirrored and plain crops were compared
    batches = list(pairs.batches(sampler, 5))  # 12 pairs -> 5 + 5 + 2
    assert [b["real_a"].shape[0] for b in batches] == [5, 5, 2]
    assert torch.equal(batches[1]["real_b"][3], dataset[sampler[8]]["real_b"])


def test_training_with_the_device_cache_is_the_same_run(tiny_data: Path, fp32_run: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, max_steps=12, cache="device"), tmp_path, progress=False)
    timing = ("images_per_s", "time")
    strip = lambda records: [{k: v for k, v in r.items() if k not in timing} for r in records]  # noqa: E731
    assert strip(_losses(tmp_path)) == strip(_losses(fp32_run))  # every loss of every step, exactly
    a, b = _weights(tmp_path), _weights(fp32_run)
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_device_cache_needs_one_size(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    for i, width in enumerate((64, 128)):  # pairs of 32x32 and 64x64 halves
        Image.fromarray(np.full((width // 2, width, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    dataset = AlignedDataset(folder, "AtoB", Augment("none", flip=False), cache="memory")
    with pytest.raises(DatasetError, match="one size after the resize.*--preprocess resize_and_crop"):
        DeviceBatches(dataset, torch.device("cpu"))


def test_device_cache_keeps_16_bit_pictures_exact(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 65536, (16, 32), dtype=np.uint16)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    augment = Augment("crop", 16, 8, flip=True)
    dataset = AlignedDataset(folder, "AtoB", augment, in_channels=1, out_channels=1, cache="memory")
    pairs = DeviceBatches(dataset, torch.device("cpu"))
    for index, seed in EpochSampler(2, 0, 0):
        expected = dataset[(index, seed)]
        assert torch.equal(pairs.batch([(index, seed)])["real_a"][0], expected["real_a"])


# --- numerics against float32 eager ---


def test_bf16_autocast_follows_the_fp32_run(tiny_data: Path, fp32_run: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, max_steps=12, precision="bf16"), tmp_path, progress=False)
    ours, reference = _losses(tmp_path), _losses(fp32_run)
    for key in ("g_l1", "g_gan", "d_real", "d_fake"):
        a = np.array([r[key] for r in ours])
        b = np.array([r[key] for r in reference])
        assert np.all(np.isfinite(a))
        # bf16 keeps 8 bits of mantissa: the losses agree to a few per cent, not bitwise
        assert np.max(np.abs(a - b) / np.abs(b)) < 0.05, key
        assert not np.array_equal(a, b)  # autocast did run in bf16
    # the trained G translates like the fp32 run's: a mean difference of 1% of the range here
    assert 0 < _output_difference(tmp_path, fp32_run, tiny_data) < 0.02


def test_channels_last_is_the_same_arithmetic(tiny_data: Path, fp32_run: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, max_steps=12, channels_last=True), tmp_path, progress=False)
    for ours, reference in zip(_losses(tmp_path), _losses(fp32_run), strict=True):
        for key in ("g_l1", "g_gan", "d_real", "d_fake"):
            assert ours[key] == pytest.approx(reference[key], rel=1e-4)
    assert _output_difference(tmp_path, fp32_run, tiny_data) < 1e-5


@pytest.mark.slow  # torch.compile / a real kill: tens of seconds on the CPU
def test_compiled_training_matches_eager(tiny_data: Path, tmp_path: Path) -> None:
    # without dropout, so that both draw no random numbers after the weights: compile's own
    # RNG gives other dropout masks than eager (the same distribution, not the same stream)
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    train(tiny_config(tiny_data, max_steps=6, dropout=0.0), eager, progress=False)
    train(tiny_config(tiny_data, max_steps=6, dropout=0.0, compile="default"), compiled, progress=False)
    for ours, reference in zip(_losses(compiled), _losses(eager), strict=True):
        for key in ("g_l1", "g_gan", "d_real", "d_fake"):
            assert ours[key] == pytest.approx(reference[key], rel=1e-3)
    assert _output_difference(compiled, eager, tiny_data) < 1e-3
    # and a compiled run resumes eagerly (compile is not part of what a run is)
    resumed = train(
        config_for_resume(compiled, {"max_steps": 8, "compile": "none"}), compiled, resume=True, progress=False
    )
    assert resumed["step"] == 8


# --- CUDA graphs need compile and a GPU ---


def test_cuda_graphs_need_compile() -> None:
    with pytest.raises(ValueError, match="cuda_graphs needs compile"):
        TrainConfig.from_dict({"cuda_graphs": True})


def test_cuda_graphs_need_a_cuda_device(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, compile="default", cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device; this run is on cpu"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("compile", "graphs", "mode"),
    [
        ("default", False, "default"),
        ("default", True, "reduce-overhead"),
        ("max-autotune", False, "max-autotune-no-cudagraphs"),
        ("max-autotune", True, "max-autotune"),
    ],
)
def test_compile_modes(compile: str, graphs: bool, mode: str) -> None:
    assert compile_mode(TrainConfig.from_dict({"compile": compile, "cuda_graphs": graphs}).speed) == mode


def test_device_cache_of_mixed_sizes_fails_before_the_run_dir_is_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split).mkdir(parents=True)
        for i, width in enumerate((64, 128)):
            Image.fromarray(np.full((width // 2, width, 3), 40 * i, np.uint8)).save(data / split / f"{i}.png")
    cfg = tiny_config(data, preprocess="none", unet_depth=3, batch_size=1, cache="device", num_samples=1)
    with pytest.raises(DatasetError, match="one size after the resize"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
