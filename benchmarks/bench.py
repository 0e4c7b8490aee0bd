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

The training settings run with the speed options given (the `pix2pix train` flags of the same
names): --precision bf16, --channels-last, --compile default|max-autotune, --cuda-graphs; FLOPs
are counted on the eager float32 step either way. With --compile the generator's inference is
also measured compiled (inductor, weights frozen). On a GPU the report adds the paper's facades
schedule (80,000 iterations at 256 px, batch 1) at the measured rate, and the rate of the
on-device data cache (--cache device).

    python benchmarks/bench.py [--device cpu] [--quick] [--profile] [--out benchmarks/results/bench_cpu]
    python benchmarks/bench.py --device cuda --precision bf16 --channels-last --compile default --cuda-graphs
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
from pix2pix.config import TrainConfig
from pix2pix.data.device import resolve_device
from pix2pix.models.networks import build_networks
from pix2pix.training.train import make_adam, maybe_compile, train_step

CITYSCAPES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes"
REFERENCE_S_PER_ITER = 0.76  # the reference PyTorch code on this 2-core machine (issue 5)
SETTINGS = {"256px_b1": (256, 1), "256px_b4": (256, 4), "128px_b1": (128, 1)}
FACADES_ITERATIONS = 80_000  # 400 images x 200 epochs at batch 1 (paper section 4.1 and appendix 6.2)
SPEED_OPTIONS = ("precision", "channels_last", "compile", "cuda_graphs")
GLIBC_KEEP_HEAP = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.top_pad=268435456"


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


def machine_peak(device: torch.device, quick: bool, dtype: torch.dtype = torch.float32) -> dict[str, object]:
    """Best measured GFLOP/s of large convolutions (shapes from the U-Net encoder and decoder,
    batch 4) and of a square matmul, in `dtype`."""
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
            x = torch.randn(b, c, s, s, device=device, dtype=dtype)
            w = torch.randn(o, c, k, k, device=device, dtype=dtype)
            fn = lambda x=x, w=w, st=st: F.conv2d(x, w, stride=st, padding=1)  # noqa: E731
            fl = flops_of(fn)
            t = summary(timed(fn, device, 3 if quick else 10, 2 if quick else 5))
            conv[f"{b}x{c}x{s}x{s} -> {o}, k{k} s{st}"] = fl / t["median"] / 1e9
        n = 1024 if quick else 2048
        a, bm = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        t = summary(timed(lambda: a @ bm, device, 3 if quick else 10, 2))
        matmul = 2 * n**3 / t["median"] / 1e9
    return {"conv_gflops": max(conv.values()), "conv_shapes": conv, "matmul_gflops": matmul, "matmul_n": n}


def train_setting(
    size: int, batch: int, device: torch.device, steps: int, warmup: int, options: dict[str, object]
) -> dict[str, object]:
    """Runs in a fresh process (see main) so that the peak RSS is this setting's own."""
    cfg = TrainConfig.from_dict({"crop_size": size, "load_size": size, "batch_size": batch, **options})
    torch.manual_seed(0)
    g, d = build_networks(cfg)
    layout = torch.channels_last if cfg.speed.channels_last else torch.contiguous_format
    g.to(device, memory_format=layout)
    d.to(device, memory_format=layout)
    opt_g, opt_d = make_adam(g, cfg.optim), make_adam(d, cfg.optim)
    objective = cfg.loss.terms
    lambda_l1, gan_mode = cfg.loss.lambda_l1, cfg.loss.gan_mode
    a = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    b = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    g_run, d_run = maybe_compile(g, cfg.speed), maybe_compile(d, cfg.speed)

    def eager_fp32_step() -> None:
        train_step(g, d, opt_g, opt_d, a, b, objective, lambda_l1, gan_mode)

    def step() -> None:
        if cfg.speed.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        train_step(g_run, d_run, opt_g, opt_d, a, b, objective, lambda_l1, gan_mode, cfg.optim.precision)

    eager_fp32_step()  # the first step allocates the Adam state
    flop = flops_of(eager_fp32_step)  # the same FLOPs whatever runs them
    started = time.perf_counter()
    step()
    sync(device)
    first_step_s = time.perf_counter() - started  # with --compile: the compile time
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
        "first_step_s": first_step_s,
    }
    if device.type == "cuda":
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def inference(device: torch.device, quick: bool, compiled: bool = False) -> dict[str, object]:
    """G in eval mode, batch 1, fp32; `compiled`: torch.compile with the weights frozen as
    constants (inductor's freezing: BatchNorm folded into the convolutions, weights prepacked)."""
    cfg = TrainConfig()
    torch.manual_seed(0)
    g, _ = build_networks(cfg)
    g.to(device).eval()
    run = g
    if compiled:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        run = torch.compile(g)
    out = {}
    with torch.inference_mode():
        for size in (256, 512):
            x = torch.rand(1, 3, size, size, device=device) * 2 - 1
            flop = flops_of(lambda x=x: g(x))
            t = summary(timed(lambda x=x: run(x), device, 3 if quick else 15, 3))
            out[str(size)] = {"ms": {k: v * 1000 if k != "n" else v for k, v in t.items()}, "gflop": flop / 1e9}
    return out


def device_cache_rate(device: torch.device, images: int, batch: int = 1, data: Path = CITYSCAPES) -> dict[str, object]:
    """Batches / s cut by the on-device cache (--cache device) from `images` real Cityscapes
    pairs: the data side of a GPU step without loader processes."""
    from pix2pix.data.aligned import AlignedDataset, Augment, EpochSampler, split_folder
    from pix2pix.data.cache import build_memory_cache
    from pix2pix.data.device import DeviceBatches

    if not data.is_dir():
        return {"skipped": f"{data} not present"}
    dataset = AlignedDataset(split_folder(data, "train"), "BtoA", Augment(), check=False)
    dataset.samples = dataset.samples[:images]
    dataset.cache, _ = build_memory_cache(dataset.prepare, dataset.samples)
    pairs = DeviceBatches(dataset, device)
    batches = pairs.batches(EpochSampler(len(pairs), 0, 0), batch)
    next(batches)
    sync(device)
    started, n = time.perf_counter(), 0
    for _ in batches:
        n += 1
    sync(device)
    return {"images": len(pairs), "batch": batch, "batches_per_s": n / (time.perf_counter() - started)}


def loader_rate(images: int, data: Path = CITYSCAPES) -> dict[str, object]:
    from torch.utils.data import DataLoader

    from pix2pix.data.aligned import AlignedDataset, Augment, EpochSampler, split_folder

    if not data.is_dir():
        return {"skipped": f"{data} not present"}
    dataset = AlignedDataset(split_folder(data, "train"), "BtoA", Augment())
    loader = DataLoader(dataset, batch_size=1, sampler=EpochSampler(len(dataset), 0, 0), num_workers=2)
    it = iter(loader)
    next(it)  # workers started
    t0 = time.perf_counter()
    for _ in range(images):
        next(it)
    return {"workers": 2, "images": images, "images_per_s": images / (time.perf_counter() - t0)}


def paper_step_parts(device: torch.device):
    """What one paper-settings iteration needs (256 px, batch 1, L1+cGAN, seed 0): the config,
    G, D, their Adams, the objective and a random pair (a, b) in [-1, 1]."""
    cfg = TrainConfig()
    torch.manual_seed(0)
    g, d = build_networks(cfg)
    g.to(device)
    d.to(device)
    opt_g, opt_d = make_adam(g, cfg.optim), make_adam(d, cfg.optim)
    a = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    b = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    return cfg, g, d, opt_g, opt_d, cfg.loss.terms, a, b


def step_parts(device: torch.device, steps: int = 12, warmup: int = 3) -> list[dict[str, object]]:
    """The parts of one 256 px batch-1 iteration (train_step's order), each timed on its own
    with the device synchronised, and its GFLOP: a breakdown without the profiler's overhead."""
    from pix2pix.models.losses import discriminator_loss, generator_loss
    from pix2pix.training.train import d_input, set_requires_grad

    cfg, g, d, opt_g, opt_d, objective, a, b = paper_step_parts(device)
    times: dict[str, list[float]] = {}
    flops: dict[str, float] = {}

    def part(name: str, fn, count: bool):
        sync(device)
        if count:
            with FlopCounterMode(display=False) as counter:
                out = fn()
            flops[name] = float(counter.get_total_flops())
            return out
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    for i in range(warmup + steps + 1):
        count = i == warmup  # one step counts FLOPs (untimed), the others are timed
        fake_b = part("G forward", lambda: g(a), count)
        set_requires_grad(d, True)
        opt_d.zero_grad(set_to_none=True)
        logits = part(
            "D forward, real and fake",
            lambda fake_b=fake_b: (d(d_input(a, b, True)), d(d_input(a, fake_b.detach(), True))),
            count,
        )
        d_loss, _ = discriminator_loss(*logits, cfg.loss.gan_mode)
        part("D backward", d_loss.backward, count)
        part("D Adam", opt_d.step, count)
        set_requires_grad(d, False)
        fake_logits = part("D forward for G's step", lambda fake_b=fake_b: d(d_input(a, fake_b, True)), count)
        opt_g.zero_grad(set_to_none=True)
        g_loss, _ = generator_loss(fake_b, b, objective, fake_logits, cfg.loss.lambda_l1, cfg.loss.gan_mode)
        part("G backward, through D", g_loss.backward, count)
        part("G Adam", opt_g.step, count)
    rows = []
    for name, t in times.items():
        ms = statistics.median(t[warmup:]) * 1000
        rows.append({"part": name, "ms": ms, "gflop": flops.get(name, 0.0) / 1e9})
    return rows


def profile_step(device: torch.device, top: int = 15) -> list[dict[str, object]]:
    from torch.profiler import ProfilerActivity, profile

    cfg, g, d, opt_g, opt_d, objective, a, b = paper_step_parts(device)
    for _ in range(2):
        train_step(g, d, opt_g, opt_d, a, b, objective, cfg.loss.lambda_l1, cfg.loss.gan_mode)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            train_step(g, d, opt_g, opt_d, a, b, objective, cfg.loss.lambda_l1, cfg.loss.gan_mode)
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


def write_report(out: Path, report: dict[str, object], table: str) -> None:
    """OUT.json (the figures) and OUT.md (the table), and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


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
        f"matmul {peak['matmul_gflops']:.0f} GFLOP/s"
        + (
            f" (the higher of two measurements in this run, before and after training: "
            f"{r['peak_first']['conv_gflops']:.0f} and {r['peak_second']['conv_gflops']:.0f} GFLOP/s conv)."
            if "peak_second" in r
            else "."
        ),
    ]
    if "peak_bf16" in r:
        lines.append(
            f"Measured peak (bf16): convolution {r['peak_bf16']['conv_gflops']:.0f} GFLOP/s, "
            f"matmul {r['peak_bf16']['matmul_gflops']:.0f} GFLOP/s; the share below is of the bf16 conv peak."
        )
        peak = r["peak_bf16"]
    options = r.get("options", {})
    on = [f"{k}={v}" for k, v in options.items() if v not in (False, "none", "fp32")]
    lines += [
        "",
        f"Training options: {', '.join(on) if on else 'none (float32, eager)'}.",
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
    kept = r["training"].get("256px_b1_heap_kept")
    if b1 and kept:
        lines += [
            "",
            f"256px_b1_heap_kept: the same step run with `GLIBC_TUNABLES={GLIBC_KEEP_HEAP}`, so that glibc keeps "
            "freed blocks of 32 MiB and more instead of unmapping them (the deepest layers' weight gradients are "
            "32 MiB each and are otherwise page-faulted and zeroed afresh every step).",
        ]
    if b1:
        minutes = FACADES_ITERATIONS * b1["s_per_iter"]["median"] / 60
        lines += [
            "",
            f"The facades schedule ({FACADES_ITERATIONS:,} iterations at 256 px, batch 1) at this rate: "
            f"{1 / b1['s_per_iter']['median']:.1f} iterations / s, {minutes:.1f} min of training steps "
            f"(first step, with any compiling: {b1.get('first_step_s', float('nan')):.1f} s).",
        ]
    lines += [
        "",
        "| G inference (eval, batch 1) | ms, median (min, max) | GFLOP | FLOP floor at conv peak | ratio to floor |",
        "|---|---|---|---|---|",
    ]
    fp32_peak = r["peak"]["conv_gflops"]
    for label, key in (("", "inference"), (" compiled, frozen", "inference_compiled")):
        for size, t in r.get(key, {}).items():
            floor = t["gflop"] / fp32_peak * 1000
            ms = t["ms"]
            lines.append(
                f"| {size} px{label} | {ms['median']:.1f} ({ms['min']:.1f}, {ms['max']:.1f}) | {t['gflop']:.1f} | "
                f"{floor:.1f} ms | {ms['median'] / floor:.2f}x |"
            )
    loader = r["loader"]
    if "images_per_s" in loader:
        lines += [
            "",
            "Data loader alone (real Cityscapes, paper preprocessing, 2 workers): "
            f"{loader['images_per_s']:.0f} images / s.",
        ]
    cache = r.get("device_cache", {})
    if "batches_per_s" in cache:
        lines += [
            "",
            f"On-device cache (--cache device, {cache['images']} real Cityscapes pairs, batch {cache['batch']}): "
            f"{cache['batches_per_s']:.0f} batches / s cut, mirrored and scaled on the device.",
        ]
    if r.get("parts"):
        total = sum(p["ms"] for p in r["parts"])
        lines += [
            "",
            f"The parts of one 256 px batch-1 iteration, each timed alone (sum {total:.0f} ms; GFLOP/s of the "
            f"parts with FLOPs, against the {r['peak']['conv_gflops']:.0f} GFLOP/s conv peak):",
            "",
            "| part | ms | GFLOP | GFLOP/s | of conv peak |",
            "|---|---|---|---|---|",
        ]
        for p in r["parts"]:
            rate = p["gflop"] / p["ms"] * 1000 if p["gflop"] else 0.0
            cells = f"{rate:.0f} | {rate / r['peak']['conv_gflops']:.0%}" if rate else "- | -"
            lines.append(f"| {p['part']} | {p['ms']:.1f} | {p['gflop']:.1f} | {cells} |")
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
    parser.add_argument(
        "--data", type=Path, default=CITYSCAPES, help="Cityscapes (aligned) for the loader and device-cache rates"
    )
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", default="none", choices=("none", "default", "max-autotune"))
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one training setting
    args = parser.parse_args()
    device = resolve_device(args.device)
    options = {name: getattr(args, name) for name in SPEED_OPTIONS}
    TrainConfig.from_dict(options)  # the same checks as `pix2pix train`

    if args.child:
        size, batch, steps, warmup = (int(v) for v in args.child.split(","))
        print(json.dumps(train_setting(size, batch, device, steps, warmup, options)))
        return
    flags = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in options.items()
        if v not in (False, "none", "fp32")
    ]

    settings = {"64px_b1": (64, 1)} if args.quick else SETTINGS
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "pix2pix": __version__,
        "command": "python benchmarks/bench.py " + " ".join(sys.argv[1:]),
        "quick": args.quick,
        "options": options,
    }
    print(f"device: {result['device']}", flush=True)
    result["peak"] = machine_peak(device, args.quick)
    print(
        f"peak: conv {result['peak']['conv_gflops']:.0f} GFLOP/s, matmul {result['peak']['matmul_gflops']:.0f}",
        flush=True,
    )
    if args.precision == "bf16":
        result["peak_bf16"] = machine_peak(device, args.quick, torch.bfloat16)
        print(f"bf16 peak: conv {result['peak_bf16']['conv_gflops']:.0f} GFLOP/s", flush=True)
    training = {}
    for name, (size, batch) in settings.items():
        steps = 3 if args.quick else (10 if batch > 1 else 20)
        if device.type == "cuda" and not args.quick:
            steps *= 10  # milliseconds per step: many more for a steady median
        warmup = 5 if args.compile != "none" else 3  # compiled: recompiles and graph recording settle
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--device",
                str(device),
                *" ".join(flags).split(),
                "--child",
                f"{size},{batch},{steps},{warmup}",
            ],
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
    if device.type == "cpu" and platform.system() == "Linux" and not args.quick:
        # the same 256 px step with glibc keeping freed blocks of 32 MiB and more in the process
        # (by default it unmaps them, and the next weight gradient of the deepest layers, 32 MiB
        # each, is page-faulted and zeroed afresh: 9 ms instead of 1 ms per matrix product)
        env = os.environ | {"GLIBC_TUNABLES": GLIBC_KEEP_HEAP}
        child = subprocess.run(
            [sys.executable, __file__, "--device", str(device), *" ".join(flags).split(), "--child", "256,1,20,3"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        training["256px_b1_heap_kept"] = json.loads(child.stdout.strip().splitlines()[-1])
    result["training"] = training
    # the peak again, after the training settings: a first measurement on a cold machine can be
    # low (seen: 258 against 306 GFLOP/s), and the shares below are of the higher, i.e. conservative
    again = machine_peak(device, args.quick)
    result["peak_first"] = result["peak"]
    if again["conv_gflops"] > result["peak"]["conv_gflops"]:
        result["peak"] = again
    result["peak_second"] = again
    print(f"peak again: conv {again['conv_gflops']:.0f} GFLOP/s; using {result['peak']['conv_gflops']:.0f}", flush=True)
    result["inference"] = inference(device, args.quick)
    if args.compile != "none":
        result["inference_compiled"] = inference(device, args.quick, compiled=True)
    result["loader"] = loader_rate(20 if args.quick else 300, args.data)
    if device.type == "cuda" or args.quick:
        result["device_cache"] = device_cache_rate(device, 20 if args.quick else 400, data=args.data)
    if args.profile:
        result["parts"] = step_parts(device)
        result["profile"] = profile_step(device)
    suffix = "".join(
        f"_{k}" if v is True else f"_{k}_{v}" for k, v in options.items() if v not in (False, "none", "fp32")
    ).replace("-", "_")
    out = Path(args.out or f"benchmarks/results/bench_{device.type}{suffix}")
    write_report(out, result, markdown(result))


if __name__ == "__main__":
    main()
