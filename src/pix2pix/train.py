"""The training loop (paper section 3.3): alternate one D step and one G step.

    fake_b = G(real_a)
    D step: minimise 0.5 * [-log D(a, b) - log(1 - D(a, G(a)))]
    G step: minimise -log D(a, G(a)) + lambda * ||b - G(a)||_1

A run directory holds config.json, log.jsonl, samples/, checkpoint.pt (the resumable state) and
model/ (release weights). Everything random is seeded: weights and dropout from the run's torch
RNG (saved in the checkpoint), data order and jitter from (seed, epoch), so `resume` continues
the exact run.

Under torchrun the same loop runs in every process (distributed.py): G and D are wrapped in
DistributedDataParallel, each process trains on its share of every step's global batch, and
rank 0 alone writes the run directory. Progress within an epoch is counted in images, so a run
can be resumed on a different number of processes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import __version__, distributed
from .checkpoint import (
    FORMAT_VERSION,
    STATE_FILE,
    load_state,
    model_config,
    rng_state,
    save_model,
    save_state,
    set_rng_state,
)
from .config import Objective, TrainConfig, parse_objective
from .data import dataset_options, make_dataset
from .data.aligned import Augment, DatasetError, EpochSampler, split_folder
from .distributed import unwrap
from .losses import discriminator_loss, generator_loss
from .networks import PatchDiscriminator, ResnetGenerator, UNetGenerator, init_weights
from .predict import run_generator

# Settings that may change when resuming without changing the run's results.
RUN_CONTROL = (
    "max_steps",
    "device",
    "workers",
    "log_every",
    "sample_every",
    "num_samples",
    "checkpoint_every",
    "data",
    # how the same arithmetic is run: float rounding may differ, as it may between devices
    "channels_last",
    "compile",
    "cuda_graphs",
    "cache",
    "stop_on_nonfinite",
)
RUN_FILES = ("config.json", "log.jsonl", STATE_FILE, "model", "samples")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (would overwrite, or nothing to resume)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def build_networks(cfg: TrainConfig) -> tuple[nn.Module, nn.Module | None]:
    """G and, if the objective has an adversarial term, D; both initialised N(0, 0.02)."""
    if cfg.generator == "unet":
        generator: nn.Module = UNetGenerator(
            cfg.in_channels,
            cfg.out_channels,
            base_channels=cfg.g_channels,
            depth=cfg.depth,
            norm=cfg.norm,
            dropout=cfg.dropout,
            skips=cfg.skips,
            innermost_norm=cfg.innermost_norm,
        )
    else:
        generator = ResnetGenerator(
            cfg.in_channels, cfg.out_channels, cfg.g_channels, cfg.resnet_blocks, cfg.norm, cfg.dropout
        )
    init_weights(generator)
    objective = parse_objective(cfg.objective)
    if objective.adversarial is None:
        return generator, None  # "L1 only" trains no discriminator at all
    # cGAN: D sees input and output concatenated on channels; GAN: the output only (Table 1)
    d_in = cfg.out_channels + (cfg.in_channels if objective.conditional else 0)
    discriminator = PatchDiscriminator(d_in, cfg.d_channels, cfg.receptive_field, cfg.norm)
    init_weights(discriminator)
    return generator, discriminator


def forward_precision(device: torch.device, precision: str) -> torch.autocast:
    """The context for G's and D's forward passes: bfloat16 autocast for precision "bf16"
    (convolutions and matrix products in bf16, normalisation and losses in float32), plain
    float32 otherwise. Weights, gradients and Adam's state stay float32 either way."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def compile_mode(cfg: TrainConfig) -> str:
    """torch.compile's mode for --compile and --cuda-graphs ("reduce-overhead" is CUDA graphs)."""
    if cfg.compile == "default":
        return "reduce-overhead" if cfg.cuda_graphs else "default"
    return "max-autotune" if cfg.cuda_graphs else "max-autotune-no-cudagraphs"


def step_callables(
    generator: nn.Module, discriminator: nn.Module | None, cfg: TrainConfig
) -> tuple[nn.Module, nn.Module | None, nn.Module | None]:
    """What train_step calls: G, D, and D as G's step runs it (outside DDP); with --compile,
    compiled versions sharing the modules' weights (checkpoints and sample grids use the
    modules themselves)."""
    d_for_g = None if discriminator is None else unwrap(discriminator)
    if cfg.compile == "none":
        return generator, discriminator, d_for_g
    mode = compile_mode(cfg)
    if discriminator is None:
        return torch.compile(generator, mode=mode), None, None
    return tuple(torch.compile(m, mode=mode) for m in (generator, discriminator, d_for_g))


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
    discriminator_for_g: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """One iteration: G forward, D step (if adversarial), G step. Returns detached scalars.

    `precision` "bf16" runs the forward passes under bfloat16 autocast (forward_precision).
    `discriminator_for_g` is D as G's step runs it (e.g. compiled); by default the module
    inside DDP, see below."""
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
    plain_d = discriminator_for_g
    if plain_d is None and discriminator is not None:
        plain_d = unwrap(discriminator)
    stats |= generator_step(plain_d, opt_g, real_a, real_b, fake_b, objective, lambda_l1, gan_mode, precision)
    return stats


def make_adam(module: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the paper's settings (section 3.3: lr 2e-4, beta1 0.5). The fused kernel does
    the same update in one pass over the weights: on the 2-core CPU one step of the 128 px
    U-Net's 41.8M weights takes 27 ms instead of 150 ms (measured), which was about a third of
    a 128 px iteration."""
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the learning rate in epoch e: 1 during warm-up and the first `epochs`,
    then linearly down towards zero over `epochs_decay` (the reference code's 'linear' policy)."""

    def factor(epoch: int) -> float:
        e = epoch - cfg.l1_warmup_epochs
        return 1.0 - max(0, e + 1 - cfg.epochs) / float(cfg.epochs_decay + 1)

    return factor


def _prepare_run_dir(run_dir: Path, overwrite: bool, check_only: bool = False) -> None:
    """Refuse to reuse a run directory unless `overwrite`; then clear the old run's files."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(existing)}); continue it with "
            f"--resume {run_dir}, start over with --overwrite, or choose another --run-dir"
        )
    if check_only:
        return
    for name in existing:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def resolve_data(cfg: TrainConfig, run_dir: Path) -> Path:
    """The dataset folder; `builtin:shapes` is generated (deterministically) into run_dir/data."""
    if not cfg.data:
        raise ValueError("no dataset: pass --data DIR (or a preset that sets it, such as --preset shapes)")
    if cfg.data.startswith("builtin:"):
        name = cfg.data.removeprefix("builtin:")
        if name != "shapes":
            raise ValueError(f"unknown builtin dataset {name!r}; available: builtin:shapes")
        from .data.shapes import make_shapes_dataset

        folder = run_dir / "data"
        if not (folder / "train").is_dir():
            make_shapes_dataset(folder, size=cfg.crop_size, seed=0)
        return folder
    folder = Path(cfg.data)
    if not folder.exists():
        raise DatasetError(
            f"dataset folder {folder} does not exist"
            + (f" (as seen from {Path.cwd()})" if not folder.is_absolute() else "")
            + "; pass --data DIR to say where it is now (--data may change on --resume)"
        )
    return folder


def build_datasets(cfg: TrainConfig, run_dir: Path, main: bool = True) -> tuple[Dataset, Dataset]:
    """The training set (checked file by file before anything runs) and the validation set
    whose first images are shown in the sample grids. Only the `main` process (rank 0 of
    several) reports: it prints and writes skipped.txt."""
    data_root = resolve_data(cfg, run_dir)
    options, val_options = dataset_options(cfg), dataset_options(cfg)
    if cfg.dataset_mode in ("aligned", "folders"):
        # whole images (none, scale_width): sides must suit the generator, a batch needs equal sizes
        whole = cfg.preprocess in ("none", "scale_width")
        multiple = (2**cfg.depth if cfg.generator == "unet" else 4) if whole else 1
        skip_log = run_dir / "skipped.txt" if cfg.skip_bad and main else None
        if skip_log is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            skip_log.write_text("")
        common = dict(skip_bad=cfg.skip_bad, size_multiple=multiple, skip_log=skip_log, workers=cfg.workers)
        # the device cache starts as the memory cache, moved to the device by _train
        cache = "memory" if cfg.cache == "device" else cfg.cache
        options |= common | dict(cache=cache, same_size=whole and cfg.batch_size > 1)
        val_options |= common | dict(same_size=whole and cfg.num_samples > 1)
    elif cfg.skip_bad or cfg.cache != "none":
        raise ValueError(f"--skip-bad and --cache work with dataset_mode aligned or folders, not {cfg.dataset_mode}")
    if cfg.dataset_mode == "aligned":
        from .data.check import detect_layout

        for split in ("train", "val"):
            folder = split_folder(data_root, split)
            if detect_layout(folder) == "folders":
                raise DatasetError(
                    f"{folder} holds A/ and B/ folders (the paired-folders layout), not side-by-side pairs; "
                    "training it as aligned pairs would cut every image in half. Pass --dataset-mode folders"
                )
    started = time.perf_counter()
    dataset = make_dataset(
        cfg.dataset_mode,
        split_folder(data_root, "train"),
        cfg.direction,
        Augment(cfg.preprocess, cfg.load_size, cfg.crop_size, cfg.flip),
        cfg.in_channels,
        cfg.out_channels,
        **options,
    )
    if cfg.cache in ("memory", "device") and main:
        from .data.cache import cache_bytes
        from .data.check import human_bytes

        seconds, size = time.perf_counter() - started, human_bytes(cache_bytes(dataset.cache))
        where = "memory" if cfg.cache == "memory" else "memory, for the training device (--cache device)"
        print(f"cache: {len(dataset)} training pairs decoded into {where} ({size}) in {seconds:.1f} s")
    val_preprocess = "resize" if cfg.preprocess in ("resize_and_crop", "resize") else cfg.preprocess
    val_set = make_dataset(
        cfg.dataset_mode,
        split_folder(data_root, "val"),
        cfg.direction,
        Augment(val_preprocess, cfg.load_size, cfg.crop_size, flip=False),
        cfg.in_channels,
        cfg.out_channels,
        **val_options,
    )
    skipped = list(dict.fromkeys(map(str, [*getattr(dataset, "skipped", []), *getattr(val_set, "skipped", [])])))
    if skipped and main:
        with open(run_dir / "skipped.txt", "a") as f:
            f.write("".join(f"{problem}\n" for problem in skipped))
        print(f"--skip-bad: training without {len(skipped)} unusable file(s), listed in {run_dir / 'skipped.txt'}")
    return dataset, val_set


def sample_grid(generator: nn.Module, val_set: Dataset, count: int, seed: int) -> Image.Image:
    """Rows of input | output | target for the first `count` validation images, in the paper's
    inference mode with a fixed dropout seed, so grids from different steps are comparable."""
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
    distributed.py. `cfg.batch_size` is then the batch of each process.

    Example:
        >>> cfg = TrainConfig(data="builtin:shapes", crop_size=32, load_size=36, max_steps=10)  # doctest: +SKIP
        >>> train(cfg, "runs/tiny")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    if cfg.data and not cfg.data.startswith("builtin:"):
        cfg = replace(cfg, data=str(Path(cfg.data).resolve()))  # so that --resume works from any folder
    state = None
    if resume:
        state = load_state(run_dir / STATE_FILE)
        saved = TrainConfig.from_dict(state["config"], f"{run_dir / STATE_FILE} config")
        changed = [k for k, v in cfg.to_dict().items() if k not in RUN_CONTROL and getattr(saved, k) != v]
        if changed:
            raise RunDirError(
                f"--resume {run_dir}: cannot change {', '.join(changed)} of a run; "
                f"only {', '.join(RUN_CONTROL)} may differ"
            )
    else:
        _prepare_run_dir(run_dir, overwrite, check_only=True)
    # Each process has now read the checkpoint or checked the run dir; rank 0 writes to it only
    # after the barrier below, which the others reach after this point.
    world, device = distributed.setup(resolve_device(cfg.device))
    if cfg.cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device; this run is on {device}")
    finished = False
    try:
        if not world.main:
            distributed.barrier(device)  # rank 0 checks the data first (and writes builtin:shapes)
        dataset, val_set = build_datasets(cfg, run_dir, world.main)  # fails before the run dir is touched
        device_pairs = None
        if cfg.cache == "device":  # on the device before the run dir is touched, too (sizes, memory)
            from .data.device import DeviceBatches

            device_pairs = DeviceBatches(dataset, device)
        if world.main:
            distributed.barrier(device)
            if not resume:
                _prepare_run_dir(run_dir, overwrite)
                (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        with _disk_full_reported(run_dir, None):  # log lines and sample grids (checkpoints say more)
            summary = _train(cfg, run_dir, state, dataset, val_set, world, device, progress, device_pairs)
        finished = True
        return summary
    finally:
        distributed.teardown(world, device, wait=finished)


def _train(
    cfg: TrainConfig,
    run_dir: Path,
    state: dict[str, Any] | None,
    dataset: Dataset,
    val_set: Dataset,
    world: distributed.World,
    device: torch.device,
    progress: bool,
    device_pairs: Any = None,
) -> dict[str, Any]:
    """The run itself in this process, once the data are checked and the run dir is ready;
    `device_pairs` (data/device.DeviceBatches) replaces the loader for --cache device."""
    objective = parse_objective(cfg.objective)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    torch.use_deterministic_algorithms(cfg.deterministic)
    if cfg.deterministic and device.type == "cpu":
        # Multi-threaded CPU kernels are not bitwise reproducible across processes on a busy
        # machine (measured: 1 fresh run in 6-8 differed after 30 steps on 2 threads, never
        # on 1), so exact runs use one intra-op thread.
        torch.set_num_threads(1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        if cfg.deterministic:  # deterministic cuBLAS needs a fixed workspace (CUDA docs)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        torch.manual_seed(cfg.seed)  # weights, then dropout noise, come from this stream
        generator, discriminator = build_networks(cfg)
        step, epoch, image_in_epoch = 0, 0, 0
        if state is not None:
            generator.load_state_dict(state["generator"])
            if discriminator is not None:
                discriminator.load_state_dict(state["discriminator"])
            step, epoch = state["step"], state["epoch"]
            # images of this epoch's order already trained on, a count any number of processes
            # can continue from; checkpoints from before multi-process training counted batches
            if "image_in_epoch" in state:
                image_in_epoch = state["image_in_epoch"]
            else:
                image_in_epoch = state["batch_in_epoch"] * cfg.batch_size
        # The dropout noise differs per process but is reproducible: rank 0 continues the run's
        # stream (so it draws what a single process draws), the other ranks get their own
        # seeded streams, and a checkpoint holds every rank's stream.
        if state is not None:
            rngs = state.get("rng_per_rank", [state["rng"]])
            if world.rank < len(rngs):
                set_rng_state(rngs[world.rank])
            else:  # a process more than the run had before
                torch.manual_seed(distributed.rank_seed(cfg.seed, world.rank, step))
        elif not world.main:
            torch.manual_seed(distributed.rank_seed(cfg.seed, world.rank, 0))

        # DDP (and SyncBatchNorm, which swaps the norm layers) before the optimisers, so these
        # hold the parameters that train; then the optimiser states load by parameter order
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        generator = distributed.wrap(generator.to(device, memory_format=layout), world, device, cfg.sync_batchnorm)
        opt_g = make_adam(generator, cfg)
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_factor(cfg))
        opt_d = sched_d = None
        if discriminator is not None:
            discriminator = distributed.wrap(
                discriminator.to(device, memory_format=layout), world, device, cfg.sync_batchnorm
            )
            opt_d = make_adam(discriminator, cfg)
            sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lr_factor(cfg))
        if state is not None:
            opt_g.load_state_dict(state["opt_g"])
            sched_g.load_state_dict(state["sched_g"])
            if discriminator is not None:
                opt_d.load_state_dict(state["opt_d"])
                sched_d.load_state_dict(state["sched_d"])
        g_run, d_run, d_for_g = step_callables(generator, discriminator, cfg)
        if state is not None and world.main:
            for stale in run_dir.glob(f"{STATE_FILE}.*.tmp"):  # a write cut short by a kill
                stale.unlink()
            _truncate_log(run_dir / "log.jsonl", step)
            _sync_model(run_dir / "model", unwrap(generator), cfg, step)

        # A step trains on the global batch: batch_size images in each of the processes.
        global_batch = cfg.batch_size * world.size
        steps_per_epoch = math.ceil(len(dataset) / global_batch)
        total_epochs = cfg.l1_warmup_epochs + cfg.epochs + cfg.epochs_decay
        # counted from where the run stands, as it may have had another global batch before
        steps_left = math.ceil((len(dataset) - image_in_epoch) / global_batch)
        total_steps = step + max(0, steps_left + (total_epochs - epoch - 1) * steps_per_epoch)
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)

        def checkpoint() -> None:
            # the weights too: a step can turn them infinite while its losses were still finite
            if cfg.stop_on_nonfinite and distributed.any_rank(
                bool(first_bad) or not _finite(generator, discriminator), device
            ):
                raise _diverged(run_dir, int(first_bad) or step, last)  # the last good checkpoint stays
            rngs = distributed.gather(rng_state(), world)  # every process's dropout stream
            if not world.main:
                return
            with _disk_full_reported(run_dir, step):
                _write_checkpoint(rngs)

        def _write_checkpoint(rngs: list[Any]) -> None:
            save_state(
                run_dir / STATE_FILE,
                {
                    "format": FORMAT_VERSION,
                    "version": __version__,
                    "config": cfg.to_dict(),
                    "step": step,
                    "epoch": epoch,
                    "image_in_epoch": image_in_epoch,
                    "world_size": world.size,
                    # the models inside DDP: keys without `module.`, loadable by one process
                    "generator": unwrap(generator).state_dict(),
                    "discriminator": None if discriminator is None else unwrap(discriminator).state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": None if opt_d is None else opt_d.state_dict(),
                    "sched_g": sched_g.state_dict(),
                    "sched_d": None if sched_d is None else sched_d.state_dict(),
                    "rng": rngs[0],
                    "rng_per_rank": rngs,
                },
            )
            save_model(run_dir / "model", unwrap(generator), model_config(cfg.to_dict()) | {"step": step})

        bar = None
        if progress and world.main:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=step, unit="it", dynamic_ncols=True, mininterval=1.0)
        log_file = open(run_dir / "log.jsonl", "a") if world.main else None  # noqa: SIM115 - closed in finally
        sums: dict[str, torch.Tensor] = {}
        n_logged, t_log, t_start, images_since = 0, time.perf_counter(), time.perf_counter(), 0
        last: dict[str, float] = {}
        stop_requests: list[int] = []
        first_bad = torch.zeros((), dtype=torch.long, device=device)
        # Every process must leave the loop after the same step, or the others would wait in
        # the next step's gradient sync forever: they agree on stopping once per step.
        stopping = False
        previous_handlers = _catch_stop_signals(stop_requests)
        try:
            while step < total_steps and epoch < total_epochs and not stopping:
                adversarial = epoch >= cfg.l1_warmup_epochs
                phase = objective if adversarial else Objective(objective.l1 or not objective.l2, objective.l2, None)
                sampler = EpochSampler(
                    len(dataset),
                    cfg.seed,
                    epoch,
                    start=image_in_epoch,
                    rank=world.rank,
                    world_size=world.size,
                    batch_size=cfg.batch_size,
                )
                if device_pairs is not None:  # crops cut on the device (data/device.py)
                    batches: Any = device_pairs.batches(sampler, cfg.batch_size)
                else:
                    batches = DataLoader(
                        dataset,
                        batch_size=cfg.batch_size,
                        sampler=sampler,
                        num_workers=cfg.workers,
                        pin_memory=device.type == "cuda",
                        generator=torch.Generator(),  # keeps the loader from drawing on the run's RNG
                        persistent_workers=False,
                    )
                for batch in batches:
                    # (B, C_in, H, W): x and (B, C_out, H, W): y
                    real_a = batch["real_a"].to(device, non_blocking=True, memory_format=layout)
                    real_b = batch["real_b"].to(device, non_blocking=True, memory_format=layout)
                    if cfg.cuda_graphs:  # a new step: the graphs may reuse the last step's buffers
                        torch.compiler.cudagraph_mark_step_begin()
                    stats = train_step(
                        g_run,
                        d_run,
                        opt_g,
                        opt_d,
                        real_a,
                        real_b,
                        phase,
                        cfg.lambda_l1,
                        cfg.gan_mode,
                        cfg.precision,
                        d_for_g,
                    )
                    step += 1
                    # the first step with a non-finite loss, kept on the device (no sync per step)
                    finite = torch.isfinite(torch.stack([v.detach().float() for v in stats.values()])).all()
                    first_bad = torch.where(finite | (first_bad > 0), first_bad, step)
                    image_in_epoch = min(len(dataset), image_in_epoch + global_batch)
                    images_since += real_a.shape[0] * world.size
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0) + v
                    n_logged += 1
                    if step % cfg.log_every == 0 or step == total_steps:
                        now = time.perf_counter()
                        # the global batch's losses: the processes' means over equal batches, averaged
                        totals = distributed.sum_over_ranks(sums)
                        last = {k: float(v) / (n_logged * world.size) for k, v in totals.items()}
                        if cfg.stop_on_nonfinite and not all(map(math.isfinite, last.values())):
                            raise _diverged(run_dir, int(first_bad), last)
                        record = {
                            "step": step,
                            "epoch": epoch,
                            "lr": opt_g.param_groups[0]["lr"],
                            **last,
                            "images_per_s": images_since / (now - t_log),
                            "time": now - t_start,
                        }
                        if log_file is not None:
                            log_file.write(json.dumps(record) + "\n")
                            log_file.flush()
                        if bar is not None:
                            bar.set_postfix(
                                epoch=epoch,
                                **{k: f"{v:.3f}" for k, v in last.items()},
                                img_s=f"{record['images_per_s']:.2f}",
                            )
                        sums, n_logged, t_log, images_since = {}, 0, now, 0
                    if bar is not None:
                        bar.update(1)
                    if world.main and cfg.num_samples and (step % cfg.sample_every == 0 or step == total_steps):
                        (run_dir / "samples").mkdir(exist_ok=True)
                        grid = sample_grid(distributed.for_one_process(generator), val_set, cfg.num_samples, cfg.seed)
                        grid.save(run_dir / "samples" / f"step_{step:07d}.png")
                    stopping = distributed.any_rank(bool(stop_requests), device)
                    if step >= total_steps or stopping:
                        break  # a stop request ends the run cleanly after a whole step
                    if step % cfg.checkpoint_every == 0:
                        checkpoint()
                if image_in_epoch >= len(dataset):  # the epoch ran to its end
                    epoch, image_in_epoch = epoch + 1, 0
                    with warnings.catch_warnings():
                        # during an L1 warm-up D's optimiser has not stepped yet; its schedule
                        # still advances with the epochs, which is what we want
                        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                        sched_g.step()
                        if sched_d is not None:
                            sched_d.step()
                checkpoint()
                stopping = distributed.any_rank(bool(stop_requests), device)
        finally:
            _restore_signals(previous_handlers)
            if log_file is not None:
                log_file.close()
            if bar is not None:
                bar.close()
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
    return {
        "run_dir": str(run_dir),
        "step": step,
        "epoch": epoch,
        "seconds": time.perf_counter() - t_start,
        "losses": last,
        "model": str(run_dir / "model"),
        "interrupted": stopping,
        "rank": world.rank,
        "world_size": world.size,
    }


def _catch_stop_signals(requests: list[int]) -> dict[int, Any]:
    """Turn the first SIGINT / SIGTERM into a request to stop after the current step (then a
    checkpoint is written, so resuming loses nothing); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        if requests:
            raise KeyboardInterrupt
        requests.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (a killed run may have
    logged steps that will now be run again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a full disk or a crash: the step is logged again
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def _sync_model(folder: Path, generator: nn.Module, cfg: TrainConfig, step: int) -> None:
    """Make model/ hold the checkpoint's generator when a cut-short write (a full disk, a kill
    between the two files) left it at another step."""
    try:
        saved_step = json.loads((folder / "config.json").read_text()).get("step")
    except (OSError, ValueError):
        saved_step = None
    if saved_step != step:
        with _disk_full_reported(folder.parent, step):
            save_model(folder, generator, model_config(cfg.to_dict()) | {"step": step})


def _finite(*modules: nn.Module | None) -> bool:
    """Whether every weight and normalisation statistic of `modules` is finite (one host sync)."""
    tensors = [t for m in modules if m is not None for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


class TrainingDiverged(ValueError):
    """The losses became NaN or infinite; the run stopped before saving the damaged weights."""


def _diverged(run_dir: Path, first_bad: int, losses: dict[str, float]) -> TrainingDiverged:
    saved = run_dir / STATE_FILE
    kept = f"the last good checkpoint, {saved}, is kept" if saved.exists() else "no checkpoint had been written yet"
    at = f"at step {first_bad}" if first_bad else "on another process"
    shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
    return TrainingDiverged(
        f"training diverged: a loss or weight became NaN or infinite {at} ({shown}); stopped, and {kept}. "
        "Lower --lr, check the data, or pass --no-stop-on-nonfinite to train on regardless"
    )


@contextlib.contextmanager
def _disk_full_reported(run_dir: Path, step: int | None) -> Iterator[None]:
    """Turn a write that found the disk full into one message: checkpoints and model files are
    written atomically, so those of the previous checkpoint are intact. `step`: the checkpoint
    being written, if that is what failed."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = Path(err.filename) if err.filename else run_dir
        free = shutil.disk_usage(run_dir).free
        doing = f" while writing the checkpoint of step {step}" if step is not None else ""
        raise DiskFullError(
            err.errno,
            f"no space left on the device holding {where} ({free:,} bytes free){doing}; the previous "
            f"checkpoint is intact. Free some space and continue with: pix2pix train --resume {run_dir}",
        ) from None


class DiskFullError(OSError):
    """A write that found its device full; the message says what is intact and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


def config_for_resume(run_dir: str | Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with run-control overrides (e.g. a larger max_steps)."""
    state = load_state(Path(run_dir) / STATE_FILE)
    cfg = TrainConfig.from_dict(state["config"], f"{run_dir}/{STATE_FILE} config")
    bad = sorted(set(overrides) - set(RUN_CONTROL))
    if bad:
        raise RunDirError(
            f"--resume {run_dir}: cannot change {', '.join(bad)}; only {', '.join(RUN_CONTROL)} may differ"
        )
    return replace(cfg, **overrides)
