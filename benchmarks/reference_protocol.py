"""Train the reference code (junyanz/pytorch-CycleGAN-and-pix2pix) at our reduced protocol, import
its generator and score it with our FCN-score scorer, so that a row of `reports/table1-reduced`
can be set beside the same row trained by the code the paper's authors wrote.

The question this answers: where a reduced-protocol row does not reproduce the paper, is that the
2-epoch protocol (the reference code does the same) or this implementation (it does not)?

Nothing of the reference is copied here: the user supplies a checkout (e.g. commit 2a7afba of its
mirror) and this script runs that checkout's own `train.py` in a subprocess, with:
- the reduced protocol's settings as the reference's own flags: `--netG unet_128 --load_size 143
  --crop_size 128 --n_epochs 1 --n_epochs_decay 1`, batch 1, batch norm, vanilla GAN, 70x70
  PatchGAN, lambda 100, Adam 2e-4 (0.5, 0.999), labels -> photo (`--direction BtoA`), all 2,975
  training pairs, data loaded in the training process (`--num_threads 0`, one core per row);
- Python's, NumPy's and torch's generators seeded with the row's seed (the reference has no seed
  flag; its data order and jitter come from those generators);
- the objectives the reference has no flag for, set on its Pix2PixModel class before train.py runs:
  `L1+cGAN` is the reference as it is; `cGAN` is its `--lambda_L1 0`; `L1` skips the
  discriminator and trains G on lambda * L1 alone; `GAN` and `L1+GAN` give the discriminator
  zeros where the input image goes. The first conv then reads nothing from those three channels
  (their products are 0, so their gradients and Adam updates are 0), which is an unconditional D
  over the output alone, with the reference's own networks and losses.

Then `pix2pix.hub.reference.import_reference` converts `latest_net_G.pth` and `experiments.reproduce._Scoring`
scores it on the 500 val pairs exactly as a report row is scored (paper mode, seed 0, the same
segmenter folder). What is written, under OUT/reference/ROW-seedK/:
    checkpoints (the reference's own folder: nets, loss_log.txt, train_opt.txt)
    model/                  our model folder (safetensors + config.json)
    eval-label2photo.json   the scores, as in a report row
    done.json               steps, seconds, the checkout's commit and the command

Usage (one thread a row; two rows can run at once on two cores):
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/reference_protocol.py train \
        --reference ~/src/pytorch-CycleGAN-and-pix2pix --data ../shared/data/cityscapes \
        --out reproduce --row L1+cGAN --seed 0
    python benchmarks/reference_protocol.py score --data ../shared/data/cityscapes --out reproduce
    python benchmarks/reference_protocol.py status --out reproduce

`score` needs the reduced protocol's segmenter (OUT/segmenter-128px-15000steps, which `pix2pix
reproduce table1 --out OUT` trains) and writes OUT/reference-table1.json, which the table1
report reads for its "reference code" column.

The reference's train.py imports torchvision (its transforms), wandb and dominate; install them
beside the CPU torch in an environment of their own (`pip install --no-deps torchvision==0.28.0;
pip install wandb dominate`) and pass its interpreter as --python. PyPI's torchvision is a CUDA
build whose compiled ops cannot load on the CPU torch; the runner declares the two op schemas
its import registers fakes for (no kernels), as tests/metrics/test_perceptual.py does. A row killed part
way is trained again from the start: the reference saves no optimizer state to resume from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# row -> what differs from the reference's own pix2pix (see the module docstring)
ROWS = {
    "L1": "l1",
    "GAN": "gan",
    "cGAN": "cgan",
    "L1+GAN": "l1+gan",
    "L1+cGAN": "l1+cgan",
}
STEPS = 5950  # 2 epochs of the 2,975 Cityscapes training pairs at batch 1
PROTOCOL_FLAGS = [
    "--model", "pix2pix", "--dataset_mode", "aligned", "--direction", "BtoA",
    "--netG", "unet_128", "--netD", "basic", "--norm", "batch", "--gan_mode", "vanilla",
    "--load_size", "143", "--crop_size", "128", "--batch_size", "1",
    "--n_epochs", "1", "--n_epochs_decay", "1", "--lr", "0.0002", "--beta1", "0.5",
    "--num_threads", "0", "--no_html", "--print_freq", "100",
    "--save_epoch_freq", "1", "--save_latest_freq", "100000",
]  # fmt: skip


def run_name(row: str, seed: int) -> str:
    return f"{ROWS[row]}-seed{seed}"


def _declare_torchvision_ops() -> None:
    """PyPI's torchvision is a CUDA build: on a CPU torch its compiled ops do not load and its
    import stops at two `register_fake` calls. Declaring the two schemas lets the pure-Python
    parts (the transforms the reference uses) import; nothing here calls nms."""
    import importlib

    import torch

    try:
        importlib.import_module("torchvision")
        return
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    schemas = torch.library.Library("torchvision", "DEF")
    schemas.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    schemas.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _KEEP.append(schemas)
    importlib.import_module("torchvision")


_KEEP: list = []


def _set_objective(model_class, objective: str) -> None:
    """Change the reference Pix2PixModel's objective for the rows it has no flag for."""
    import torch

    if objective == "l1":

        def optimize_parameters(self):  # G on lambda * L1 alone; D is never used
            self.forward()
            self.optimizer_G.zero_grad()
            self.loss_G_L1 = self.criterionL1(self.fake_B, self.real_B) * self.opt.lambda_L1
            self.loss_G_GAN = self.loss_D_real = self.loss_D_fake = torch.zeros(())
            self.loss_G_L1.backward()
            self.optimizer_G.step()

        model_class.optimize_parameters = optimize_parameters
    elif objective in ("gan", "l1+gan"):
        # The reference's backward_D / backward_G concatenate (real_A, image) for D: with real_A
        # read as zeros there, D sees the output alone. G still translates the real input.
        def hide_input(method):
            def wrapped(self):
                real_A = self.real_A
                self.real_A = torch.zeros_like(real_A)
                try:
                    method(self)
                finally:
                    self.real_A = real_A

            return wrapped

        model_class.backward_D = hide_input(model_class.backward_D)
        model_class.backward_G = hide_input(model_class.backward_G)


def _runner(checkout: str, objective: str, seed: int, argv: list[str]) -> None:
    """Inside the subprocess: seed, set the objective, run the checkout's train.py."""
    import random
    import runpy

    import numpy as np
    import torch

    sys.path.insert(0, checkout)
    os.chdir(checkout)  # the reference resolves some paths from its own folder
    _declare_torchvision_ops()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    from models import pix2pix_model  # the checkout's, from sys.path

    _set_objective(pix2pix_model.Pix2PixModel, objective)
    sys.argv = ["train.py", *argv]
    runpy.run_path(str(Path(checkout) / "train.py"), run_name="__main__")


def _commit(checkout: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def train(args: argparse.Namespace) -> int:
    checkout = Path(args.reference).resolve()
    if not (checkout / "train.py").is_file() or not (checkout / "models" / "pix2pix_model.py").is_file():
        print(f"error: --reference {args.reference}: not a checkout of the reference code (no train.py)")
        return 2
    data = Path(args.data).resolve()
    if not (data / "train").is_dir():
        print(f"error: --data {args.data}: no train/ folder of aligned pairs")
        return 2
    name = run_name(args.row, args.seed)
    where = Path(args.out).resolve() / "reference"
    folder = where / name
    if (folder / "done.json").is_file():
        print(f"{name}: trained already ({folder / 'done.json'})")
        return 0
    flags = [*PROTOCOL_FLAGS, *(["--lambda_L1", "0"] if ROWS[args.row] == "cgan" else [])]
    argv = [*flags, "--dataroot", str(data), "--checkpoints_dir", str(where), "--name", name]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time()
    python = sys.executable if args.python is None else args.python
    code = [python, __file__, "_run", str(checkout), ROWS[args.row], str(args.seed), "--", *argv]
    with open(folder / "train.log", "w") as log:
        result = subprocess.run(code, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not (folder / "latest_net_G.pth").is_file():
        print(f"{name}: the reference's train.py failed (exit {result.returncode}); see {folder / 'train.log'}")
        return 1
    done = {
        "row": args.row,
        "seed": args.seed,
        "steps": STEPS,
        "seconds": round(time.time() - start, 1),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "reference_commit": _commit(checkout),
        "flags": flags,
    }
    (folder / "done.json").write_text(json.dumps(done, indent=2) + "\n")
    print(f"{name}: trained in {done['seconds']:.0f} s")
    return 0


def score(args: argparse.Namespace) -> int:
    from pix2pix.experiments.reproduce import REDUCED_SEGMENTER_STEPS, REFERENCE_FILE, _metric, _Scoring
    from pix2pix.hub.reference import import_reference
    from pix2pix.paper import SCORES

    out = Path(args.out).resolve()
    segmenter = out / f"segmenter-128px-{REDUCED_SEGMENTER_STEPS}steps"
    if not (segmenter / "config.json").is_file() and not segmenter.is_dir():
        print(f"error: no segmenter at {segmenter}: run `pix2pix reproduce table1 --out {args.out}` first")
        return 2
    scoring = _Scoring(args.data, 128, "label2photo", "label2photo", segmenter, "cpu", print, False)
    rows = []
    for folder in sorted((out / "reference").glob("*-seed*")):
        if not (folder / "done.json").is_file():
            continue
        done = json.loads((folder / "done.json").read_text())
        if not (folder / "model" / "config.json").is_file():
            import_reference(folder / "latest_net_G.pth", folder / "model", "unet_128", "batch", "BtoA")
        scores = scoring.scores(folder / "model", folder)
        rows.append(
            {
                "row": done["row"],
                "seed": done["seed"],
                "run": str(folder.relative_to(out)),
                "training": {k: done[k] for k in ("steps", "seconds", "reference_commit")},
                "scores": [_metric(scores, key) for key in SCORES],
            }
        )
        print(f"{done['row']} seed {done['seed']}: " + " / ".join(f"{v:.3f}" for v in rows[-1]["scores"]))
    report = {"set": "table1", "protocol": "reduced", "metric_names": list(SCORES), "rows": rows}
    path = out / REFERENCE_FILE.format("table1")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def status(args: argparse.Namespace) -> int:
    where = Path(args.out) / "reference"
    for row in ROWS:
        for seed in range(3):
            folder = where / run_name(row, seed)
            if (folder / "done.json").is_file():
                state = "trained" + (", scored" if (folder / "eval-label2photo.json").is_file() else "")
            elif (folder / "loss_log.txt").is_file():
                lines = [x for x in (folder / "loss_log.txt").read_text().splitlines() if x.startswith("(")]
                state = f"training or stopped: {lines[-1][:60] if lines else 'no step logged'}"
            else:
                continue
            print(f"{row:8s} seed {seed}: {state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_run"]:  # the subprocess: _run CHECKOUT OBJECTIVE SEED -- FLAGS
        _runner(argv[1], argv[2], int(argv[3]), argv[5:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one row with the reference's train.py")
    t.add_argument("--reference", required=True, help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix")
    t.add_argument("--data", required=True, help="Cityscapes in the aligned layout (train/ and val/)")
    t.add_argument("--out", required=True, help="the reproduce output folder (rows go to OUT/reference/)")
    t.add_argument("--row", required=True, choices=list(ROWS))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--python", help="interpreter with torchvision, wandb and dominate (default: this one)")
    s = sub.add_parser("score", help="import and score every trained row; write OUT/reference-table1.json")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    st = sub.add_parser("status", help="where every row stands")
    st.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return {"train": train, "score": score, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
