"""Paired data in the pix2pix "aligned" layout: each file holds the pair side by side, A | B.

The same random crop and flip are applied to both halves (appendix 6.2). Randomness comes from
a per-sample seed chosen by the sampler, so an epoch's data is a pure function of
(run seed, epoch): resuming mid-epoch, or changing the number of loader workers, gives the same
batches.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from . import PREPROCESS
from .cache import build_memory_cache
from .check import CROPPING, Problem, Requirements, Sample, check_split, format_failure, list_samples, scale_width_size
from .images import (
    ImageError,
    Picture,
    convert_channels,
    crop_picture,
    flip_picture,
    picture_size,
    read_image,
    resize_picture,
    split_pair,
    to_image,
    to_tensor,
)

VAL_SPLITS = ("val", "test")


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message lists every problem found."""


def split_folder(root: Path, split: str) -> Path:
    """The folder of `split` under `root`; 'train' falls back to root itself when it holds images
    directly, 'val' falls back to test/, then to train/."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected a folder with train/ (and val/ or test/)")
    candidates = [split] if split == "train" else [split, *(s for s in VAL_SPLITS if s != split), "train"]
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    if split == "train" or not (root / "train").is_dir():
        return root
    raise DatasetError(f"{root}: no {split}/ folder")


def check_aligned_folder(folder: Path, max_problems: int = 50) -> list[Path]:
    """Every image file in `folder`, after checking headers: unreadable files, odd widths and
    mixed sizes are all reported in one DatasetError, each line naming the file."""
    report = check_split(Path(folder), "aligned", full=False, duplicates=False)
    if report.errors:
        raise DatasetError(format_failure(Path(folder), report, max_problems))
    return [sample.files[0] for sample in report.usable]


@dataclass(frozen=True)
class Augment:
    """Per-sample geometry, identical for both halves: a deterministic resize (which a cache may
    keep), then a random crop offset and mirror (appendix 6.2). `preprocess`, with the reference
    code's names:

    - resize_and_crop: resize to load_size x load_size, random crop_size crop (the paper's jitter)
    - crop: random crop_size crop of the image as it is
    - resize: resize to crop_size x crop_size, no crop
    - scale_width_and_crop: width to load_size keeping the aspect ratio (height at least
      crop_size), random crop_size crop
    - scale_width: width to load_size keeping the aspect ratio, the whole image trained on
    - none: the whole image as it is

    With scale_width and none the generator sees whole images, so their sides must be multiples
    of its 2**depth and a batch > 1 needs equal sizes; the dataset check reports files that are
    not (nothing is padded). Without a generator (validation) the crop is centred, no mirror.
    """

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess {self.preprocess!r}: choose one of {list(PREPROCESS)}")

    def resized_size(self, w: int, h: int) -> tuple[int, int]:
        """Size after the deterministic resize of a (w, h) image."""
        if self.preprocess == "resize_and_crop":
            return (self.load_size, self.load_size)
        if self.preprocess == "resize":
            return (self.crop_size, self.crop_size)
        if self.preprocess == "scale_width_and_crop":
            return scale_width_size(w, h, self.load_size, min_height=self.crop_size)
        if self.preprocess == "scale_width":
            return scale_width_size(w, h, self.load_size)
        return (w, h)

    def resize(self, images: Sequence[Picture]) -> list[Picture]:
        size = self.resized_size(*picture_size(images[0]))
        return [im if picture_size(im) == size else resize_picture(im, size) for im in images]

    def draw(self, w: int, h: int, generator: torch.Generator | None) -> tuple[tuple[int, int, int, int] | None, bool]:
        """The random part for one (w, h) sample: a crop box (left, top, right, bottom), None
        where this preprocess does not crop, and whether to mirror. Both the loader and the
        device cache (data/device.py) draw here, so they cut the same crops."""

        def rand(n: int) -> int:  # uniform in [0, n]
            if generator is None or n <= 0:
                return n // 2
            return int(torch.randint(0, n + 1, (1,), generator=generator))

        box = None
        if self.preprocess in CROPPING:
            if w < self.crop_size or h < self.crop_size:
                raise ImageError(f"image half of {w}x{h} is smaller than crop_size {self.crop_size}")
            x, y = rand(w - self.crop_size), rand(h - self.crop_size)
            box = (x, y, x + self.crop_size, y + self.crop_size)
        flip = bool(self.flip and generator is not None and rand(1))
        return box, flip

    def jitter(self, images: Sequence[Picture], generator: torch.Generator | None) -> list[Picture]:
        box, flip = self.draw(*picture_size(images[0]), generator)
        images = list(images)
        if box is not None:
            images = [crop_picture(im, box) for im in images]
        if flip:
            images = [flip_picture(im) for im in images]
        return images

    def __call__(self, images: Sequence[Picture], generator: torch.Generator | None) -> list[Picture]:
        return self.jitter(self.resize(images), generator)


class PairedDataset(Dataset):
    """Pairs (real_a, real_b) as tensors in [-1, 1], real_a the input x and real_b the target y;
    subclasses say how a sample's files give the A and B pictures (`layout`, `load_pair`).

    Index it with an int (no augmentation: centre crop, no flip, as for validation samples) or with
    (index, seed) from `EpochSampler` for the training jitter.

    The folder is checked (headers) when built; bad files raise one DatasetError naming each,
    or with `skip_bad` are left out and listed in `skipped`. A file that turns out truncated
    only when decoded mid-epoch raises ImageError naming it, or with `skip_bad` is replaced by
    the next sample (reported on stderr and appended to `skip_log`). `cache="memory"` decodes
    and resizes every pair once, up front (before loader workers fork, so they share it).
    """

    layout = "aligned"

    def __init__(
        self,
        folder: Path | str,
        direction: str = "AtoB",
        augment: Augment | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        check: bool = True,
        skip_bad: bool = False,
        cache: str = "none",
        size_multiple: int = 1,
        same_size: bool = False,
        skip_log: Path | None = None,
        workers: int = 0,
    ) -> None:
        self.folder = Path(folder)
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        if cache not in ("none", "memory"):
            raise ValueError(f"cache must be none or memory, got {cache!r}")
        self.direction = direction
        self.augment = augment or Augment()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.skip_bad, self.skip_log = skip_bad, skip_log
        self.skipped: list[Problem] = []
        self._failed: set[int] = set()
        if check:
            a_b = (in_channels, out_channels) if direction == "AtoB" else (out_channels, in_channels)
            need = Requirements(
                self.augment.preprocess,
                self.augment.load_size,
                self.augment.crop_size,
                size_multiple,
                same_size,
                a_b,
            )
            report = check_split(self.folder, self.layout, need, full=False, duplicates=False, workers=workers)
            if report.errors and not (skip_bad and report.usable):
                raise DatasetError(format_failure(self.folder, report))
            self.samples, self.skipped = report.usable, report.errors
        else:
            self.samples, _ = list_samples(self.folder, self.layout)
        self.cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache == "memory":
            self.cache, failed = build_memory_cache(self.prepare, self.samples, workers)
            if failed and not skip_bad:
                problems = [Problem(self.samples[i].files[0], str(err).split(": ", 1)[-1]) for i, err in failed]
                raise DatasetError(format_failure(self.folder, problems=problems, files=len(self.samples)))
            for i, err in failed:
                self.skipped.append(Problem(self.samples[i].files[0], str(err).split(": ", 1)[-1]))
            bad = {i for i, _ in failed}
            self.samples = [s for i, s in enumerate(self.samples) if i not in bad]
            self.cache = [c for i, c in enumerate(self.cache) if i not in bad]
        if not self.samples:
            raise DatasetError(f"{self.folder}: no usable pairs")

    @property
    def files(self) -> list[Path]:
        return [sample.files[0] for sample in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load_pair(self, sample: Sample) -> tuple[Picture, Picture]:
        """The A and B pictures of a sample, decoded losslessly."""
        raise NotImplementedError

    def prepare(self, sample: Sample) -> tuple[Picture, Picture]:
        """(x, y) of a sample: decoded, with the model's channels, after the deterministic resize."""
        a, b = self.load_pair(sample)
        x, y = (a, b) if self.direction == "AtoB" else (b, a)
        path = sample.files[0]
        x, y = convert_channels(x, self.in_channels, path), convert_channels(y, self.out_channels, path)
        return tuple(self.augment.resize([x, y]))

    def _prepared(self, index: int) -> tuple[Picture, Picture, Path]:
        for attempt in range(len(self.samples)):
            i = (index + attempt) % len(self.samples)
            if i in self._failed:
                continue
            sample = self.samples[i]
            if self.cache is not None:
                x, y = self.cache[i]
                return x, y, sample.files[0]
            try:
                x, y = self.prepare(sample)
                return x, y, sample.files[0]
            except ImageError as err:
                if not self.skip_bad:
                    raise
                self._skip(i, err)
        raise DatasetError(f"{self.folder}: no readable sample left")

    def _skip(self, index: int, err: ImageError) -> None:
        self._failed.add(index)
        problem = Problem(self.samples[index].files[0], str(err).split(": ", 1)[-1])
        self.skipped.append(problem)
        line = f"{problem}\n"
        if self.skip_log is not None:  # loader workers restart each epoch: report a file once
            if self.skip_log.exists() and line in self.skip_log.read_text():
                return
            with open(self.skip_log, "a") as f:
                f.write(line)
        print(f"pix2pix: skipping {problem} (--skip-bad)", file=sys.stderr, flush=True)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        x, y, path = self._prepared(index)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        try:
            x, y = self.augment.jitter([x, y], generator)
        except ImageError as err:
            raise ImageError(f"{path}: {err}") from None
        return {
            "real_a": to_tensor(x),  # (C_in, H, W): x
            "real_b": to_tensor(y),  # (C_out, H, W): y
            "path": str(path),
        }

    def render(self, image: torch.Tensor, real_a: torch.Tensor) -> Image.Image:
        """An RGB picture of `image` (either side, (C, H, W)) for sample grids; `real_a` is the
        input it belongs to (colorization needs its L channel). Beyond 3 channels the first 3
        are shown; 2 channels show the first as gray."""
        if image.shape[0] == 2:
            image = image[:1]
        elif image.shape[0] > 3:
            image = image[:3]
        return to_image(image).convert("RGB")


class AlignedDataset(PairedDataset):
    """The aligned layout: each file holds the pair side by side, A | B."""

    layout = "aligned"

    def load_pair(self, sample: Sample) -> tuple[Picture, Picture]:
        path = sample.files[0]
        return split_pair(read_image(path), path)


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) for one epoch, in a shuffled order that depends only on
    (seed, epoch); `start` skips the positions of that order a resumed run has already used.

    Several processes (`world_size` > 1, each with its own sampler) share the order: each step
    takes the next `batch_size * world_size` positions and process `rank` gets the `rank`-th
    block of `batch_size` of them, so the processes together train on the same images as one
    process with the global batch. The last global batch of an epoch is filled up from the start
    of the order (as torch's DistributedSampler pads): every process needs a batch to take part
    in the step, and equal batches weigh every image equally in the averaged gradient. A single
    process just ends the epoch on a smaller batch.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: int,
        start: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of the {world_size} processes")
        self.size, self.start = size, start
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(size, generator=generator) if shuffle else torch.arange(size)
        self.seeds = torch.randint(0, 2**62, (size,), generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.world_size == 1:
            positions: Iterator[int] = iter(range(self.start, self.size))
        else:
            step = self.batch_size * self.world_size
            first = self.rank * self.batch_size
            positions = (
                p % self.size  # past the end: padding from the start of the order
                for block in range(self.start, self.size, step)
                for p in range(block + first, block + first + self.batch_size)
            )
        for i in positions:
            yield int(self.order[i]), int(self.seeds[i])

    def __len__(self) -> int:
        left = max(0, self.size - self.start)
        if self.world_size == 1:
            return left
        return math.ceil(left / (self.batch_size * self.world_size)) * self.batch_size
