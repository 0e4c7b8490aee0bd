"""Where G's inference time goes, level by level, against a roofline: each U-Net level (eval
mode, batch 1, 256 px) timed on its own, with its GFLOP, its weights, its achieved GFLOP/s and
its floor max(FLOP / conv peak, weight bytes / memory bandwidth), all measured in this run.

The issue's floor for G (12.1 GFLOP / conv peak) counts FLOPs only. At batch 1 the deep levels
do a few FLOPs per weight (a 1x1 to 16x16 map), so reading their weights (218 MB in all) from
memory, not arithmetic, bounds them; this script shows by how much.

    python benchmarks/layers.py [--out benchmarks/results/layers_cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import flops_of, machine_peak, write_report  # noqa: E402

from pix2pix import __version__  # noqa: E402
from pix2pix.models.networks import UNetGenerator, init_weights  # noqa: E402


def median_ms(fn, repeats: int = 30, warmup: int = 5) -> float:
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bandwidth_gb_s() -> float:
    """Copy bandwidth (bytes read + written per second) of a 256 MiB buffer."""
    a, b = torch.empty(2**26), torch.empty(2**26)
    return 2 * a.numel() * 4 / median_ms(lambda: b.copy_(a), 10, 2) / 1e6


def level_inputs(g: UNetGenerator, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, module, its input) for every encoder level, decoder level and the head."""
    found = []
    features = []
    for i, level in enumerate(g.encoder):
        found.append((f"encoder {i}", level, x))
        x = level(x)
        features.append(x)
    for j, level in enumerate(g.decoder):
        if j > 0:
            x = torch.cat([x, features[g.depth - 1 - j]], dim=1)
        found.append((f"decoder {j}", level, x))
        x = level(x)
    x = torch.cat([x, features[0]], dim=1)
    found.append(("head", g.head, x))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/layers_cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    g = UNetGenerator()
    init_weights(g)
    g.eval()
    peak = machine_peak(torch.device("cpu"), quick=False)["conv_gflops"]
    bandwidth = bandwidth_gb_s()
    rows = []
    with torch.inference_mode():
        x = torch.rand(1, 3, 256, 256) * 2 - 1
        whole = median_ms(lambda: g(x), 15, 3)
        for name, module, inp in level_inputs(g, x):
            flop = flops_of(lambda m=module, i=inp: m(i))
            weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
            ms = median_ms(lambda m=module, i=inp: m(i))
            floor = max(flop / peak / 1e6, weight_bytes / bandwidth / 1e6)  # ms
            rows.append(
                {
                    "level": name,
                    "input": list(inp.shape),
                    "ms": ms,
                    "gflop": flop / 1e9,
                    "weights_mb": weight_bytes / 1e6,
                    "gflops": flop / ms / 1e6,
                    "floor_ms": floor,
                }
            )
    total_flop = sum(r["gflop"] for r in rows)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "pix2pix": __version__,
        "command": "python benchmarks/layers.py " + " ".join(sys.argv[1:]),
        "conv_peak_gflops": peak,
        "bandwidth_gb_s": bandwidth,
        "whole_ms": whole,
        "levels": rows,
        "flop_floor_ms": total_flop / peak * 1000,
        "roofline_floor_ms": sum(r["floor_ms"] for r in rows),
        "sum_of_levels_ms": sum(r["ms"] for r in rows),
    }
    lines = [
        f"CPU, torch {report['torch']}, pix2pix {report['pix2pix']}, {report['date']}; `{report['command']}`.",
        "",
        f"Conv peak {peak:.0f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s (measured in this run). "
        f"Whole G (eval, batch 1, 256 px): {whole:.1f} ms; sum of the levels timed alone: "
        f"{report['sum_of_levels_ms']:.1f} ms.",
        "",
        "| level | input | ms | GFLOP | weights MB | GFLOP/s | roofline floor ms | ms / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shape = "x".join(str(v) for v in r["input"][1:])
        lines.append(
            f"| {r['level']} | {shape} | {r['ms']:.2f} | {r['gflop']:.3f} | {r['weights_mb']:.1f} | "
            f"{r['gflops']:.0f} | {r['floor_ms']:.2f} | {r['ms'] / r['floor_ms']:.1f}x |"
        )
    lines += [
        "",
        f"FLOP floor (the issue's: {total_flop:.1f} GFLOP / peak): {report['flop_floor_ms']:.1f} ms. "
        f"Roofline floor (each level: the larger of its FLOP time at the peak and its weight read at the "
        f"bandwidth): {report['roofline_floor_ms']:.1f} ms. The whole G takes "
        f"{whole / report['flop_floor_ms']:.2f}x the FLOP floor and {whole / report['roofline_floor_ms']:.2f}x "
        "the roofline floor.",
    ]
    write_report(Path(args.out), report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
