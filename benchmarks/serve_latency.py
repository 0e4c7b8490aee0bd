"""Latency of the demo's `POST /translate` with the paper's 256 px U-Net, paper and eval modes.

The generator has random weights (initialised as in section 3.3): latency does not depend on
what the weights are. A server from `pix2pix.serve.make_server` runs on 127.0.0.1 in this
process; a client sends a 256x256 PNG label map over one keep-alive connection, as the page
does, and times each request from sending to the last byte of the PNG. The server's own figure
for the forward pass (X-Inference-Ms) is reported beside it. Prints a table and writes JSON.

    python benchmarks/serve_latency.py [--requests 10] [--warmup 2] [--size 256] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from pix2pix import Pix2Pix, __version__
from pix2pix.models.networks import UNetGenerator, count_parameters, init_weights
from pix2pix.serve import make_server, page_palette


def label_map(size: int) -> bytes:
    """A facade-like label map (CMP palette): wall, rows of windows, a door; as PNG bytes."""
    colors = {c["name"]: tuple(c["color"]) for c in page_palette("facades")["classes"]}
    img = Image.new("RGB", (size, size), colors["facade"])
    draw = ImageDraw.Draw(img)
    step = size // 6
    for row in range(1, 5):
        for col in range(1, 5):
            x, y = col * step + step // 4, row * step - step // 2
            draw.rectangle([x, y, x + step // 2, y + step // 2], fill=colors["window"])
    draw.rectangle([size // 2 - step // 2, size - step, size // 2 + step // 2, size - 1], fill=colors["door"])
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10, help="timed requests per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per mode first")
    parser.add_argument("--size", type=int, default=256, help="side of the square input image")
    parser.add_argument("--out", default="benchmarks/results/serve_latency_cpu.json")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]  # other processes on the machine skew every figure here
    torch.manual_seed(0)
    generator = UNetGenerator()  # the paper's U-Net 256: 8 levels, 64 base channels, batch norm
    init_weights(generator)
    config = {
        "architecture": "unet",
        "generator": {"in_channels": 3, "out_channels": 3, "base_channels": 64, "depth": 8},
        "direction": "BtoA",
        "crop_size": 256,
    }
    server = make_server(Pix2Pix(generator, config), "127.0.0.1", 0, name="unet256-random")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    body = label_map(args.size)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)

    results = {}
    for mode in ("eval", "paper"):
        total, inference = [], []
        for i in range(args.warmup + args.requests):
            query = f"mode={mode}" + (f"&seed={i}" if mode == "paper" else "")
            start = time.perf_counter()
            conn.request("POST", f"/translate?{query}", body=body, headers={"Content-Type": "image/png"})
            response = conn.getresponse()
            png = response.read()
            elapsed = (time.perf_counter() - start) * 1000
            if response.status != 200:
                raise SystemExit(f"{mode}: HTTP {response.status}: {png[:200]!r}")
            if i >= args.warmup:
                total.append(elapsed)
                inference.append(float(response.getheader("X-Inference-Ms")))
        assert Image.open(io.BytesIO(png)).size == (args.size, args.size)
        results[mode] = {
            "request_ms_median": statistics.median(total),
            "request_ms_min": min(total),
            "request_ms_max": max(total),
            "inference_ms_median": statistics.median(inference),
        }
    conn.close()
    server.shutdown()
    server.server_close()

    result = {
        "what": f"POST /translate, {args.size}x{args.size} PNG in and out, paper U-Net 256 (random weights)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "pix2pix": __version__,
        "generator_parameters": count_parameters(generator),
        "requests_per_mode": args.requests,
        "warmup_per_mode": args.warmup,
        "input_png_bytes": len(body),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "modes": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {result['device']}   torch {torch.__version__}   {args.size} px, {args.requests} requests per mode")
    print("| mode | request ms, median (min, max) | of which the forward pass (median) |\n|---|---|---|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['request_ms_median']:.0f} ({r['request_ms_min']:.0f}, {r['request_ms_max']:.0f}) "
            f"| {r['inference_ms_median']:.0f} |"
        )
    print(f"1-minute load average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
