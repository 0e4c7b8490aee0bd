"""One typed configuration for a training run, with the paper's defaults, and the presets.

`TrainConfig` is nested by what each part configures: `data`, `generator`, `discriminator`,
`loss`, `optim`, `speed` and `run`. Its flat form, one key per option, is what users write and
what files hold: every key is a command-line flag (`lambda_l1` is `--lambda-l1`), a key in a
preset file, and a key of a run's `config.json` and checkpoint. Defaults are those of Isola et
al., CVPR 2017 (arXiv 1611.07004v3) unless stated.

A resumed run may change the `speed` and `run` sections (how, where and for how long it runs),
never the others (what it computes).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from .data import PREPROCESS

OBJECTIVE_TERMS = ("l1", "l2", "gan", "cgan")
GENERATORS = ("unet", "resnet", "resnet18-unet")
# sides must be multiples of this: the U-Net's is 2**depth, the others' are fixed by their strides
FIXED_SIZE_MULTIPLES = {"resnet": 4, "resnet18-unet": 32}


def size_multiple(architecture: str, unet_depth: int) -> int:
    """What input sides must be multiples of, for a generator of `architecture`."""
    return FIXED_SIZE_MULTIPLES.get(architecture, 2**unet_depth)


def unet_depth_for_size(size: int) -> int:
    """Number of down/up levels so that a `size` px image reaches 1x1 at the bottleneck.

    Example: ``unet_depth_for_size(256) == 8``, ``unet_depth_for_size(128) == 7``.
    """
    if size < 2 or size & (size - 1):
        raise ValueError(f"U-Net size must be a power of two >= 2, got {size}")
    return int(math.log2(size))


NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
CACHES = ("none", "memory", "device")
PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("none", "default", "max-autotune")
DIRECTIONS = ("AtoB", "BtoA")
DATASET_MODES = ("aligned", "folders", "colorization", "inpainting")
HOLES = ("center", "random")  # inpainting holes (data/inpaint.py)
DROPOUT_PLACEMENTS = ("paper", "reference")
RECEPTIVE_FIELDS = (1, 16, 34, 70, 142, 286)
EVAL_TASKS = ("auto", "photo2label", "label2photo", "image")  # pix2pix evaluate --task
VAL_TASKS = ("auto", "image", "label2photo", "photo2label")  # validation during training (training/validation.py)
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def opt(default: Any, help: str, flat: str | None = None, **choices: Any) -> Any:
    """A config field with its help text (shown by `pix2pix train --help`) and, where it differs
    from the field's name, its flat key (the flag and the key in files)."""
    return field(default=default, metadata={"help": help, "flat": flat, **choices})


def flat_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flat") or f.name


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class Section:
    """A group of options; each checks its own values (named by their flat keys) on creation."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{flat_name(f)} = {getattr(self, f.name)!r}: choose one of {list(choices)}")
        self.validate()

    def validate(self) -> None:
        """Refuse values that would fail later or train nonsense (before anything is written)."""

    def _at_least(self, name: str, low: int, note: str = "") -> None:
        key = flat_name(next(f for f in dataclasses.fields(self) if f.name == name))
        value = getattr(self, name)
        if value < low:
            raise ValueError(f"{key} = {value} ({_flag(key)}): must be a whole number >= {low} {note}".rstrip())

    def _in_range(self, name: str, low: float, high: float, allowed: str, low_open: bool = False) -> None:
        value = getattr(self, name)
        below = value <= low if low_open else value < low
        if not math.isfinite(value) or below or value >= high:
            raise ValueError(f"{name} = {value} ({_flag(name)}): must be {allowed}")


MAX_SEED = 2**32 - 1  # the largest --seed


@dataclass(frozen=True)
class DataConfig(Section):
    """What the pairs are and how each is cut for a step (appendix 6.2)."""

    mode: str = opt(
        "aligned",
        "aligned: each file is a pair A | B; folders: A/ and B/ matched by file name; "
        "colorization: any colour photos, L in, ab out (Lab); inpainting: photos with a hole in, whole out",
        flat="dataset_mode",
        choices=DATASET_MODES,
    )
    direction: str = opt("AtoB", "AtoB: left half -> right half; BtoA: right -> left", choices=DIRECTIONS)
    in_channels: int = opt(3, "channels of the input image x (1 for grayscale / L of Lab)")
    out_channels: int = opt(3, "channels of the output image y (2 for ab of Lab, colorization)")
    preprocess: str = opt(
        "resize_and_crop",
        "resize_and_crop: resize to load_size then random crop to crop_size (the paper's random jitter); "
        "crop: random crop only; resize: resize to crop_size (no jitter); scale_width_and_crop: width to "
        "load_size keeping the aspect ratio, then random crop; scale_width: width to load_size, whole image; "
        "none: whole image as it is (scale_width, none: sides must be multiples of 2**unet_depth)",
        choices=PREPROCESS,
    )
    load_size: int = opt(286, "random jitter: resize 256 -> 286 ... (appendix 6.2)")
    crop_size: int = opt(256, "... then random crop back to 256 (appendix 6.2)")
    flip: bool = opt(True, "random mirroring, the same for input and target (appendix 6.2)")
    skip_bad: bool = opt(
        False,
        "train without the files the dataset check finds unusable (listed in RUN_DIR/skipped.txt) instead of "
        "stopping; a file found truncated mid-epoch is replaced by the next one",
    )
    hole: str = opt("center", "inpainting: the hole is the centre box (paper) or a box placed at random", choices=HOLES)
    hole_size: float = opt(0.5, "inpainting: the hole's side as a fraction of the image side (0.5 = 1/4 of the area)")

    @property
    def crops(self) -> bool:
        """Whether every training image is cut to crop_size (else whole images of any size)."""
        return self.preprocess not in ("none", "scale_width")

    def validate(self) -> None:
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            raise ValueError(f"load_size {self.load_size} is smaller than crop_size {self.crop_size}")
        for name in ("crop_size", "load_size", "in_channels", "out_channels"):
            self._at_least(name, 1)
        if not 0.0 < self.hole_size < 1.0:
            raise ValueError(f"hole_size must be in (0, 1), a fraction of the image side, got {self.hole_size}")


@dataclass(frozen=True)
class GeneratorConfig(Section):
    """G (section 3.2.1, appendix 6.1.1)."""

    architecture: str = opt(
        "unet",
        "unet (the paper's), resnet (the reference code's) or resnet18-unet (seed 003's enhanced colorization: "
        "a U-Net on a ResNet-18 encoder; sides multiples of 32)",
        flat="generator",
        choices=GENERATORS,
    )
    skips: bool = opt(True, "U-Net skips; off gives the paper's encoder-decoder (Table 2)")
    unet_depth: int = opt(0, "U-Net down/up levels; 0 = log2(crop_size): 8 at 256 px, 7 at 128 px")
    resnet_blocks: int = opt(9, "residual blocks of the resnet generator (6 or 9 in the reference code)")
    channels: int = opt(64, "generator filters in the first layer (ngf, appendix 6.1)", flat="g_channels")
    norm: str = opt("batch", "normalisation of G and D: batch (paper), instance or none", choices=NORMS)
    dropout: float = opt(0.5, "dropout in 3 decoder levels, the noise z (section 3.1)")
    dropout_placement: str = opt(
        "paper",
        "which decoder levels have dropout: paper (the 3 nearest the bottleneck, as the paper and its Lua "
        "code) or reference (the PyTorch reference code's: one level further out, 2 levels at 128 px)",
        choices=DROPOUT_PLACEMENTS,
    )
    innermost_norm: bool = opt(False, "normalise the 1x1 bottleneck as published; the paper's errata removes it")
    encoder_weights: str = opt(
        "",
        "resnet18-unet: a torchvision-format ResNet-18 state dict (.pth, read with weights_only, or "
        ".safetensors) for its encoder, e.g. torchvision's ImageNet resnet18-f37072fd.pth (seed 003); "
        "empty: the encoder starts from the paper's N(0, 0.02) init. Never downloaded",
    )
    encoder_sha256: str = opt("", "SHA-256 of the encoder_weights file, recorded when a run starts (not a setting)")

    def validate(self) -> None:
        self._at_least("channels", 1)
        self._at_least("unet_depth", 0, "(0: log2(crop_size))")
        self._at_least("resnet_blocks", 0)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.encoder_weights and self.architecture != "resnet18-unet":
            raise ValueError(
                "encoder_weights is for --generator resnet18-unet (a ResNet-18 encoder); "
                f"this run's generator is {self.architecture}"
            )
        if self.encoder_weights and self.channels != 64:
            raise ValueError(f"encoder_weights: ResNet-18 weights need g_channels 64, not {self.channels}")
        if self.innermost_norm and self.norm == "instance" and self.architecture == "unet":
            raise ValueError(
                "innermost_norm with instance norm cannot work: the bottleneck is 1x1 (the errata's reason)"
            )


@dataclass(frozen=True)
class DiscriminatorConfig(Section):
    """D, the PatchGAN (appendix 6.1.2). It is normalised like G (`generator.norm`: one --norm
    for both, as in the paper's code)."""

    channels: int = opt(64, "discriminator filters in the first layer (ndf, appendix 6.1)", flat="d_channels")
    receptive_field: int = opt(70, "PatchGAN receptive field: 1 (PixelGAN), 16, 70 (paper), 286 (ImageGAN); Table 3")
    leaky_slope: float = opt(0.2, "negative slope of D's LeakyReLUs (appendix 6.1: 0.2; seed 003 uses 0.01)")

    def validate(self) -> None:
        self._at_least("channels", 1)
        self._in_range("leaky_slope", 0.0, 1.0, "in [0, 1) (the paper's is 0.2)")
        if self.receptive_field not in RECEPTIVE_FIELDS:
            raise ValueError(f"receptive_field = {self.receptive_field}: choose one of 1, 16, 34, 70, 142, 286")


@dataclass(frozen=True)
class LossConfig(Section):
    """The objective (section 3.1, Table 1)."""

    objective: str = opt(
        "l1+cgan",
        "terms joined by '+': l1, l2, gan (unconditional D) or cgan (D sees the input); "
        "Table 1 rows: l1, gan, cgan, l1+gan, l1+cgan",
    )
    lambda_l1: float = opt(100.0, "weight of the reconstruction term(s), lambda in eq. 4")
    gan_mode: str = opt("vanilla", "vanilla (the paper's log loss, non-saturating G) or lsgan", choices=GAN_MODES)

    @property
    def terms(self) -> Objective:
        return parse_objective(self.objective)

    def validate(self) -> None:
        parse_objective(self.objective)
        self._in_range("lambda_l1", 0.0, math.inf, "a finite number >= 0 (the paper's is 100)")


@dataclass(frozen=True)
class OptimConfig(Section):
    """How the weights are updated (section 3.3, appendix 6.2), and in what arithmetic."""

    lr: float = opt(2e-4, "Adam learning rate (section 3.3)")
    beta1: float = opt(0.5, "Adam beta1 (section 3.3)")
    beta2: float = opt(0.999, "Adam beta2 (section 3.3)")
    batch_size: int = opt(
        1,
        "images per step in each process (torchrun: the global batch is batch_size x processes); "
        "1 for most experiments, 4 or 10 for some (appendix 6.2)",
    )
    epochs: int = opt(100, "epochs at the initial learning rate (reference code: 100 + 100 = 200)")
    epochs_decay: int = opt(100, "epochs of linear decay of the learning rate to zero")
    l1_warmup_epochs: int = opt(0, "epochs of reconstruction-only generator training before the adversarial phase")
    l1_warmup_lr: float = opt(0.0, "learning rate of G during the L1 warm-up; 0: the same as lr")
    seed: int = opt(0, "seed of weights, data order, jitter and dropout")
    deterministic: bool = opt(
        False, "bitwise-reproducible runs: deterministic algorithms; on the CPU one intra-op thread (slower)"
    )
    sync_batchnorm: bool = opt(
        False,
        "with several processes (torchrun), BatchNorm over the global batch instead of each process's own "
        "images. Off by default: at batch 1 per process, BatchNorm on its own is the paper's instance "
        "normalisation (section 3.3), which syncing would turn into BatchNorm over the processes' images",
    )
    # here, not under speed: bf16 changes what is computed, so a resumed run keeps it
    precision: str = opt(
        "fp32",
        "fp32, or bf16: the forward passes of G and D under bfloat16 autocast (weights, Adam and "
        "the losses stay float32). Fast on GPUs with bf16 tensor cores; slower on CPUs without AMX",
        choices=PRECISIONS,
    )

    @property
    def total_epochs(self) -> int:
        return self.l1_warmup_epochs + self.epochs + self.epochs_decay

    def validate(self) -> None:
        self._at_least("batch_size", 1)
        for name in ("epochs", "epochs_decay", "l1_warmup_epochs", "seed"):
            self._at_least(name, 0)
        if self.seed > MAX_SEED:  # the data order's seed is seed * 1,000,003 + epoch, within 64 bits
            raise ValueError(f"seed = {self.seed} (--seed): must be a whole number from 0 to 2**32 - 1 ({MAX_SEED})")
        if self.total_epochs < 1:
            raise ValueError(
                f"epochs = {self.epochs}, epochs_decay = {self.epochs_decay}: a run needs at least one epoch "
                "(--epochs N --epochs-decay M with N + M >= 1)"
            )
        self._in_range("lr", 0.0, math.inf, "a finite number > 0 (the paper's is 2e-4)", low_open=True)
        self._in_range("beta1", 0.0, 1.0, "in [0, 1) (the paper's is 0.5)")
        self._in_range("beta2", 0.0, 1.0, "in [0, 1) (the paper's is 0.999)")
        self._in_range("l1_warmup_lr", 0.0, math.inf, "a finite number >= 0 (0: the same as lr)")


@dataclass(frozen=True)
class SpeedConfig(Section):
    """How fast the same arithmetic runs (none of it is in the paper; the defaults are plain
    float32, eager). Float rounding may differ, as between devices; may change on resume."""

    channels_last: bool = opt(False, "G, D and the batches in channels-last memory layout (NHWC), for tensor cores")
    compile: str = opt(
        "none",
        "torch.compile G and D for training: default, or max-autotune (longer compile, tuned kernels); "
        "the first steps take the compile time",
        choices=COMPILE_MODES,
    )
    cuda_graphs: bool = opt(
        False,
        "with --compile, replay each step's kernels as CUDA graphs (torch.compile's reduce-overhead): "
        "for batch 1 on a GPU, where launching the kernels takes longer than running them",
    )
    cache: str = opt(
        "none",
        "memory: decode and resize every training pair once, up front, and keep them in RAM "
        "(about 0.5 MB per pair at 286 px); device: the same, held on the training device (GPU), "
        "where each step's crop and mirror are cut, with no loader processes; none: decode every time",
        choices=CACHES,
    )

    def validate(self) -> None:
        if self.cuda_graphs and self.compile == "none":
            raise ValueError("cuda_graphs needs compile (e.g. --compile default --cuda-graphs)")


@dataclass(frozen=True)
class RunConfig(Section):
    """Where the data are, where and for how long this process trains, and what it writes down;
    may change on resume."""

    data: str = opt("", "dataset folder in the aligned layout (train/, val/ or test/), or builtin:shapes")
    device: str = opt("auto", "auto (cuda if present), cpu, cuda, cuda:N")
    workers: int = opt(2, "data loading processes (0 = in the training process)")
    max_steps: int = opt(0, "stop after this many steps (0: run the whole schedule)")
    log_every: int = opt(10, "steps between JSONL log lines")
    sample_every: int = opt(500, "steps between sample grids (input | output | target) of fixed val images")
    num_samples: int = opt(4, "validation images in each sample grid")
    checkpoint_every: int = opt(500, "steps between checkpoints (also written at each epoch end and at the end)")
    stop_on_nonfinite: bool = opt(
        True, "stop with an error at the first NaN or infinite loss (the last good checkpoint is kept)"
    )
    val_every: int = opt(0, "steps between validations of a fixed subset of the val split (0: none)")
    val_images: int = opt(32, "validation pairs scored each time: the first of the val split, the same each time")
    val_task: str = opt(
        "auto",
        "what validation scores besides L1 / PSNR / SSIM: label2photo adds FCN-scores (needs --segmenter), "
        "photo2label the outputs read as Cityscapes labels; auto: label2photo with --segmenter, else image",
        choices=VAL_TASKS,
    )
    segmenter: str = opt("", "FCN-score segmenter (pix2pix evaluate train-segmenter) for label2photo validation")
    snapshot_every: int = opt(0, "steps between snapshots/step_N/ model folders (0: none)")
    keep_snapshots: int = opt(0, "snapshots kept, the oldest removed first (0: all)")
    best_metric: str = opt(
        "", "a validation metric (val_psnr, val_fcn_class_iou, val_l1, ...): model-best/ holds the weights at its best"
    )
    tensorboard: bool = opt(False, "TensorBoard event files in RUN/tensorboard/ (needs the tensorboard extra)")
    val_perceptual: str = opt(
        "",
        "also these of fid, kid, lpips in each validation (comma-separated: val_fid, val_kid, val_lpips); they "
        "need the standard weight files in $PIX2PIX_WEIGHTS or ~/.cache/pix2pix/weights (see pix2pix evaluate)",
    )
    wandb: str = opt(
        "", "log to this Weights & Biases project too (needs wandb; offline with WANDB_MODE=offline); empty: off"
    )

    def validate(self) -> None:
        for name in ("log_every", "sample_every", "checkpoint_every", "val_images"):
            self._at_least(name, 1, "(steps between them)" if name.endswith("every") else "")
        for name in ("max_steps", "workers", "num_samples", "val_every", "snapshot_every", "keep_snapshots"):
            self._at_least(name, 0)
        if self.best_metric and not self.val_every:
            raise ValueError(f"best_metric = {self.best_metric!r} (--best-metric): needs --val-every N > 0")
        if self.best_metric and not self.best_metric.startswith("val_"):
            raise ValueError(
                f"best_metric = {self.best_metric!r} (--best-metric): a validation metric, e.g. val_psnr, "
                "val_eval_l1 or val_fcn_class_iou"
            )
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device = {self.device!r} (--device): choose auto, cpu, cuda, cuda:N or mps")
        unknown = [m for m in self.perceptual if m not in ("fid", "kid", "lpips")]
        if unknown:
            raise ValueError(
                f"val_perceptual = {self.val_perceptual!r} (--val-perceptual): choose among fid, kid, lpips"
            )
        if self.perceptual and not self.val_every:
            raise ValueError("val_perceptual (--val-perceptual): needs --val-every N > 0")

    @property
    def perceptual(self) -> tuple[str, ...]:
        """The perceptual metrics of each validation, in the order given."""
        return tuple(dict.fromkeys(m.strip() for m in self.val_perceptual.split(",") if m.strip()))


SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "speed": SpeedConfig,
    "run": RunConfig,
}
# flat key -> (section, field name) and the field itself
FLAT_KEYS: dict[str, tuple[str, str]] = {
    flat_name(f): (section, f.name) for section, kind in SECTIONS.items() for f in dataclasses.fields(kind)
}
FIELDS: dict[str, dataclasses.Field] = {flat_name(f): f for kind in SECTIONS.values() for f in dataclasses.fields(kind)}
# the order of the keys in files (that of the flat configuration before the sections existed)
FILE_ORDER = (
    "data",
    "dataset_mode",
    "direction",
    "in_channels",
    "out_channels",
    "preprocess",
    "load_size",
    "crop_size",
    "flip",
    "workers",
    "skip_bad",
    "cache",
    "hole",
    "hole_size",
    "generator",
    "skips",
    "unet_depth",
    "resnet_blocks",
    "g_channels",
    "d_channels",
    "norm",
    "dropout",
    "dropout_placement",
    "innermost_norm",
    "receptive_field",
    "objective",
    "lambda_l1",
    "gan_mode",
    "lr",
    "beta1",
    "beta2",
    "batch_size",
    "epochs",
    "epochs_decay",
    "l1_warmup_epochs",
    "max_steps",
    "seed",
    "deterministic",
    "device",
    "sync_batchnorm",
    "precision",
    "channels_last",
    "compile",
    "cuda_graphs",
    "stop_on_nonfinite",
    "log_every",
    "sample_every",
    "num_samples",
    "checkpoint_every",
    "val_every",
    "val_images",
    "val_task",
    "segmenter",
    "snapshot_every",
    "keep_snapshots",
    "best_metric",
    "tensorboard",
    "encoder_weights",
    "encoder_sha256",
    "leaky_slope",
    "l1_warmup_lr",
    "wandb",
    "val_perceptual",
)
assert sorted(FILE_ORDER) == sorted(FLAT_KEYS), "every flat key has its place in files"


@dataclass(frozen=True)
class TrainConfig:
    """The whole configuration of a run, section by section.

    Example:
        >>> cfg = TrainConfig.from_dict({"data": "builtin:shapes", "crop_size": 64, "load_size": 72})
        >>> cfg.data.crop_size, cfg.depth, cfg.to_dict()["crop_size"]
        (64, 6, 64)
    """

    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    run: RunConfig = field(default_factory=RunConfig)

    RESUMABLE: ClassVar[tuple[str, ...]] = ("speed", "run")

    def __post_init__(self) -> None:
        # checks across sections: the U-Net's depth against the image size
        if self.generator.architecture == "unet" and self.generator.unet_depth and self.data.crops:
            depth, size = self.generator.unet_depth, self.data.crop_size
            if size % 2**depth:
                most = (size & -size).bit_length() - 1  # the largest d with 2**d | crop_size
                raise ValueError(
                    f"unet_depth = {depth}: a {depth}-level U-Net needs sides that are multiples of "
                    f"2**{depth} = {2**depth}, and crop_size is {size}; use unet_depth <= {most} "
                    "(0 picks log2(crop_size)) or a larger crop_size"
                )
        if self.generator.architecture == "resnet18-unet" and self.data.crops and self.data.crop_size % 32:
            raise ValueError(
                f"crop_size = {self.data.crop_size}: the resnet18-unet generator needs sides that are multiples "
                "of 32 (five stride-2 stages); use 128, 256, ..."
            )

    @property
    def depth(self) -> int:
        """U-Net levels: as given, else the number that brings crop_size to 1x1."""
        if self.generator.unet_depth:
            return self.generator.unet_depth
        return unet_depth_for_size(self.data.crop_size)

    def to_dict(self) -> dict[str, Any]:
        """The flat form, in file order: what config.json and checkpoints hold."""
        return {key: getattr(getattr(self, FLAT_KEYS[key][0]), FLAT_KEYS[key][1]) for key in FILE_ORDER}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """From flat keys (a preset, flags, a saved config.json); missing keys keep their defaults."""
        unknown = sorted(set(values) - set(FLAT_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FILE_ORDER)}")
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in values.items():
            section, name = FLAT_KEYS[key]
            expected = type(FIELDS[key].default)
            # an int where a float goes is kept as written (1 and 1.0 name the same run)
            int_for_float = expected is float and isinstance(value, int) and not isinstance(value, bool)
            if not int_for_float and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
                raise ValueError(f"{source}: {key} = {value!r} should be a {expected.__name__}")
            sections[section][name] = value
        try:
            return cls(**{name: SECTIONS[name](**kwargs) for name, kwargs in sections.items()})
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def replace(self, source: str = "config", **flat: Any) -> TrainConfig:
        """A copy with some flat keys changed (and checked)."""
        return TrainConfig.from_dict({**self.to_dict(), **flat}, source)

    def fixed_changes(self, other: TrainConfig) -> list[str]:
        """Flat keys outside the resumable sections whose values differ from `other`'s."""
        ours, theirs = self.to_dict(), other.to_dict()
        return [k for k in FILE_ORDER if FLAT_KEYS[k][0] not in self.RESUMABLE and ours[k] != theirs[k]]


def resumable_keys() -> list[str]:
    """The flat keys a resumed run may change."""
    return [k for k in FILE_ORDER if FLAT_KEYS[k][0] in TrainConfig.RESUMABLE]


@dataclass(frozen=True)
class Objective:
    """Which terms G is trained with. adversarial: None (no D at all), 'gan' or 'cgan'."""

    l1: bool
    l2: bool
    adversarial: str | None

    @property
    def conditional(self) -> bool:
        return self.adversarial == "cgan"

    def reconstruction_only(self) -> Objective:
        """The same reconstruction terms without D, for an L1 warm-up (L1 when there are none)."""
        return Objective(self.l1 or not self.l2, self.l2, None)


def parse_objective(name: str) -> Objective:
    """'l1+cgan' -> Objective(l1=True, l2=False, adversarial='cgan'). Table 1 names all parse."""
    terms = [t.strip().lower() for t in name.split("+")]
    bad = [t for t in terms if t not in OBJECTIVE_TERMS]
    if bad or not terms or len(set(terms)) != len(terms):
        raise ValueError(f"objective {name!r}: use terms from {OBJECTIVE_TERMS} joined by '+', e.g. l1+cgan")
    if "gan" in terms and "cgan" in terms:
        raise ValueError(f"objective {name!r}: choose gan (unconditional) or cgan (conditional), not both")
    adversarial = "cgan" if "cgan" in terms else "gan" if "gan" in terms else None
    return Objective(l1="l1" in terms, l2="l2" in terms, adversarial=adversarial)


# --- presets: TOML files shipped in pix2pix/presets, keys are flat TrainConfig keys ---


def list_presets() -> list[str]:
    folder = resources.files("pix2pix") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Preset values by shipped name (`cityscapes_label2photo`) or by path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.is_file():
            raise FileNotFoundError(f"preset file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        shipped = resources.files("pix2pix") / "presets" / f"{name_or_path}.toml"
        if not shipped.is_file():
            raise ValueError(f"unknown preset {name_or_path!r}; shipped presets: {', '.join(list_presets())}")
        text, source = shipped.read_text(), f"preset {name_or_path}"
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from None
    values.pop("description", None)
    values.pop("paper", None)
    TrainConfig.from_dict(values, source)  # report a bad key or type now, naming the file
    return values
