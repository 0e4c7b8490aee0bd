"""One benchmark run: training speed, achieved GFLOP/s against the machine's measured peak, peak
memory, inference latency and data-loader rate. Prints a Markdown table, writes JSON + Markdown.

Measures, on the device given (CPU here, a GPU where one is lent):
- the machine's peak: best fp32 GFLOP/s of a few large convolutions (the U-Net's own shapes,
  forward) and of a 2048^3 matmul, taken in this run;
- training (G forward, D step, G step; U-Net + 70x70 PatchGAN, L1+cGAN, fp32) at 256 px batch 1
  (the paper's), 256 px batch 4 and 128 px batch 1: s / iteration (median, min, max over
  steady iterations), images / s, GFLOP per iteration (torch FlopCounterMode), achieved GFLOP/s
  and its fraction of the conv peak, and peak memory (RSS of a fresh process per setting; on a
  GPU, max allocated);
- generator inference (eval mode, batch 1) at 256 and 512 px: ms / image and its ratio to the
  FLOP floor (GFLOP / conv peak);
- the training data loader alone on real Cityscapes pairs (2 workers): images / s;
- with --profile: the operators that take the time in one training iteration.

    python benchmarks/bench.py [--device cpu] [--quick] [--profile] [--out benchmarks/results/bench_cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pix2pix import __version__
from pix2pix.config import TrainConfig, parse_objective
from pix2pix.train import build_networks, make_adam, resolve_device, train_step

CITYSCAPES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes"
REFERENCE_S_PER_ITER = 0.76  # the reference PyTorch code on this 2-core machine (issue 5)
SETTINGS = {"256px_b1": (256, 1), "256px_b4": (256, 4), "128px_b1": (128, 1)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times)}


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def machine_peak(device: torch.device, quick: bool) -> dict[str, object]:
    """Best measured fp32 GFLOP/s of large convolutions (shapes from the U-Net encoder and
    decoder, batch 4) and of a square matmul."""
    shapes = [  # (batch, c_in, size, c_out, kernel, stride)
        (4, 128, 64, 256, 4, 2),
        (4, 256, 32, 512, 4, 2),
        (4, 256, 64, 256, 3, 1),
    ]
    if quick:
        shapes = shapes[:1]
    conv = {}
    with torch.inference_mode():
        for b, c, s, o, k, st in shapes:
            x = torch.randn(b, c, s, s, device=device)
            w = torch.randn(o, c, k, k, device=device)
            fn = lambda x=x, w=w, st=st: F.conv2d(x, w, stride=st, padding=1)  # noqa: E731
            fl = flops_of(fn)
            t = summary(timed(fn, device, 3 if quick else 10, 2))
            conv[f"{b}x{c}x{s}x{s} -> {o}, k{k} s{st}"] = fl / t["median"] / 1e9
        n = 1024 if quick else 2048
        a, bm = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        t = summary(timed(lambda: a @ bm, device, 3 if quick else 10, 2))
        matmul = 2 * n**3 / t["median"] / 1e9
    return {"conv_gflops": max(conv.values()), "conv_shapes": conv, "matmul_gflops": matmul, "matmul_n": n}


def train_setting(size: int, batch: int, device: torch.device, steps: int, warmup: int) -> dict[str, object]:
    """Runs in a fresh process (see main) so that the peak RSS is this setting's own."""
    cfg = TrainConfig(crop_size=size, load_size=size, batch_size=batch)
    torch.manual_seed(0)
    g, d = build_networks(cfg)
    g.to(device)
    d.to(device)
    opt_g, opt_d = make_adam(g, cfg), make_adam(d, cfg)
    objective = parse_objective(cfg.objective)
    a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    b = torch.rand(batch, 3, size, size, device=device) * 2 - 1

    def step() -> None:
        train_step(g, d, opt_g, opt_d, a, b, objective, cfg.lambda_l1, cfg.gan_mode)

    step()  # the first step allocates the Adam state
    flop = flops_of(step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = summary(timed(step, device, steps, warmup))
    result: dict[str, object] = {
        "size": size,
        "batch": batch,
        "s_per_iter": t,
        "images_per_s": batch / t["median"],
        "gflop_per_iter": flop / 1e9,
        "gflops": flop / 1e9 / t["median"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if device.type == "cuda":
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def inference(device: torch.device, quick: bool) -> dict[str, object]:
    cfg = TrainConfig()
    torch.manual_seed(0)
    g, _ = build_networks(cfg)
    g.to(device).eval()
    out = {}
    with torch.inference_mode():
        for size in (256, 512):
            x = torch.rand(1, 3, size, size, device=device) * 2 - 1
            flop = flops_of(lambda x=x: g(x))
            t = summary(timed(lambda x=x: g(x), device, 3 if quick else 15, 2))
            out[str(size)] = {"ms": {k: v * 1000 if k != "n" else v for k, v in t.items()}, "gflop": flop / 1e9}
    return out


def loader_rate(images: int) -> dict[str, object]:
    from torch.utils.data import DataLoader

    from pix2pix.data.aligned import AlignedDataset, Augment, EpochSampler, split_folder

    if not CITYSCAPES.is_dir():
        return {"skipped": f"{CITYSCAPES} not present"}
    dataset = AlignedDataset(split_folder(CITYSCAPES, "train"), "BtoA", Augment())
    loader = DataLoader(dataset, batch_size=1, sampler=EpochSampler(len(dataset), 0, 0), num_workers=2)
    it = iter(loader)
    next(it)  # workers started
    t0 = time.perf_counter()
    for _ in range(images):
        next(it)
    return {"workers": 2, "images": images, "images_per_s": images / (time.perf_counter() - t0)}


def profile_step(device: torch.device, top: int = 15) -> list[dict[str, object]]:
    from torch.profiler import ProfilerActivity, profile

    cfg = TrainConfig()
    torch.manual_seed(0)
    g, d = build_networks(cfg)
    g.to(device)
    d.to(device)
    opt_g, opt_d = make_adam(g, cfg), make_adam(d, cfg)
    objective = parse_objective(cfg.objective)
    a = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    b = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    for _ in range(2):
        train_step(g, d, opt_g, opt_d, a, b, objective, cfg.lambda_l1, cfg.gan_mode)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            train_step(g, d, opt_g, opt_d, a, b, objective, cfg.lambda_l1, cfg.gan_mode)
            sync(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events)
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return [
        {
            "op": e.key,
            "ms_per_iter": getattr(e, key) / 1000 / 3,
            "share": getattr(e, key) / total,
            "calls": e.count // 3,
        }
        for e in rows
    ]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def markdown(r: dict[str, object]) -> str:
    peak = r["peak"]
    lines = [
        f"Device: {r['device']}; torch {r['torch']}; pix2pix {r['pix2pix']}; {r['date']}.",
        f"Command: `{r['command']}`",
        "",
        f"Measured peak (fp32): convolution {peak['conv_gflops']:.0f} GFLOP/s, "
        f"matmul {peak['matmul_gflops']:.0f} GFLOP/s.",
        "",
        "| training setting | s / iter, median (min, max) | images / s | GFLOP / iter | GFLOP/s | of conv peak "
        "| peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in r["training"].items():
        s = t["s_per_iter"]
        mem = f"{t['peak_rss_gib']:.2f} GiB RSS"
        if "peak_allocated_gib" in t:
            mem += f", {t['peak_allocated_gib']:.2f} GiB allocated"
        lines.append(
            f"| {name} | {s['median']:.3f} ({s['min']:.3f}, {s['max']:.3f}) | {t['images_per_s']:.2f} | "
            f"{t['gflop_per_iter']:.1f} | {t['gflops']:.0f} | {t['gflops'] / peak['conv_gflops']:.0%} | {mem} |"
        )
    b1 = r["training"].get("256px_b1")
    if b1 and r["device"].startswith("CPU"):
        lines += [
            "",
            f"256 px batch 1 vs the reference's {REFERENCE_S_PER_ITER} s / iter: "
            f"{REFERENCE_S_PER_ITER / b1['s_per_iter']['median']:.2f}x its iteration rate.",
        ]
    lines += [
        "",
        "| G inference (eval, batch 1) | ms, median (min, max) | GFLOP | FLOP floor at conv peak | ratio to floor |",
        "|---|---|---|---|---|",
    ]
    for size, t in r["inference"].items():
        floor = t["gflop"] / peak["conv_gflops"] * 1000
        ms = t["ms"]
        lines.append(
            f"| {size} px | {ms['median']:.1f} ({ms['min']:.1f}, {ms['max']:.1f}) | {t['gflop']:.1f} | "
            f"{floor:.1f} ms | {ms['median'] / floor:.2f}x |"
        )
    loader = r["loader"]
    if "images_per_s" in loader:
        lines += [
            "",
            "Data loader alone (real Cityscapes, paper preprocessing, 2 workers): "
            f"{loader['images_per_s']:.0f} images / s.",
        ]
    if r.get("profile"):
        lines += [
            "",
            "Where one 256 px batch-1 iteration spends its time (torch.profiler, self time):",
            "",
            "| operator | ms / iter | share | calls / iter |",
            "|---|---|---|---|",
        ]
        for p in r["profile"]:
            lines.append(f"| `{p['op']}` | {p['ms_per_iter']:.1f} | {p['share']:.1%} | {p['calls']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quick", action="store_true", help="few repeats and small sizes: checks the script, not the machine"
    )
    parser.add_argument("--profile", action="store_true", help="also profile one 256 px iteration")
    parser.add_argument(
        "--out", default=None, help="output path without extension (default benchmarks/results/bench_<device>)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one training setting
    args = parser.parse_args()
    device = resolve_device(args.device)

    if args.child:
        size, batch, steps, warmup = (int(v) for v in args.child.split(","))
        print(json.dumps(train_setting(size, batch, device, steps, warmup)))
        return

    settings = {"64px_b1": (64, 1)} if args.quick else SETTINGS
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "pix2pix": __version__,
        "command": "python benchmarks/bench.py " + " ".join(sys.argv[1:]),
        "quick": args.quick,
    }
    print(f"device: {result['device']}", flush=True)
    result["peak"] = machine_peak(device, args.quick)
    print(
        f"peak: conv {result['peak']['conv_gflops']:.0f} GFLOP/s, matmul {result['peak']['matmul_gflops']:.0f}",
        flush=True,
    )
    training = {}
    for name, (size, batch) in settings.items():
        steps = 3 if args.quick else (10 if batch > 1 else 20)
        child = subprocess.run(
            [sys.executable, __file__, "--device", str(device), "--child", f"{size},{batch},{steps},3"],
            capture_output=True,
            text=True,
            check=True,
        )
        training[name] = json.loads(child.stdout.strip().splitlines()[-1])
        t = training[name]
        print(
            f"{name}: {t['s_per_iter']['median']:.3f} s/iter, {t['gflops']:.0f} GFLOP/s, {t['peak_rss_gib']:.2f} GiB",
            flush=True,
        )
    result["training"] = training
    result["inference"] = inference(device, args.quick)
    result["loader"] = loader_rate(20 if args.quick else 300)
    if args.profile:
        result["profile"] = profile_step(device)
    out = Path(args.out or f"benchmarks/results/bench_{device.type}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
