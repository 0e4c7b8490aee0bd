"""The benchmark scripts still run (they are meant for a GPU session that cannot stop to fix
them): their parts on tiny sizes, and their reports from what they measured. No timing is
asserted here; speed figures come from running the scripts (benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # layers.py imports bench
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "options",
    [
        {"precision": "fp32", "channels_last": False, "compile": "none", "cuda_graphs": False},
        {"precision": "bf16", "channels_last": True, "compile": "none", "cuda_graphs": False},
    ],
)
def test_bench_training_setting_measures_a_step(options: dict) -> None:
    bench = _script("bench")
    result = bench.train_setting(32, 2, torch.device("cpu"), steps=2, warmup=1, options=options)
    assert result["size"] == 32 and result["batch"] == 2
    assert result["s_per_iter"]["n"] == 2 and result["s_per_iter"]["min"] <= result["s_per_iter"]["median"]
    # FLOPs are counted on the eager float32 step whatever the options
    assert result["gflop_per_iter"] > 0
    assert result["gflops"] == pytest.approx(result["gflop_per_iter"] / result["s_per_iter"]["median"])


def test_bench_report_names_device_options_goals_and_schedule() -> None:
    bench = _script("bench")
    peak = {"conv_gflops": 300.0, "matmul_gflops": 320.0}
    step = {
        "s_per_iter": {"median": 0.5, "min": 0.45, "max": 0.6, "n": 20},
        "images_per_s": 2.0,
        "gflop_per_iter": 86.9,
        "gflops": 173.8,
        "peak_rss_gib": 1.4,
        "first_step_s": 0.6,
    }
    report = {
        "device": "CPU x86_64, 2 cores",
        "torch": "2.13.0",
        "pix2pix": "0.1.0",
        "date": "2026-11-24",
        "command": "python benchmarks/bench.py",
        "options": {"precision": "bf16", "channels_last": False, "compile": "default", "cuda_graphs": False},
        "peak": peak,
        "peak_first": peak,
        "peak_second": {"conv_gflops": 290.0, "matmul_gflops": 320.0},
        "training": {"256px_b1": step},
        "inference": {"256": {"ms": {"median": 80.0, "min": 78.0, "max": 90.0, "n": 15}, "gflop": 12.1}},
        "inference_compiled": {"256": {"ms": {"median": 60.0, "min": 59.0, "max": 61.0, "n": 15}, "gflop": 12.1}},
        "loader": {"images_per_s": 250.0},
        "device_cache": {"images": 400, "batch": 1, "batches_per_s": 2000.0},
    }
    text = bench.markdown(report)
    assert "precision=bf16, compile=default" in text
    assert "| 256px_b1 | 0.500 (0.450, 0.600) | 2.00 | 86.9 | 174 | 58% | 1.40 GiB RSS |" in text
    assert "1.52x its iteration rate" in text  # 0.76 / 0.5
    assert "2.0 iterations / s, 666.7 min" in text  # 80,000 x 0.5 s
    assert "| 256 px compiled, frozen | 60.0 (59.0, 61.0) | 12.1 | 40.3 ms | 1.49x |" in text
    assert "before and after training: 300 and 290" in text
    assert "2000 batches / s" in text


def test_layers_splits_the_generator_into_its_levels() -> None:
    layers = _script("layers")
    from pix2pix.models.networks import UNetGenerator

    g = UNetGenerator(base_channels=4, depth=5).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        levels = layers.level_inputs(g, x)
        assert [name for name, _, _ in levels] == [f"encoder {i}" for i in range(5)] + [
            f"decoder {j}" for j in range(4)
        ] + ["head"]
        # running the levels on their recorded inputs gives G(x)
        torch.testing.assert_close(levels[-1][1](levels[-1][2]), g(x))


def test_numerics_report_puts_each_variant_beside_fp32() -> None:
    numerics = _script("numerics")
    losses = {"g_l1": 0.2, "g_gan": 1.5, "d_real": 0.5, "d_fake": 0.5}
    row = {"s_per_step": 0.2, "output_vs_fp32": 0.0, "output_l1_to_photo": 0.25, "loss_means": losses}
    report = {
        "device": "CPU",
        "torch": "2.13.0",
        "pix2pix": "0.1.0",
        "date": "2026-11-24",
        "command": "python benchmarks/numerics.py",
        "size": 128,
        "steps": 200,
        "images": 200,
        "val": 20,
        "results": {
            "fp32": row,
            "bf16": {**row, "loss_means": {**losses, "g_l1": 0.19}, "output_vs_fp32": 0.03},
        },
    }
    text = numerics.markdown(report)
    assert "| bf16 | 0.200 | 0.190 (-0.010) |" in text
    assert "| 0.0300 | 0.2500 |" in text
    assert set(numerics.variants(torch.device("cpu"))) >= {"fp32", "fp32, seed 1", "bf16", "cache device"}
    assert any("cuda_graphs" in name for name in numerics.variants(torch.device("cuda")))
