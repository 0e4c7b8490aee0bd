"""Generator latency: ONNX Runtime vs PyTorch, both in eval mode, for the paper's 256 px U-Net.

The U-Net of the paper (depth 8, ngf 64, batch norm, 54.4 M parameters) with random N(0, 0.02)
weights: latency does not depend on the values. Batch 1, float32, at 256 and 512 px. The two
backends run alternately (one PyTorch call, one ORT call, ...) so that load from other processes
falls on both alike; both use the same number of threads, and ORT's idle threads do not spin
(they would take the cores from the next PyTorch call). Prints a Markdown table and writes JSON.

    python benchmarks/export_latency.py [--runs 30] [--warmup 3] [--sizes 256 512] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from pix2pix import __version__
from pix2pix.inference.export import ONNX_OPSET, RUNTIME_PACKAGES, export_onnx, require
from pix2pix.models.networks import UNetGenerator, count_parameters, init_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed calls per backend and size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--out", default="benchmarks/results/export_latency_cpu.json")
    args = parser.parse_args()
    (ort,) = require(RUNTIME_PACKAGES, "this benchmark")

    torch.manual_seed(0)
    generator = UNetGenerator()  # the paper's 256 px U-Net: depth 8, ngf 64, batch norm
    init_weights(generator)
    generator.eval()
    config = {"architecture": "unet", "generator": {"depth": 8}, "direction": "AtoB"}
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet256.onnx"
        t0 = time.perf_counter()
        export_onnx(generator, config, path)
        export_s = time.perf_counter() - t0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the same threads as torch
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    rows = {}
    for size in args.sizes:
        x = torch.rand(1, 3, size, size) * 2 - 1
        feed = {"input": x.numpy()}
        torch_ms, ort_ms = [], []
        with torch.inference_mode():
            expected = generator(x)
            actual = torch.from_numpy(session.run(None, feed)[0])
            for i in range(args.warmup + args.runs):
                t0 = time.perf_counter()
                generator(x)
                t1 = time.perf_counter()
                session.run(None, feed)
                t2 = time.perf_counter()
                if i >= args.warmup:
                    torch_ms.append((t1 - t0) * 1000)
                    ort_ms.append((t2 - t1) * 1000)
        rows[str(size)] = {
            "torch_ms": {"median": statistics.median(torch_ms), "min": min(torch_ms), "max": max(torch_ms)},
            "onnxruntime_ms": {"median": statistics.median(ort_ms), "min": min(ort_ms), "max": max(ort_ms)},
            "speedup": statistics.median(torch_ms) / statistics.median(ort_ms),
            "max_abs_diff": (expected - actual).abs().max().item(),
        }

    result = {
        "what": "generator latency, eval mode, batch 1, fp32: PyTorch vs ONNX Runtime (CPUExecutionProvider)",
        "model": f"paper U-Net 256 (depth 8, ngf 64, batch norm, {count_parameters(generator):,} parameters), "
        "random weights (latency does not depend on them)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}, {threads} threads for both backends)",
        "onnxruntime_options": {"intra_op_num_threads": threads, "allow_spinning": 0},
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "pix2pix": __version__,
        "opset": ONNX_OPSET,
        "export_s": export_s,
        "runs": args.runs,
        "warmup": args.warmup,
        "sizes": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{result['model']}\ndevice: {result['device']}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"export: {export_s:.1f} s; {args.runs} timed runs per backend and size after {args.warmup} warm-up runs\n")
    print("| size | PyTorch eval, ms: median (min, max) | ONNX Runtime, ms: median (min, max) | speed-up | max diff |")
    print("|---|---|---|---|---|")
    for size, r in rows.items():
        t, o = r["torch_ms"], r["onnxruntime_ms"]
        print(
            f"| {size} px | {t['median']:.1f} ({t['min']:.1f}, {t['max']:.1f}) "
            f"| {o['median']:.1f} ({o['min']:.1f}, {o['max']:.1f}) | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |"
        )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
