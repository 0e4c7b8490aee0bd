"""Seconds per training iteration at the paper's settings, and generator inference time.

U-Net 256 + 70x70 PatchGAN, L1+cGAN, batch 1, float32 (the paper's Cityscapes/facades setting).
Steps are timed on real Cityscapes pairs through the training data pipeline when
../shared/data/cityscapes exists, else on random tensors (said in the output). Prints a table
and writes JSON.

    python benchmarks/train_speed.py [--steps 20] [--warmup 3] [--device cpu] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pix2pix import __version__
from pix2pix.config import TrainConfig
from pix2pix.data.aligned import AlignedDataset, Augment, EpochSampler, split_folder
from pix2pix.data.device import resolve_device
from pix2pix.models.networks import build_networks
from pix2pix.training.train import make_adam, train_step

CITYSCAPES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default=str(CITYSCAPES))
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    cfg = TrainConfig.from_dict({"direction": "BtoA"})
    torch.manual_seed(0)
    generator, discriminator = build_networks(cfg)
    generator.to(device)
    discriminator.to(device)
    opt_g = make_adam(generator, cfg.optim)
    opt_d = make_adam(discriminator, cfg.optim)
    objective = cfg.loss.terms
    lambda_l1, gan_mode = cfg.loss.lambda_l1, cfg.loss.gan_mode

    data_path = Path(args.data)
    if data_path.is_dir():
        dataset = AlignedDataset(split_folder(data_path, "train"), "BtoA", Augment())
        keys = iter(EpochSampler(len(dataset), seed=0, epoch=0))
        source = f"real pairs from {data_path}"

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            item = dataset[next(keys)]
            return item["real_a"][None].to(device), item["real_b"][None].to(device)
    else:
        source = "random tensors (no dataset found)"

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            return torch.rand(1, 3, 256, 256, device=device) * 2 - 1, torch.rand(1, 3, 256, 256, device=device) * 2 - 1

    real_a, real_b = batch()
    with FlopCounterMode(display=False) as counter:
        train_step(generator, discriminator, opt_g, opt_d, real_a, real_b, objective, lambda_l1, gan_mode)
    gflop = counter.get_total_flops() / 1e9

    times, load_times = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        real_a, real_b = batch()
        t1 = time.perf_counter()
        train_step(generator, discriminator, opt_g, opt_d, real_a, real_b, objective, lambda_l1, gan_mode)
        _sync(device)
        t2 = time.perf_counter()
        if i >= args.warmup:
            times.append(t2 - t0)
            load_times.append(t1 - t0)

    generator.eval()
    infer = {}
    for size in (256, 512):
        x = torch.rand(1, 3, size, size, device=device) * 2 - 1
        runs = []
        with torch.inference_mode():
            for i in range(8):
                t0 = time.perf_counter()
                generator(x)
                _sync(device)
                if i >= 2:
                    runs.append(time.perf_counter() - t0)
        infer[size] = statistics.median(runs) * 1000

    median = statistics.median(times)
    result = {
        "what": "pix2pix training iteration (G fwd, D step, G step): U-Net 256, 70x70 PatchGAN, batch 1, fp32",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "pix2pix": __version__,
        "data": source,
        "steps": args.steps,
        "s_per_iter_median": median,
        "s_per_iter_min": min(times),
        "s_per_iter_max": max(times),
        "data_s_per_iter_median": statistics.median(load_times),
        "images_per_s": 1.0 / median,
        "gflop_per_iter": gflop,
        "gflop_per_s": gflop / median,
        "generator_inference_ms": {str(k): v for k, v in infer.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {result['device']}   data: {source}")
    print("| measure | value |\n|---|---|")
    print(f"| s / iteration (median of {args.steps}; min, max) | {median:.3f} ({min(times):.3f}, {max(times):.3f}) |")
    print(f"| of which data loading | {result['data_s_per_iter_median']:.3f} |")
    print(f"| GFLOP / iteration (FlopCounterMode) | {gflop:.1f} |")
    print(f"| achieved GFLOP/s | {gflop / median:.0f} |")
    print(f"| G inference 256 px / 512 px (ms) | {infer[256]:.0f} / {infer[512]:.0f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
