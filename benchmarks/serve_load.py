"""The demo server under load: 8 client threads x 100 requests, a mix of small drawings and
large uploads, against the paper's 256 px U-Net (random weights: latency does not depend on
them). Reports p50 / p99 latency of the answered requests by size, how many were refused
(503 + Retry-After), and the longest time a small request waited in the queue (X-Queue-Ms),
for the server's smallest-first order and for first-come-first-served.

    python benchmarks/serve_load.py [--threads 8] [--requests 100] [--large-share 0.1]
        [--small 256] [--large 1024] [--max-queue 8] [--out benchmarks/results/serve_load_cpu]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from pix2pix import Pix2Pix, __version__
from pix2pix.models.networks import UNetGenerator, init_weights
from pix2pix.serve import Limits, make_server

sys.path.insert(0, str(Path(__file__).parent))
from bench import device_name, write_report  # noqa: E402
from serve_latency import label_map  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def run_load(model: Pix2Pix, args: argparse.Namespace, order: str) -> dict[str, object]:
    limits = Limits(max_queue=args.max_queue, queue_seconds=args.queue_seconds, order=order)
    server = make_server(model, "127.0.0.1", 0, limits=limits, name="unet256-random")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bodies = {"small": label_map(args.small), "large": label_map(args.large)}
    records: list[dict[str, object]] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=300)
        for _ in range(args.requests):
            kind = "large" if rng.random() < args.large_share else "small"
            start = time.perf_counter()
            conn.request("POST", "/translate?mode=eval", body=bodies[kind], headers={"Content-Type": "image/png"})
            response = conn.getresponse()
            response.read()
            record = {
                "kind": kind,
                "status": response.status,
                "ms": (time.perf_counter() - start) * 1000,
                "queue_ms": float(response.getheader("X-Queue-Ms") or "nan"),
            }
            with lock:
                records.append(record)
            if response.status == 503:
                conn.close()
                time.sleep(min(1.0, float(response.getheader("Retry-After") or 1)))  # a patient client, shortened
                conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=300)
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    server.shutdown()
    server.server_close()
    result: dict[str, object] = {"order": order, "wall_s": round(wall, 1)}
    for kind in ("small", "large"):
        good = [r for r in records if r["kind"] == kind and r["status"] == 200]
        result[kind] = {
            "answered": len(good),
            "refused_503": sum(r["kind"] == kind and r["status"] == 503 for r in records),
            "p50_ms": round(percentile([r["ms"] for r in good], 50), 1),
            "p99_ms": round(percentile([r["ms"] for r in good], 99), 1),
            "max_queue_wait_ms": round(max((r["queue_ms"] for r in good), default=float("nan")), 1),
        }
    result["other_status"] = sorted({r["status"] for r in records} - {200, 503})
    return result


def run_burst(model: Pix2Pix, args: argparse.Namespace, order: str) -> dict[str, object]:
    """The issue's case: three large uploads arrive at once, then one small drawing; how long the
    small one waits for its turn (X-Queue-Ms) and takes in all."""
    limits = Limits(max_queue=args.max_queue, queue_seconds=120.0, order=order)
    server = make_server(model, "127.0.0.1", 0, limits=limits, name="unet256-random")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    results: dict[str, dict[str, float]] = {}

    def post(name: str, body: bytes) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        start = time.perf_counter()
        conn.request("POST", "/translate?mode=eval", body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        queue_ms = float(response.getheader("X-Queue-Ms") or "nan")
        results[name] = {"ms": (time.perf_counter() - start) * 1000, "queue_ms": queue_ms}
        conn.close()

    large, small = label_map(args.burst_large), label_map(64)
    threads = [threading.Thread(target=post, args=(f"large{i}", large)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # the large ones are in (one running, two queued) before the small one comes
    post("small", small)
    for t in threads:
        t.join()
    server.shutdown()
    server.server_close()
    return {
        "order": order,
        "small_ms": round(results["small"]["ms"], 1),
        "small_queue_ms": round(results["small"]["queue_ms"], 1),
        "large_ms": [round(results[f"large{i}"]["ms"], 1) for i in range(3)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="requests per thread")
    parser.add_argument("--large-share", type=float, default=0.1, help="share of large uploads")
    parser.add_argument("--small", type=int, default=256, help="side of a small request (px)")
    parser.add_argument("--large", type=int, default=1024, help="side of a large upload (px)")
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--queue-seconds", type=float, default=30.0)
    parser.add_argument("--orders", default="smallest-first,arrival")
    parser.add_argument("--burst-large", type=int, default=1536, help="side of the burst's three large uploads")
    parser.add_argument("--out", default="benchmarks/results/serve_load_cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = UNetGenerator()
    init_weights(generator)
    config = {"architecture": "unet", "generator": {"base_channels": 64, "depth": 8}, "crop_size": 256}
    model = Pix2Pix(generator, config)
    load_before = os.getloadavg()[0]
    runs = [run_load(model, args, order) for order in args.orders.split(",")]
    bursts = [run_burst(model, args, order) for order in args.orders.split(",")]
    report = {
        "what": f"{args.threads} threads x {args.requests} POST /translate (eval), {args.large_share:.0%} "
        f"{args.large}x{args.large}, the rest {args.small}x{args.small}; paper U-Net 256, random weights",
        "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "pix2pix": __version__,
        "max_queue": args.max_queue,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "runs": runs,
        "burst": bursts,
    }
    lines = [
        f"{report['what']}. {report['device']}; torch {report['torch']}; {report['date']}.",
        f"Command: `{report['command']}`",
        "",
        "| order | wall s | small p50 / p99 ms | small: longest queue wait ms | large p50 / p99 ms | 503s |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        s, g = r["small"], r["large"]
        lines.append(
            f"| {r['order']} | {r['wall_s']} | {s['p50_ms']} / {s['p99_ms']} | {s['max_queue_wait_ms']} "
            f"| {g['p50_ms']} / {g['p99_ms']} | {s['refused_503'] + g['refused_503']} |"
        )
    lines += [
        "",
        f"Burst: 3 uploads of {args.burst_large}x{args.burst_large} at once, then one 64x64 drawing 0.3 s later.",
        "",
        "| order | small: waited for its turn ms | small: in all ms | the large ones, in all ms |",
        "|---|---|---|---|",
    ]
    for b in bursts:
        lines.append(
            f"| {b['order']} | {b['small_queue_ms']} | {b['small_ms']} | {', '.join(map(str, b['large_ms']))} |"
        )
    write_report(Path(args.out), report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
