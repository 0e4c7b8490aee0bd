"""The training loop (paper section 3.3): alternate one D step and one G step.

    fake_b = G(real_a)
    D step: minimise 0.5 * [-log D(a, b) - log(1 - D(a, G(a)))]
    G step: minimise -log D(a, G(a)) + lambda * ||b - G(a)||_1

Everything random is seeded: weights and dropout from the run's torch stream (saved in the
checkpoint), data order and jitter from (seed, epoch), so a resumed run continues exactly. The
run folder, the process settings and stop signals are run.py's.

Under torchrun the same loop runs in every process (distributed.py): each trains on its share of
every step's global batch and rank 0 alone writes the run folder. Progress within an epoch is
counted in images, so a run can be resumed on a different number of processes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig, Objective, OptimConfig, SpeedConfig, TrainConfig, resumable_keys, size_multiple
from ..data.aligned import Augment, DatasetError, EpochSampler, split_folder
from ..data.cache import cache_bytes
from ..data.check import detect_layout, human_bytes
from ..data.datasets import DATASET_OPTIONS, make_dataset
from ..data.device import DeviceBatches, resolve_device
from ..data.shapes import make_shapes_dataset
from ..inference.generator import run_generator
from ..models.losses import discriminator_loss, generator_loss
from ..models.networks import build_networks
from ..models.resnet_unet import EncoderWeights, EncoderWeightsError, load_encoder, read_encoder_weights
from ..progress import progress_bar
from . import distributed
from .checkpoint import STATE_FILE, load_state
from .monitor import Monitor, check_watch_options
from .run import (
    DiskFullError,
    RunDir,
    RunDirError,
    StopSignals,
    exclusive,
    gather_rng,
    process_settings,
    seed_dropout,
    training_state,
)
from .validation import Validator

__all__ = ["DiskFullError", "RunDirError", "TrainingDiverged", "config_for_resume", "train", "train_step"]


# --- one iteration -----------------------------------------------------------------------------


def forward_precision(device: torch.device, precision: str) -> torch.autocast:
    """The context for G's and D's forward passes: bfloat16 autocast for precision "bf16"
    (convolutions and matrix products in bf16, normalisation and losses in float32), plain
    float32 otherwise. Weights, gradients and Adam's state stay float32 either way."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def d_input(real_a: torch.Tensor, b: torch.Tensor, conditional: bool) -> torch.Tensor:
    # (B, C_in + C_out, H, W) for the conditional D, (B, C_out, H, W) for the unconditional one
    return torch.cat([real_a, b], dim=1) if conditional else b


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    fake_b: torch.Tensor,
    conditional: bool,
    gan_mode: str,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """One update of D on a real pair and a fake pair; `fake_b` must be detached from G."""
    set_requires_grad(discriminator, True)
    optimizer.zero_grad(set_to_none=True)
    # Two forwards, one backward, also through DDP: autograd adds up each weight's gradients from
    # the real and the fake pass before DDP's hook sees the weight, so the gradient sync runs once
    # per weight with the whole gradient. (One forward on torch.cat([real, fake]) would be simpler
    # for DDP but would change D: BatchNorm statistics would mix real and fake images.)
    with forward_precision(real_a.device, precision):
        real_logits = discriminator(d_input(real_a, real_b, conditional))  # (B, 1, h, w) patch logits
        fake_logits = discriminator(d_input(real_a, fake_b, conditional))
    loss, stats = discriminator_loss(real_logits.float(), fake_logits.float(), gan_mode)  # losses in fp32
    loss.backward()
    optimizer.step()
    return stats


def generator_step(
    discriminator: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    fake_b: torch.Tensor,
    objective: Objective,
    lambda_l1: float,
    gan_mode: str,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """One update of G: fool D (non-saturating, section 3.3) and stay near the target."""
    fake_logits = None
    if objective.adversarial is not None and discriminator is not None:
        set_requires_grad(discriminator, False)  # gradients flow through D into G, not into D
        with forward_precision(real_a.device, precision):
            fake_logits = discriminator(d_input(real_a, fake_b, objective.conditional)).float()
    optimizer.zero_grad(set_to_none=True)
    loss, stats = generator_loss(fake_b.float(), real_b, objective, fake_logits, lambda_l1, gan_mode)
    loss.backward()
    optimizer.step()
    return stats


def train_step(
    generator: nn.Module,
    discriminator: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    objective: Objective,
    lambda_l1: float,
    gan_mode: str,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """One iteration: G forward, D step (if adversarial), G step. Returns detached scalars.
    `generator` and `discriminator` are what runs: the modules, or compiled and then wrapped in
    DDP (distributed.wrap)."""
    with forward_precision(real_a.device, precision):
        fake_b = generator(real_a)  # (B, C_out, H, W); bfloat16 under "bf16"
    stats: dict[str, torch.Tensor] = {}
    if objective.adversarial is not None and discriminator is not None:
        stats |= discriminator_step(
            discriminator, opt_d, real_a, real_b, fake_b.detach(), objective.conditional, gan_mode, precision
        )
    # G's step runs D outside DDP: D's weights get no gradient there, so there is nothing of D's to
    # sync, and a DDP forward would arm a gradient sync that no backward of D's weights completes.
    # G's gradients, through D, are synced by G's DDP as usual.
    plain_d = None if discriminator is None else distributed.unwrap(discriminator)
    stats |= generator_step(plain_d, opt_g, real_a, real_b, fake_b, objective, lambda_l1, gan_mode, precision)
    return stats


# --- what a run trains ---------------------------------------------------------------------------


def make_adam(module: nn.Module, optim: OptimConfig) -> torch.optim.Adam:
    """Adam with the paper's settings (section 3.3: lr 2e-4, beta1 0.5). The fused kernel does
    the same update in one pass over the weights (benchmarks/RESULTS.md: a large share of a CPU
    iteration otherwise)."""
    return torch.optim.Adam(module.parameters(), lr=optim.lr, betas=(optim.beta1, optim.beta2), fused=True)


def lr_factor(epoch: int, optim: OptimConfig) -> float:
    """Multiplier of the learning rate in epoch `epoch`: 1 during the warm-up and the first
    `epochs`, then linearly down towards zero over `epochs_decay` (the reference code's 'linear'
    policy, which steps once per epoch: the last epoch runs at lr / (epochs_decay + 1))."""
    e = epoch - optim.l1_warmup_epochs
    return 1.0 - max(0, e + 1 - optim.epochs) / float(optim.epochs_decay + 1)


def epoch_lr(epoch: int, optim: OptimConfig) -> float:
    """The learning rate of epoch `epoch`: l1_warmup_lr during the L1 warm-up where one is set
    (seed 003's pre-training), else lr x lr_factor."""
    if epoch < optim.l1_warmup_epochs and optim.l1_warmup_lr:
        return optim.l1_warmup_lr
    return optim.lr * lr_factor(epoch, optim)


def objective_of_epoch(epoch: int, cfg: TrainConfig) -> Objective:
    """The objective, or during an L1 warm-up its reconstruction terms alone (no D)."""
    objective = cfg.loss.terms
    return objective.reconstruction_only() if epoch < cfg.optim.l1_warmup_epochs else objective


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def set_lr(optimizers: tuple[torch.optim.Optimizer | None, ...], lr: float) -> None:
    for optimizer in optimizers:
        for group in [] if optimizer is None else optimizer.param_groups:
            group["lr"] = lr


def compile_mode(speed: SpeedConfig) -> str:
    """torch.compile's mode for --compile and --cuda-graphs ("reduce-overhead" is CUDA graphs)."""
    if speed.compile == "default":
        return "reduce-overhead" if speed.cuda_graphs else "default"
    return "max-autotune" if speed.cuda_graphs else "max-autotune-no-cudagraphs"


def maybe_compile(module: nn.Module | None, speed: SpeedConfig) -> nn.Module | None:
    """`module` compiled for --compile (sharing its weights), else the module itself."""
    if module is None or speed.compile == "none":
        return module
    return torch.compile(module, mode=compile_mode(speed))


@dataclass
class Nets:
    """G and D as modules (checkpoints and sample grids use these) and their optimisers."""

    generator: nn.Module
    discriminator: nn.Module | None
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam | None

    @property
    def modules(self) -> tuple[nn.Module, nn.Module | None]:
        return self.generator, self.discriminator

    @property
    def optimizers(self) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
        return self.opt_g, self.opt_d


def build(
    cfg: TrainConfig,
    device: torch.device,
    world: distributed.World,
    state: dict | None,
    encoder: EncoderWeights | None = None,
) -> Nets:
    """G, D and their Adams on `device`: new from the run's seed (with G's ResNet-18 encoder from
    `encoder` where given), or as the checkpoint left them."""
    torch.manual_seed(cfg.optim.seed)  # weights, then dropout noise, come from this stream
    generator, discriminator = build_networks(cfg)
    if state is None and encoder is not None:
        load_encoder(generator, encoder)
    if state is not None:
        generator.load_state_dict(state["generator"])
        if discriminator is not None:
            discriminator.load_state_dict(state["discriminator"])
    layout = torch.channels_last if cfg.speed.channels_last else torch.contiguous_format

    def place(module: nn.Module) -> nn.Module:
        # synchronised BatchNorm swaps layers: before the optimiser, which holds what trains
        module = module.to(device, memory_format=layout)
        return distributed.sync_batchnorm(module, world, device, cfg.optim.sync_batchnorm)

    generator = place(generator)
    discriminator = None if discriminator is None else place(discriminator)
    nets = Nets(
        generator,
        discriminator,
        make_adam(generator, cfg.optim),
        None if discriminator is None else make_adam(discriminator, cfg.optim),
    )
    if state is not None:
        nets.opt_g.load_state_dict(state["opt_g"])
        if nets.opt_d is not None:
            nets.opt_d.load_state_dict(state["opt_d"])
    return nets


@dataclass
class Progress:
    """Where a run stands: steps taken, the epoch, and the images of this epoch's order already
    trained on (a count any number of processes can continue from)."""

    step: int = 0
    epoch: int = 0
    image_in_epoch: int = 0

    @classmethod
    def of(cls, state: dict | None, batch_size: int) -> Progress:
        if state is None:
            return cls()
        # checkpoints from before multi-process training counted batches
        images = state["image_in_epoch"] if "image_in_epoch" in state else state["batch_in_epoch"] * batch_size
        return cls(state["step"], state["epoch"], images)

    def total_steps(self, epoch_size: int, global_batch: int, optim: OptimConfig, max_steps: int) -> int:
        """The step the run ends at, counted from where it stands (it may have had another
        global batch before)."""
        steps_per_epoch = math.ceil(epoch_size / global_batch)
        steps_left = math.ceil((epoch_size - self.image_in_epoch) / global_batch)
        total = self.step + max(0, steps_left + (optim.total_epochs - self.epoch - 1) * steps_per_epoch)
        return min(total, max_steps) if max_steps else total

    def advance(self, images: int, epoch_size: int) -> None:
        self.step += 1
        self.image_in_epoch = min(epoch_size, self.image_in_epoch + images)

    def end_epoch_if_complete(self, epoch_size: int) -> None:
        if self.image_in_epoch >= epoch_size:
            self.epoch, self.image_in_epoch = self.epoch + 1, 0


class LossMeter:
    """Sums of each step's losses between log lines (on the device: no host sync per step). A
    non-finite loss makes its sum non-finite until the next log line, which is where it is seen."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.started = time.perf_counter()
        self.since, self.images = self.started, 0

    def add(self, stats: dict[str, torch.Tensor], images: int) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0) + v
        self.count += 1
        self.images += images

    def finite(self) -> bool:
        """Whether every loss since the last log line was finite (one host sync)."""
        return not self.sums or bool(torch.isfinite(torch.stack(list(self.sums.values()))).all())

    def record(self, progress: Progress, lr: float, world: distributed.World) -> dict[str, float]:
        """The log line since the last one: the global batch's mean losses (the processes' means
        over equal batches, averaged), the learning rate, images/s; and start counting anew."""
        now = time.perf_counter()
        totals = distributed.sum_over_ranks(self.sums)
        losses = {k: float(v) / (self.count * world.size) for k, v in totals.items()}
        record = {"step": progress.step, "epoch": progress.epoch, "lr": lr, **losses}
        record |= {"images_per_s": self.images / (now - self.since), "time": now - self.started}
        self.sums, self.count, self.since, self.images = {}, 0, now, 0
        return record


NOT_LOSSES = ("step", "epoch", "lr", "images_per_s", "time")  # the other keys of a log record


class TrainingDiverged(ValueError):
    """The losses or weights became NaN or infinite; the run stopped before saving them."""


def _finite(nets: Nets) -> bool:
    """Whether every weight and normalisation statistic of G and D is finite (one host sync)."""
    modules = [m for m in (nets.generator, nets.discriminator) if m is not None]
    flags = [torch.isfinite(t).all() for m in modules for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    return bool(torch.stack(flags).all())


def _diverged(run_dir: Path, step: int, window: int, losses: dict[str, float]) -> TrainingDiverged:
    """`window`: the steps since the last check, any of which may have been the first bad one."""
    saved = run_dir / STATE_FILE
    kept = f"the last good checkpoint, {saved}, is kept" if saved.exists() else "no checkpoint had been written yet"
    at = f"at step {step}" + (f" or in the {window - 1} steps before it" if window > 1 else "")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items() if k not in NOT_LOSSES)
    return TrainingDiverged(
        f"training diverged: a loss or weight became NaN or infinite {at} ({shown}); stopped, and {kept}. "
        "Lower --lr, check the data, or pass --no-stop-on-nonfinite to train on regardless"
    )


# --- data ----------------------------------------------------------------------------------------


def resolve_data(cfg: TrainConfig, run_dir: Path, resume: bool = False) -> Path:
    """The dataset folder; `builtin:shapes` is generated (deterministically) into run_dir/data.
    `resume`: a missing folder's message says that --data may change on --resume."""
    if not cfg.run.data:
        raise ValueError("no dataset: pass --data DIR (or a preset that sets it, such as --preset shapes)")
    if cfg.run.data.startswith("builtin:"):
        name = cfg.run.data.removeprefix("builtin:")
        if name != "shapes":
            raise ValueError(f"unknown builtin dataset {name!r}; available: builtin:shapes")
        folder = run_dir / "data"
        if not (folder / "train").is_dir():
            make_shapes_dataset(folder, size=cfg.data.crop_size, seed=0)
        return folder
    folder = Path(cfg.run.data)
    if not folder.exists():
        raise DatasetError(
            f"dataset folder {folder} does not exist"
            + (f" (as seen from {Path.cwd()})" if not folder.is_absolute() else "")
            + ("; pass --data DIR to say where it is now (--data may change on --resume)" if resume else "")
        )
    return folder


def _refuse_folders_layout(cfg: TrainConfig, root: Path) -> None:
    if cfg.data.mode != "aligned":
        return
    for split in ("train", "val"):
        folder = split_folder(root, split)
        if detect_layout(folder) == "folders":
            raise DatasetError(
                f"{folder} holds A/ and B/ folders (the paired-folders layout), not side-by-side pairs; "
                "training it as aligned pairs would cut every image in half. Pass --dataset-mode folders"
            )


def dataset_options(data: DataConfig) -> dict[str, Any]:
    """The mode-specific settings of a run's data section, as keyword arguments for `make_dataset`."""
    return {name: getattr(data, name) for name in DATASET_OPTIONS.get(data.mode, ())}


def build_datasets(cfg: TrainConfig, run_dir: Path, main: bool = True, resume: bool = False) -> tuple[Dataset, Dataset]:
    """The training set (checked file by file before anything runs) and the validation set
    whose first images are shown in the sample grids. Only the `main` process (rank 0 of
    several) reports: it prints and writes skipped.txt."""
    data, root = cfg.data, resolve_data(cfg, run_dir, resume)
    _refuse_folders_layout(cfg, root)
    if main and split_folder(root, "val") == split_folder(root, "train"):
        where = "no train/ folder" if split_folder(root, "train") == root else "no val/ or test/ folder"
        print(
            f"{root}: {where}, so validation and the sample grids use the training images themselves "
            f"(put held-out pairs in {root / 'val'} to validate on others)"
        )
    options, val_options = dataset_options(data), dataset_options(data)
    if data.mode in ("aligned", "folders"):
        # whole images (none, scale_width): sides must suit the generator, a batch needs equal sizes
        multiple = 1 if data.crops else size_multiple(cfg.generator.architecture, cfg.depth)
        skip_log = run_dir / "skipped.txt" if data.skip_bad and main else None
        if skip_log is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            skip_log.write_text("")
        common = dict(skip_bad=data.skip_bad, size_multiple=multiple, skip_log=skip_log, workers=cfg.run.workers)
        # the device cache starts as the memory cache, moved to the device by train()
        cache = "memory" if cfg.speed.cache == "device" else cfg.speed.cache
        options |= common | dict(cache=cache, same_size=not data.crops and cfg.optim.batch_size > 1)
        val_options |= common | dict(same_size=not data.crops and cfg.run.num_samples > 1)
    elif data.skip_bad or cfg.speed.cache != "none":
        raise ValueError(f"--skip-bad and --cache work with dataset_mode aligned or folders, not {data.mode}")
    started = time.perf_counter()
    augment = Augment(data.preprocess, data.load_size, data.crop_size, data.flip)
    channels = (data.in_channels, data.out_channels)
    dataset = make_dataset(data.mode, split_folder(root, "train"), data.direction, augment, *channels, **options)
    if cfg.speed.cache in ("memory", "device") and main:
        seconds, size = time.perf_counter() - started, human_bytes(cache_bytes(dataset.cache))
        where = "memory" if cfg.speed.cache == "memory" else "memory, for the training device (--cache device)"
        print(f"cache: {len(dataset)} training pairs decoded into {where} ({size}) in {seconds:.1f} s")
    val_preprocess = "resize" if data.preprocess in ("resize_and_crop", "resize") else data.preprocess
    val_augment = Augment(val_preprocess, data.load_size, data.crop_size, flip=False)
    val_set = make_dataset(data.mode, split_folder(root, "val"), data.direction, val_augment, *channels, **val_options)
    skipped = list(dict.fromkeys(map(str, [*getattr(dataset, "skipped", []), *getattr(val_set, "skipped", [])])))
    if skipped and main:
        with open(run_dir / "skipped.txt", "a") as f:
            f.write("".join(f"{problem}\n" for problem in skipped))
        print(f"--skip-bad: training without {len(skipped)} unusable file(s), listed in {run_dir / 'skipped.txt'}")
    return dataset, val_set


Batches = Callable[[Progress], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def batch_source(
    cfg: TrainConfig, dataset: Dataset, world: distributed.World, device: torch.device, device_pairs: Any
) -> Batches:
    """`batches(progress)`: the rest of the current epoch's batches of this process, on the
    device, as (real_a, real_b): x (B, C_in, H, W) and y (B, C_out, H, W)."""
    layout = torch.channels_last if cfg.speed.channels_last else torch.contiguous_format
    batch_size = cfg.optim.batch_size

    def batches(progress: Progress) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = EpochSampler(
            len(dataset),
            cfg.optim.seed,
            progress.epoch,
            start=progress.image_in_epoch,
            rank=world.rank,
            world_size=world.size,
            batch_size=batch_size,
        )
        if device_pairs is not None:  # crops cut on the device (data/device.py)
            loader: Any = device_pairs.batches(sampler, batch_size)
        else:
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                sampler=sampler,
                num_workers=cfg.run.workers,
                pin_memory=device.type == "cuda",
                generator=torch.Generator(),  # keeps the loader from drawing on the run's RNG
                persistent_workers=False,
            )
        for batch in loader:
            yield tuple(batch[k].to(device, non_blocking=True, memory_format=layout) for k in ("real_a", "real_b"))

    return batches


def sample_grid(generator: nn.Module, val_set: Dataset, count: int, seed: int) -> Image.Image:
    """Rows of input | output | target for the first `count` validation images, in the paper's
    inference mode with a fixed dropout seed, so grids from different steps are comparable."""
    generator = distributed.for_one_process(generator)  # no synchronised BatchNorm: rank 0 alone
    samples = [val_set[i] for i in range(min(count, len(val_set)))]
    real_a = torch.stack([s["real_a"] for s in samples])
    real_b = torch.stack([s["real_b"] for s in samples])
    fake_b = run_generator(generator, real_a, mode="paper", seed=seed)
    rows = [[val_set.render(t, a) for t in (a, f, b)] for a, f, b in zip(real_a, fake_b, real_b)]
    w, h = rows[0][0].size
    grid = Image.new("RGB", (3 * w, len(rows) * h))
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            grid.paste(tile, (c * w, r * h))
    return grid


# --- a run ---------------------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) a run in `run_dir`. Returns a summary: steps, seconds, last losses.

    Started by torchrun (WORLD_SIZE > 1 in the environment), or in a process group the caller
    has initialised, every process runs this and trains on its share of each step; see
    distributed.py. `cfg.optim.batch_size` is then the batch of each process.

    Example:
        >>> cfg = TrainConfig.from_dict({"data": "builtin:shapes", "crop_size": 32, "load_size": 36})  # doctest: +SKIP
        >>> train(cfg.replace(max_steps=10), "runs/tiny")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    if not distributed.is_main_process():  # rank 0 holds the run folder's lock for all of them
        return _train(cfg, run_dir, resume, overwrite, progress)
    with exclusive(run_dir):
        return _train(cfg, run_dir, resume, overwrite, progress)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    if cfg.run.data and not cfg.run.data.startswith("builtin:"):
        cfg = cfg.replace(data=str(Path(cfg.run.data).resolve()))  # so that --resume works from any folder
    # Every check that can refuse the run comes before rank 0 writes config.json (run.start), so a
    # refused run leaves no folder behind (exclusive() removes the one it made) and the corrected
    # command runs: the saved run and the flags, the watch options, the encoder, the device, the
    # data file by file, then the validator (its segmenter and perceptual networks).
    state = _resume_state(cfg, run_dir) if resume else None
    if not resume:
        RunDir(run_dir).check_new(overwrite)
    check_watch_options(cfg)
    encoder = None
    if not resume and cfg.generator.architecture == "resnet18-unet":
        cfg, encoder = _encoder_of(cfg)  # a bad file is refused before the run dir is touched
    # Each process has now read the checkpoint or checked the run dir; rank 0 writes to it only
    # after the barrier below, which the others reach after this point.
    world, device = distributed.setup(resolve_device(cfg.run.device))
    if cfg.speed.cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device; this run is on {device}")
    run, finished = RunDir(run_dir, world.main), False
    try:
        if not world.main:
            distributed.barrier(device)  # rank 0 checks the data first (and writes builtin:shapes)
        dataset, val_set = build_datasets(cfg, run_dir, world.main, resume)  # fails before the run dir is touched
        device_pairs = None
        if cfg.speed.cache == "device":  # on the device before the run dir is touched, too (sizes, memory)
            device_pairs = DeviceBatches(dataset, device)
        validator = Validator.make(cfg, val_set, device) if world.main else None
        if world.main:
            distributed.barrier(device)
            if not resume:
                run.start(cfg, overwrite)
        batches = batch_source(cfg, dataset, world, device, device_pairs)
        with process_settings(cfg, device), run.disk_full_reported():
            if world.main:  # before the progress bar, so that a slow start does not look hung
                print(_header(cfg, device, world, len(dataset), run_dir, state), flush=True)
            nets = build(cfg, device, world, state, encoder)
            summary = _loop(cfg, run, state, nets, batches, len(dataset), val_set, validator, world, device, progress)
        finished = True
        return summary
    finally:
        distributed.teardown(world, device, wait=finished)


def _header(
    cfg: TrainConfig, device: torch.device, world: distributed.World, pairs: int, run_dir: Path, state: dict | None
) -> str:
    """One line said as a run starts: where it runs, on what, and into which folder."""
    processes = f" x {world.size} processes" if world.size > 1 else ""
    at = f", from step {state['step']}" if state is not None else ""
    threads = torch.get_num_threads()
    return (
        f"training on {device}{processes} ({threads} thread{'s' * (threads != 1)}): {pairs} training pairs at "
        f"{cfg.data.crop_size} px, run folder {run_dir}{at}"
    )


def _encoder_of(cfg: TrainConfig) -> tuple[TrainConfig, EncoderWeights | None]:
    """The checked --encoder-weights of a new resnet18-unet run, its SHA-256 recorded in the
    config; says where the encoder comes from (nothing is downloaded)."""
    path = cfg.generator.encoder_weights
    if not path:
        print("encoder: ResNet-18 from scratch (the paper's N(0, 0.02) init): no --encoder-weights given")
        return cfg, None
    encoder = read_encoder_weights(path, cfg.data.in_channels)
    if cfg.generator.encoder_sha256 and cfg.generator.encoder_sha256 != encoder.sha256:
        raise EncoderWeightsError(
            f"{path}: its SHA-256 is {encoder.sha256}, not the encoder_sha256 {cfg.generator.encoder_sha256} "
            "this config asks for (another file than the one it was written for)"
        )
    print(f"encoder: {encoder.source}, from {path}")
    return cfg.replace(encoder_weights=str(Path(path).resolve()), encoder_sha256=encoder.sha256), encoder


def _loop(
    cfg: TrainConfig,
    run: RunDir,
    state: dict | None,
    nets: Nets,
    batches: Batches,
    epoch_size: int,
    val_set: Dataset,
    validator: Validator | None,
    world: distributed.World,
    device: torch.device,
    show_progress: bool,
) -> dict[str, Any]:
    """The run itself, once the data are checked, the run folder is ready and the nets built."""
    progress = Progress.of(state, cfg.optim.batch_size)
    seed_dropout(state, cfg.optim.seed, world, progress.step)
    if state is not None and world.main:
        run.continue_at(progress.step, nets.generator, cfg)
    # compile, then wrap in DDP: the compiled D (without DDP) serves G's step
    g_run, d_run = (distributed.wrap(maybe_compile(m, cfg.speed), world, device) for m in nets.modules)
    global_batch = cfg.optim.batch_size * world.size
    total = progress.total_steps(epoch_size, global_batch, cfg.optim, cfg.run.max_steps)
    meter, record, stopping, first_step = LossMeter(), {}, False, progress.step
    monitor = Monitor(cfg, run.path, validator, progress.step if state else None) if world.main else None
    with (
        StopSignals() as stop,
        run,
        monitor or contextlib.nullcontext(),
        _Bar(show_progress and world.main, total, progress.step) as bar,
    ):
        while progress.step < total and progress.epoch < cfg.optim.total_epochs and not stopping:
            set_lr(nets.optimizers, epoch_lr(progress.epoch, cfg.optim))
            objective = objective_of_epoch(progress.epoch, cfg)
            for real_a, real_b in batches(progress):
                if cfg.speed.cuda_graphs:  # a new step: the graphs may reuse the last step's buffers
                    torch.compiler.cudagraph_mark_step_begin()
                stats = train_step(
                    g_run, d_run, *nets.optimizers, real_a, real_b, objective, cfg.loss.lambda_l1, cfg.loss.gan_mode,
                    cfg.optim.precision,
                )  # fmt: skip
                progress.advance(global_batch, epoch_size)
                meter.add(stats, real_a.shape[0] * world.size)
                if _due(progress.step, cfg.run.log_every, total):
                    window = meter.count
                    record = meter.record(progress, nets.opt_g.param_groups[0]["lr"], world)
                    if cfg.run.stop_on_nonfinite and not all(map(math.isfinite, record.values())):
                        raise _diverged(run.path, progress.step, window, record)
                    run.log(record)
                    bar.update_record(record)
                    if monitor:
                        monitor.log(record)
                bar.update(1)
                if world.main and cfg.run.num_samples and _due(progress.step, cfg.run.sample_every, total):
                    grid = sample_grid(nets.generator, val_set, cfg.run.num_samples, cfg.optim.seed)
                    run.save_sample(progress.step, grid)
                    if monitor:
                        monitor.sample(progress.step, grid)
                if monitor:
                    _watch(monitor, run, progress, total, nets, bar)
                stopping = stop.requested(device)
                if progress.step >= total or stopping:
                    break  # a stop request ends the run cleanly after a whole step
                if progress.step % cfg.run.checkpoint_every == 0:
                    _checkpoint(cfg, run, progress, nets, meter, record, world, device, monitor)
            progress.end_epoch_if_complete(epoch_size)
            _checkpoint(cfg, run, progress, nets, meter, record, world, device, monitor)
            stopping = stopping or stop.requested(device)
    return {
        "run_dir": str(run.path),
        "step": progress.step,
        "steps_run": progress.step - first_step,  # a resumed run: the steps of this process, not since step 0
        "epoch": progress.epoch,
        "seconds": time.perf_counter() - meter.started,
        "losses": {k: v for k, v in record.items() if k not in NOT_LOSSES},
        "model": str(run.path / "model"),
        "interrupted": stopping,
        "rank": world.rank,
        "world_size": world.size,
    }


def _watch(monitor: Monitor, run: RunDir, progress: Progress, total: int, nets: Nets, bar: _Bar) -> None:
    """Validation and snapshots where due; a validation goes to log.jsonl and the progress bar."""
    generator = distributed.for_one_process(nets.generator)  # rank 0 alone: no synchronised BatchNorm
    with run.disk_full_reported():
        record = monitor.after_step(progress.step, progress.epoch, total, generator)
    if record is not None:
        run.log(record)
        bar.show_validation(record, monitor.cfg.run.best_metric)


def _checkpoint(
    cfg: TrainConfig,
    run: RunDir,
    progress: Progress,
    nets: Nets,
    meter: LossMeter,
    record: dict[str, float],
    world: distributed.World,
    device: torch.device,
    monitor: Monitor | None = None,
) -> None:
    """Write the checkpoint and model/, unless the run has diverged (then the last good ones stay),
    and then a best model found since the last one (monitor.py). The weights are checked too: a
    step can make them infinite while its losses were finite."""
    if cfg.run.stop_on_nonfinite and distributed.any_rank(not (meter.finite() and _finite(nets)), device):
        raise _diverged(run.path, progress.step, max(meter.count, 1), record)
    rngs = gather_rng(world)  # every process's dropout stream (a collective)
    if world.main:
        run.save_checkpoint(training_state(cfg, progress, world, nets, rngs), nets.generator, cfg)
        if monitor is not None:
            monitor.commit()


class _Bar:
    """The run's progress bar when asked, else nothing."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        # a bar on a terminal, a line a minute in a log file: progress.py, as every command
        self.bar, self.val = (progress_bar(total, "train", unit="it", initial=initial) if enabled else None), {}

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def update_record(self, record: dict[str, float]) -> None:
        if self.bar is not None:
            losses = {k: f"{v:.3f}" for k, v in record.items() if k not in NOT_LOSSES}
            self.bar.set_postfix(epoch=record["epoch"], **losses, img_s=f"{record['images_per_s']:.2f}", **self.val)

    def show_validation(self, record: dict[str, float], best_metric: str) -> None:
        """The last validation's headline figure, shown beside the losses from now on."""
        shown = best_metric or "val_psnr"
        self.val = {shown: f"{record[shown]:.4g}"}
        if self.bar is not None:
            self.bar.set_postfix(**self.val)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# --- resuming ------------------------------------------------------------------------------------


def _resume_state(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    state = load_state(run_dir / STATE_FILE)
    saved = TrainConfig.from_dict(state["config"], f"{run_dir / STATE_FILE} config")
    changed = cfg.fixed_changes(saved)
    if changed:
        raise RunDirError(
            f"--resume {run_dir}: cannot change {', '.join(changed)} of a run; "
            f"only {', '.join(resumable_keys())} may differ"
        )
    return state


def config_for_resume(run_dir: str | Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with run-control overrides (e.g. a larger max_steps)."""
    state = load_state(Path(run_dir) / STATE_FILE, verify=False)
    bad = sorted(set(overrides) - set(resumable_keys()))
    if bad:
        raise RunDirError(
            f"--resume {run_dir}: cannot change {', '.join(bad)}; only {', '.join(resumable_keys())} may differ"
        )
    return TrainConfig.from_dict({**state["config"], **overrides}, f"{run_dir}/{STATE_FILE} config")
