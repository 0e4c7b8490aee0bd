"""One typed configuration for a training run, with the paper's defaults, and the presets.

Every field is a command-line flag (`--lambda-l1`, `--receptive-field`, ...) and a key in a
preset file. Defaults are those of Isola et al. 2016 (arXiv 1611.07004v3) unless stated.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

OBJECTIVE_TERMS = ("l1", "l2", "gan", "cgan")
GENERATORS = ("unet", "resnet")
GAN_MODES = ("vanilla", "lsgan")
PREPROCESS = ("resize_and_crop", "crop", "resize", "scale_width_and_crop", "scale_width", "none")
CACHES = ("none", "memory", "device")
PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("none", "default", "max-autotune")
DIRECTIONS = ("AtoB", "BtoA")
DATASET_MODES = ("aligned", "folders", "colorization", "inpainting")
HOLES = ("center", "random")  # inpainting holes (data/inpaint.py)


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _at_least(cfg: Any, name: str, low: int, note: str = "") -> None:
    value = getattr(cfg, name)
    if value < low:
        raise ValueError(f"{name} = {value} ({_flag(name)}): must be a whole number >= {low} {note}".rstrip())


def _in_range(cfg: Any, name: str, low: float, high: float, allowed: str, low_open: bool = False) -> None:
    value = getattr(cfg, name)
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value >= high:
        raise ValueError(f"{name} = {value} ({_flag(name)}): must be {allowed}")


def opt(default: Any, help: str, **choices: Any) -> Any:
    """A config field with its help text (shown by `pix2pix train --help`)."""
    return field(default=default, metadata={"help": help, **choices})


@dataclass
class TrainConfig:
    # --- data (appendix 6.2) ---
    data: str = opt("", "dataset folder in the aligned layout (train/, val/ or test/), or builtin:shapes")
    dataset_mode: str = opt(
        "aligned",
        "aligned: each file is a pair A | B; folders: A/ and B/ matched by file name; "
        "colorization: any colour photos, L in, ab out (Lab); inpainting: photos with a hole in, whole out",
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
    workers: int = opt(2, "data loading processes (0 = in the training process)")
    skip_bad: bool = opt(
        False,
        "train without the files the dataset check finds unusable (listed in RUN_DIR/skipped.txt) instead of "
        "stopping; a file found truncated mid-epoch is replaced by the next one",
    )
    cache: str = opt(
        "none",
        "memory: decode and resize every training pair once, up front, and keep them in RAM "
        "(about 0.5 MB per pair at 286 px); device: the same, held on the training device (GPU), "
        "where each step's crop and mirror are cut, with no loader processes; none: decode every time",
        choices=CACHES,
    )
    hole: str = opt("center", "inpainting: the hole is the centre box (paper) or a box placed at random", choices=HOLES)
    hole_size: float = opt(0.5, "inpainting: the hole's side as a fraction of the image side (0.5 = 1/4 of the area)")

    # --- networks (appendix 6.1) ---
    generator: str = opt("unet", "unet (the paper's) or resnet (the reference code's)", choices=GENERATORS)
    skips: bool = opt(True, "U-Net skips; off gives the paper's encoder-decoder (Table 2)")
    unet_depth: int = opt(0, "U-Net down/up levels; 0 = log2(crop_size): 8 at 256 px, 7 at 128 px")
    resnet_blocks: int = opt(9, "residual blocks of the resnet generator (6 or 9 in the reference code)")
    g_channels: int = opt(64, "generator filters in the first layer (ngf, appendix 6.1)")
    d_channels: int = opt(64, "discriminator filters in the first layer (ndf, appendix 6.1)")
    norm: str = opt("batch", "normalisation: batch (paper), instance or none", choices=("batch", "instance", "none"))
    dropout: float = opt(0.5, "dropout in the first 3 decoder levels, the noise z (section 3.1)")
    innermost_norm: bool = opt(False, "normalise the 1x1 bottleneck as published; the paper's errata removes it")
    receptive_field: int = opt(70, "PatchGAN receptive field: 1 (PixelGAN), 16, 70 (paper), 286 (ImageGAN); Table 3")

    # --- objective (section 3.1, Table 1) ---
    objective: str = opt(
        "l1+cgan",
        "terms joined by '+': l1, l2, gan (unconditional D) or cgan (D sees the input); "
        "Table 1 rows: l1, gan, cgan, l1+gan, l1+cgan",
    )
    lambda_l1: float = opt(100.0, "weight of the reconstruction term(s), lambda in eq. 4")
    gan_mode: str = opt("vanilla", "vanilla (the paper's log loss, non-saturating G) or lsgan", choices=GAN_MODES)

    # --- optimisation (section 3.3) ---
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
    max_steps: int = opt(0, "stop after this many steps (0: run the whole schedule)")
    seed: int = opt(0, "seed of weights, data order, jitter and dropout")
    deterministic: bool = opt(
        False, "bitwise-reproducible runs: deterministic algorithms; on the CPU one intra-op thread (slower)"
    )
    device: str = opt("auto", "auto (cuda if present), cpu, cuda, cuda:N")
    sync_batchnorm: bool = opt(
        False,
        "with several processes (torchrun), BatchNorm over the global batch instead of each process's own "
        "images. Off by default: at batch 1 per process, BatchNorm on its own is the paper's instance "
        "normalisation (section 3.3), which syncing would turn into BatchNorm over the processes' images",
    )

    # --- speed (none of these is in the paper; the defaults are plain float32, eager) ---
    precision: str = opt(
        "fp32",
        "fp32, or bf16: the forward passes of G and D under bfloat16 autocast (weights, Adam and "
        "the losses stay float32). Fast on GPUs with bf16 tensor cores; slower on CPUs without AMX",
        choices=PRECISIONS,
    )
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

    # --- run bookkeeping ---
    stop_on_nonfinite: bool = opt(
        True, "stop with an error at the first NaN or infinite loss (the last good checkpoint is kept)"
    )
    log_every: int = opt(10, "steps between JSONL log lines")
    sample_every: int = opt(500, "steps between sample grids (input | output | target) of fixed val images")
    num_samples: int = opt(4, "validation images in each sample grid")
    checkpoint_every: int = opt(500, "steps between checkpoints (also written at each epoch end and at the end)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse any value that would fail later or train nonsense, before anything is
        written: one message naming the option, its value and what is allowed."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} = {getattr(self, f.name)!r}: choose one of {list(choices)}")
        parse_objective(self.objective)
        if self.receptive_field not in (1, 16, 34, 70, 142, 286):
            raise ValueError(f"receptive_field = {self.receptive_field}: choose one of 1, 16, 34, 70, 142, 286")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            raise ValueError(f"load_size {self.load_size} is smaller than crop_size {self.crop_size}")
        for name in ("batch_size", "crop_size", "load_size", "in_channels", "out_channels", "g_channels", "d_channels"):
            _at_least(self, name, 1)
        for name in ("log_every", "sample_every", "checkpoint_every"):
            _at_least(self, name, 1, "(steps between them)")
        for name in ("epochs", "epochs_decay", "l1_warmup_epochs", "max_steps", "workers", "num_samples", "seed"):
            _at_least(self, name, 0)
        if self.epochs + self.epochs_decay + self.l1_warmup_epochs < 1:
            raise ValueError(
                f"epochs = {self.epochs}, epochs_decay = {self.epochs_decay}: a run needs at least one epoch "
                "(--epochs N --epochs-decay M with N + M >= 1)"
            )
        _in_range(self, "lr", 0.0, math.inf, "a finite number > 0 (the paper's is 2e-4)", low_open=True)
        _in_range(self, "beta1", 0.0, 1.0, "in [0, 1) (the paper's is 0.5)")
        _in_range(self, "beta2", 0.0, 1.0, "in [0, 1) (the paper's is 0.999)")
        _in_range(self, "lambda_l1", 0.0, math.inf, "a finite number >= 0 (the paper's is 100)")
        _at_least(self, "unet_depth", 0, "(0: log2(crop_size))")
        _at_least(self, "resnet_blocks", 0)
        if self.generator == "unet" and self.unet_depth and self.preprocess not in ("none", "scale_width"):
            multiple = 2**self.unet_depth
            if self.crop_size % multiple:
                most = (self.crop_size & -self.crop_size).bit_length() - 1  # the largest d with 2**d | crop_size
                raise ValueError(
                    f"unet_depth = {self.unet_depth}: a {self.unet_depth}-level U-Net needs sides that are "
                    f"multiples of 2**{self.unet_depth} = {multiple}, and crop_size is {self.crop_size}; "
                    f"use unet_depth <= {most} (0 picks log2(crop_size)) or a larger crop_size"
                )
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device = {self.device!r} (--device): choose auto, cpu, cuda, cuda:N or mps")
        if self.innermost_norm and self.norm == "instance" and self.generator == "unet":
            raise ValueError(
                "innermost_norm with instance norm cannot work: the bottleneck is 1x1 (the errata's reason)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cuda_graphs and self.compile == "none":
            raise ValueError("cuda_graphs needs compile (e.g. --compile default --cuda-graphs)")
        if not 0.0 < self.hole_size < 1.0:
            raise ValueError(f"hole_size must be in (0, 1), a fraction of the image side, got {self.hole_size}")

    @property
    def depth(self) -> int:
        """U-Net levels: as given, else the number that brings crop_size to 1x1."""
        if self.unet_depth:
            return self.unet_depth
        from .networks import unet_depth_for_size

        return unet_depth_for_size(self.crop_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}")
        for key, value in values.items():
            expected = type(known[key].default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"{source}: {key} = {value!r} should be a {expected.__name__}")
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


@dataclass(frozen=True)
class Objective:
    """Which terms G is trained with. adversarial: None (no D at all), 'gan' or 'cgan'."""

    l1: bool
    l2: bool
    adversarial: str | None

    @property
    def conditional(self) -> bool:
        return self.adversarial == "cgan"


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


# --- presets: TOML files shipped in pix2pix/presets, keys are TrainConfig fields ---


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
