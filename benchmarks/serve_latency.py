"""Latency of the demo's `POST /translate` with the paper's 256 px U-Net, paper and eval modes.

The generator has random weights (initialised as in section 3.3): latency does not depend on
what the weights are. A server from `pix2pix.serve.make_server` runs on 127.0.0.1 in this
process; a client sends a 256x256 PNG label map over one keep-alive connection, as the page
does, and times each request from sending to the last byte of the PNG. The server's own figure
for the forward pass (X-Inference-Ms) is reported beside it. Prints a table and writes JSON.

`--behind-uploads`: the case of a drawing behind large uploads instead. In each of `--bursts`
bursts, three clients send a `--large` px upload each (eval mode, tiled by the server in tiles
of `--tile` px) and, once the server has admitted all three, a fourth sends a `--size` px
drawing; reported: the drawing's latency (p50 / p99 over the bursts) and its waits for turns,
the uploads' latencies and any of them refused (503: the queue has room, so there should be none).

    python benchmarks/serve_latency.py [--requests 10] [--warmup 2] [--size 256] [--out FILE.json]
    python benchmarks/serve_latency.py --behind-uploads [--bursts 20] [--large 1024] [--tile 512]
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from pix2pix import Pix2Pix, __version__
from pix2pix.models.networks import UNetGenerator, count_parameters, init_weights
from pix2pix.serve import Limits, make_server, page_palette


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


UNET256_CONFIG = {
    "architecture": "unet",
    "generator": {"in_channels": 3, "out_channels": 3, "base_channels": 64, "depth": 8},
    "direction": "BtoA",
    "crop_size": 256,
}


def paper_unet() -> UNetGenerator:
    """The paper's U-Net 256 (8 levels, 64 base channels, batch norm), seeded random weights."""
    torch.manual_seed(0)
    generator = UNetGenerator()
    init_weights(generator)
    return generator


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the nearest ranks."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def post(port: int, body: bytes) -> tuple[int, float, dict[str, str]]:
    """One POST /translate?mode=eval on its own connection: (status, ms to the last byte, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        start = time.perf_counter()
        conn.request("POST", "/translate?mode=eval", body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - start) * 1000, dict(response.getheaders())
    finally:
        conn.close()


def behind_uploads(args: argparse.Namespace) -> None:
    """A drawing sent once three large uploads are queued, `args.bursts` times."""
    load_before = os.getloadavg()[0]
    generator = paper_unet()
    limits = Limits(tile=args.tile, queue_seconds=600.0)  # time is measured here, not refused
    server = make_server(Pix2Pix(generator, UNET256_CONFIG), "127.0.0.1", 0, limits=limits, name="unet256-random")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port, queue = server.server_address[1], server.translator.queue
    small, large = label_map(args.size), label_map(args.large)
    post(port, small)  # warm-up: first calls, and the queue's estimate of time per pixel
    post(port, large)

    drawings, turn_waits, uploads, refused = [], [], [], 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(args.bursts):
            pending = [pool.submit(post, port, large) for _ in range(3)]
            deadline = time.monotonic() + 30
            while queue.admitted < 3 and time.monotonic() < deadline:  # all three decoded and queued
                time.sleep(0.002)
            status, ms, headers = post(port, small)
            if status != 200:
                raise SystemExit(f"the drawing got HTTP {status}")
            drawings.append(ms)
            turn_waits.append(float(headers["X-Queue-Ms"]))
            for future in pending:
                status, ms, _ = future.result()
                refused += status == 503
                if status == 200:
                    uploads.append(ms)
    server.shutdown()
    server.server_close()

    result = {
        "what": f"POST /translate (eval) of a {args.size} px drawing sent once three {args.large} px uploads are "
        f"queued, tiles of {args.tile} px, paper U-Net 256 (random weights)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "pix2pix": __version__,
        "bursts": args.bursts,
        "drawing_ms": {"p50": percentile(drawings, 50), "p99": percentile(drawings, 99), "max": max(drawings)},
        "drawing_turn_wait_ms": {"p50": percentile(turn_waits, 50), "p99": percentile(turn_waits, 99)},
        "upload_ms": {"p50": percentile(uploads, 50), "p99": percentile(uploads, 99)} if uploads else None,
        "uploads_refused": refused,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    out = Path(args.out or "benchmarks/results/serve_latency_behind_uploads_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {result['device']}   torch {torch.__version__}   {args.bursts} bursts")
    print("| case | drawing ms p50 / p99 | its waits for turns p50 / p99 | uploads ms p50 / p99 | refused |")
    print("|---|---|---|---|---|")
    d, w, u = result["drawing_ms"], result["drawing_turn_wait_ms"], result["upload_ms"] or {"p50": 0, "p99": 0}
    print(
        f"| {args.size} px behind 3 x {args.large} px | {d['p50']:.0f} / {d['p99']:.0f} | {w['p50']:.0f} / "
        f"{w['p99']:.0f} | {u['p50']:.0f} / {u['p99']:.0f} | {refused} |"
    )
    print(f"1-minute load average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10, help="timed requests per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per mode first")
    parser.add_argument("--size", type=int, default=256, help="side of the square input image")
    parser.add_argument("--out", default=None, help="JSON file (default benchmarks/results/serve_latency*_cpu.json)")
    parser.add_argument("--behind-uploads", action="store_true", help="a drawing behind three queued large uploads")
    parser.add_argument("--bursts", type=int, default=20, help="--behind-uploads: timed bursts")
    parser.add_argument("--large", type=int, default=1024, help="--behind-uploads: side of the uploads in px")
    parser.add_argument("--tile", type=int, default=512, help="--behind-uploads: the server's --tile")
    args = parser.parse_args()
    if args.behind_uploads:
        behind_uploads(args)
        return
    args.out = args.out or "benchmarks/results/serve_latency_cpu.json"

    load_before = os.getloadavg()[0]  # other processes on the machine skew every figure here
    generator = paper_unet()
    server = make_server(Pix2Pix(generator, UNET256_CONFIG), "127.0.0.1", 0, name="unet256-random")
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
