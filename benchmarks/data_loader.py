"""Images per second of the training data loader on Cityscapes, alone and with the training step.

The paper's preprocessing: decode a 512x256 JPEG, split it into the two 256 px halves, resize
both to 286, random 256 crop, mirror, to tensors in [-1, 1]. Measured:

1. each stage, in-process, per image;
2. the DataLoader alone (batch 1, EpochSampler order and seeds, as `pix2pix train` builds it)
   with 0, 1 and 2 worker processes, without and with `--cache memory` (pairs decoded and
   resized once, so an epoch only crops and mirrors);
3. the whole training iteration (U-Net 256 + 70x70 PatchGAN, L1+cGAN, batch 1) fed by the
   loader with 0 and 2 workers, and from the cache.

    python benchmarks/data_loader.py [--images 600] [--steps 15] [--data DIR] [--out FILE.json]
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
from torch.utils.data import DataLoader

from pix2pix import __version__
from pix2pix.config import TrainConfig
from pix2pix.data.aligned import AlignedDataset, Augment, EpochSampler, split_folder
from pix2pix.data.cache import cache_bytes
from pix2pix.data.images import read_image, split_pair, to_tensor
from pix2pix.models.networks import build_networks
from pix2pix.training.train import make_adam, train_step

CITYSCAPES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes"


def stage_times(dataset: AlignedDataset, count: int) -> dict[str, float]:
    """Milliseconds per image of each stage, median over `count` files (one process, one thread)."""
    augment = dataset.augment
    times: dict[str, list[float]] = {"decode": [], "split": [], "resize 256->286 (x2)": [], "crop+flip": []}
    times["to_tensor (x2)"] = []
    for i in range(count):
        path = dataset.samples[i].files[0]
        t0 = time.perf_counter()
        pair = read_image(path)
        t1 = time.perf_counter()
        b, a = split_pair(pair, path)  # BtoA: labels (right half) in
        t2 = time.perf_counter()
        a, b = augment.resize([a, b])
        t3 = time.perf_counter()
        a, b = augment.jitter([a, b], torch.Generator().manual_seed(i))
        t4 = time.perf_counter()
        to_tensor(a), to_tensor(b)
        t5 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[key].append(dt * 1000)
    return {key: statistics.median(v) for key, v in times.items()}


def loader_rate(dataset: AlignedDataset, workers: int, images: int, warmup: int = 20, repeats: int = 3) -> float:
    """Images per second through a DataLoader after `warmup` images (worker start-up excluded);
    the median of `repeats` epochs, as other processes on a shared machine add noise."""
    rates = []
    for epoch in range(repeats):
        sampler = EpochSampler(len(dataset), seed=0, epoch=epoch)
        loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, generator=torch.Generator())
        start = None
        for n, _ in enumerate(loader, 1):
            if n == warmup:
                start = time.perf_counter()
            if n == warmup + images:
                break
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def train_rate(dataset: AlignedDataset, workers: int, steps: int, warmup: int = 3) -> float:
    """Median seconds per training iteration, the data fetch included."""
    cfg = TrainConfig.from_dict({"direction": "BtoA"})
    torch.manual_seed(0)
    generator, discriminator = build_networks(cfg)
    opt_g = make_adam(generator, cfg.optim)
    opt_d = make_adam(discriminator, cfg.optim)
    objective = cfg.loss.terms
    sampler = EpochSampler(len(dataset), seed=0, epoch=0)
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, generator=torch.Generator())
    times, t0 = [], time.perf_counter()
    for i, batch in enumerate(loader):
        train_step(
            generator, discriminator, opt_g, opt_d, batch["real_a"], batch["real_b"], objective, 100.0, "vanilla"
        )
        t1 = time.perf_counter()
        if i >= warmup:
            times.append(t1 - t0)
        t0 = t1
        if len(times) == steps:
            break
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(CITYSCAPES))
    parser.add_argument("--images", type=int, default=600, help="images timed per loader setting")
    parser.add_argument("--steps", type=int, default=15, help="training iterations timed per setting (0: skip)")
    parser.add_argument("--out", default="benchmarks/results/data_loader_cpu.json")
    args = parser.parse_args()
    folder = Path(args.data)
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found: this benchmark needs real Cityscapes pairs (../shared/data/cityscapes)")

    augment = Augment()  # resize_and_crop 286 -> 256, mirroring: the paper's jitter
    dataset = AlignedDataset(split_folder(folder, "train"), "BtoA", augment)
    stages = stage_times(dataset, min(300, len(dataset)))
    t0 = time.perf_counter()
    cached = AlignedDataset(split_folder(folder, "train"), "BtoA", augment, cache="memory")
    build_s = time.perf_counter() - t0
    loader = {}
    for name, ds in (("none", dataset), ("memory", cached)):
        for workers in (0, 1, 2):
            rate = loader[f"{name}/{workers}"] = loader_rate(ds, workers, args.images)
            print(f"cache {name:6s} workers {workers}: {rate:7.1f} images/s", flush=True)
    training = {}
    if args.steps:
        for name, ds, workers in (("none", dataset, 0), ("none", dataset, 2), ("memory", cached, 0)):
            seconds = training[f"{name}/{workers}"] = train_rate(ds, workers, args.steps)
            print(f"training, cache {name:6s} workers {workers}: {seconds:.3f} s/iter", flush=True)

    result = {
        "what": "training data loader: 512x256 JPEG -> split -> resize 286 -> crop 256 -> flip -> tensors, batch 1",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)",
        "torch": torch.__version__,
        "pix2pix": __version__,
        "data": f"{folder} train ({len(dataset)} pairs)",
        "stage_ms_per_image": stages,
        "images_per_s": loader,
        "memory_cache": {"build_s": build_s, "bytes": cache_bytes(cached.cache), "pairs": len(cached)},
        "training_s_per_iter": training,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\ndevice: {result['device']}   data: {result['data']}")
    print("| stage (one process) | ms / image |\n|---|---|")
    for key, ms in stages.items():
        print(f"| {key} | {ms:.2f} |")
    print(f"| total | {sum(stages.values()):.2f} |")
    print("\n| loader alone, batch 1 | 0 workers | 1 worker | 2 workers |\n|---|---|---|---|")
    for name in ("none", "memory"):
        rates = " | ".join(f"{loader[f'{name}/{w}']:.0f}" for w in (0, 1, 2))
        print(f"| images/s, cache {name} | {rates} |")
    gib = result["memory_cache"]["bytes"] / 2**30
    print(f"\nmemory cache: {len(cached)} pairs, {gib:.2f} GiB, built in {build_s:.1f} s")
    if training:
        print("\n| training iteration + loader | s / iter |\n|---|---|")
        for key, s in training.items():
            name, workers = key.split("/")
            print(f"| cache {name}, {workers} workers | {s:.3f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
