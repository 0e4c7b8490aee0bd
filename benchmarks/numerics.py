"""Do the speed options train the same model? A fixed short run on real data with each option
set, compared with the float32 eager run: losses over the run and the trained generators'
outputs on validation images. Prints a Markdown table, writes JSON + Markdown.

The runs are `pix2pix train` runs (the paper's L1+cGAN, U-Net, 70x70 PatchGAN, batch 1) on the
first --images pairs of real Cityscapes labels -> photos, all from seed 0. A GAN run is chaotic
and dropout under torch.compile draws other random numbers than eager, so no run is the float32
run bitwise (except where the arithmetic is the same); the yardstick for "the same quality" is
a second float32 run from another seed, which shows how far two equally good runs lie apart.

For each variant:
- losses: mean of each logged loss over the last half of the run, and its difference from the
  float32 run's, against the seed-to-seed difference;
- outputs: mean |G(x) - G_fp32(x)| on --val validation inputs (images in [-1, 1], the paper's
  test mode with the same dropout seed), and each model's L1 to the real photos;
- s / step over the run, data loading included (first steps, with any compiling, left out).

    python benchmarks/numerics.py --device cpu --size 128 --steps 100            # this machine
    python benchmarks/numerics.py --device cuda --size 256 --steps 2000 --data DIR   # a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import write_report  # noqa: E402

from pix2pix import __version__  # noqa: E402
from pix2pix.config import TrainConfig
from pix2pix.data.aligned import AlignedDataset, Augment, split_folder
from pix2pix.data.device import resolve_device
from pix2pix.inference.generator import run_generator
from pix2pix.inference.predict import Pix2Pix
from pix2pix.training.train import train

CITYSCAPES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes"
LOSSES = ("g_l1", "g_gan", "d_real", "d_fake")


def variants(device: torch.device) -> dict[str, dict[str, object]]:
    """Option sets compared with "fp32" (eager float32, seed 0); "fp32, seed 1" is the yardstick."""
    found = {
        "fp32": {},
        "fp32, seed 1": {"seed": 1},
        "bf16": {"precision": "bf16"},
        "channels_last": {"channels_last": True},
        "compile": {"compile": "default"},
        "cache device": {"cache": "device"},
    }
    if device.type == "cuda":
        found["compile + cuda_graphs"] = {"compile": "default", "cuda_graphs": True}
        found["all: bf16, channels_last, compile, cuda_graphs, cache device"] = {
            "precision": "bf16",
            "channels_last": True,
            "compile": "default",
            "cuda_graphs": True,
            "cache": "device",
        }
    return found


def subset(source: Path, folder: Path, train_images: int, val_images: int) -> Path:
    """A dataset folder of links to the first pairs of `source` (nothing copied)."""
    for split, count in (("train", train_images), ("val", val_images)):
        files = sorted(p for p in split_folder(source, split).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        target = folder / split
        target.mkdir(parents=True, exist_ok=True)
        for f in files[:count]:
            link = target / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    return folder


def outputs(run_dir: Path, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    model = Pix2Pix.load(run_dir / "model", device=device)
    return run_generator(model.generator, inputs, mode="paper", seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default=str(CITYSCAPES), help="Cityscapes in the aligned layout (photo | labels)")
    parser.add_argument("--size", type=int, default=256, help="crop size (load size = size * 286 / 256)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--images", type=int, default=400, help="training pairs (facades has 400)")
    parser.add_argument("--val", type=int, default=20, help="validation inputs compared")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all for the device)")
    parser.add_argument("--work", default="runs/numerics", help="folder for the runs")
    parser.add_argument("--out", default=None, help="output path without extension")
    args = parser.parse_args()
    device = resolve_device(args.device)
    source = Path(args.data)
    if not (source / "train").is_dir():
        sys.exit(f"{source}: no train/ folder; pass --data with Cityscapes in the aligned layout")
    work = Path(args.work)
    data = subset(source, work / "data", args.images, args.val)
    load = round(args.size * 286 / 256)

    base = dict(
        data=str(data),
        direction="BtoA",  # labels -> photo
        crop_size=args.size,
        load_size=load,
        max_steps=args.steps,
        log_every=10,
        sample_every=10**9,
        checkpoint_every=10**9,
        num_samples=0,
        device=str(device),
        workers=2,
    )
    chosen = {k: v for k, v in variants(device).items() if not args.only or k in args.only or k == "fp32"}
    val = AlignedDataset(split_folder(data, "val"), "BtoA", Augment("resize", load, args.size))
    inputs = torch.stack([val[i]["real_a"] for i in range(len(val))])  # (N, 3, size, size) labels
    photos = torch.stack([val[i]["real_b"] for i in range(len(val))])

    results: dict[str, dict[str, object]] = {}
    reference_out = None
    for name, options in chosen.items():
        run_dir = work / name.replace(" ", "_").replace(",", "").replace(":", "")
        cfg = TrainConfig.from_dict(base | options)
        torch._dynamo.reset()  # each variant compiles afresh, within dynamo's recompile limits
        print(f"{name}: training {args.steps} steps ...", flush=True)
        summary = train(cfg, run_dir, overwrite=True, progress=False)
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        half = log[len(log) // 2 :]
        steady = [r for r in log[2:] if "images_per_s" in r]  # the first 20 steps hold any compile
        out = outputs(run_dir, inputs, device)
        if reference_out is None:
            reference_out = out
        results[name] = {
            "options": options,
            "steps": summary["step"],
            "seconds": summary["seconds"],
            "s_per_step": 1 / statistics.median(r["images_per_s"] for r in steady) if steady else None,
            "loss_means": {k: statistics.fmean(r[k] for r in half) for k in LOSSES},
            "loss_at_step_10": {k: log[0][k] for k in LOSSES},
            "output_vs_fp32": float((out - reference_out).abs().mean()),
            "output_l1_to_photo": float((out - photos).abs().mean()),
        }
        r = results[name]
        print(
            f"  {r['s_per_step']:.4f} s/step; last-half losses "
            + ", ".join(f"{k} {v:.4f}" for k, v in r["loss_means"].items())
            + f"; |G - G_fp32| {r['output_vs_fp32']:.4f}; L1 to photo {r['output_l1_to_photo']:.4f}",
            flush=True,
        )

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "pix2pix": __version__,
        "command": "python benchmarks/numerics.py " + " ".join(sys.argv[1:]),
        "size": args.size,
        "steps": args.steps,
        "images": args.images,
        "val": len(val),
        "results": results,
    }
    out_path = Path(args.out or f"benchmarks/results/numerics_{device.type}_{args.size}px")
    write_report(out_path, report, markdown(report))


def markdown(r: dict[str, object]) -> str:
    results = r["results"]
    ref = results["fp32"]["loss_means"]
    lines = [
        f"Device: {r['device']}; torch {r['torch']}; pix2pix {r['pix2pix']}; {r['date']}.",
        f"Command: `{r['command']}`",
        "",
        f"{r['steps']} steps of L1+cGAN at {r['size']} px, batch 1, on the first {r['images']} real Cityscapes "
        f"pairs (labels -> photo); outputs on {r['val']} validation labels. Losses: means over the last half "
        "of the run, with the difference from the fp32 run in brackets.",
        "",
        "| run | s / step | " + " | ".join(LOSSES) + " | mean abs(G - G_fp32) | L1 to photo |",
        "|---|---|" + "---|" * len(LOSSES) + "---|---|",
    ]
    for name, v in results.items():
        cells = [f"{v['loss_means'][k]:.3f} ({v['loss_means'][k] - ref[k]:+.3f})" for k in LOSSES]
        s = f"{v['s_per_step']:.3f}" if v["s_per_step"] is not None else "-"
        lines.append(
            f"| {name} | {s} | " + " | ".join(cells) + f" | {v['output_vs_fp32']:.4f} | {v['output_l1_to_photo']:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
