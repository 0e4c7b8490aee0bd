"""Paired data in the pix2pix "aligned" layout: each file holds the pair side by side, A | B.

The same random crop and flip are applied to both halves (appendix 6.2). Randomness comes from
a per-sample seed chosen by the sampler, so an epoch's data is a pure function of
(run seed, epoch): resuming mid-epoch, or changing the number of loader workers, gives the same
batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from .images import (
    ImageError,
    image_size,
    list_images,
    mode_for_channels,
    open_image,
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
    candidates = [split] if split == "train" else [*VAL_SPLITS, "train"]
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    if split == "train" or not (root / "train").is_dir():
        return root
    raise DatasetError(f"{root}: no {split}/ folder")


def check_aligned_folder(folder: Path, max_problems: int = 50) -> list[Path]:
    """Every image file in `folder`, after checking headers: unreadable files, odd widths and
    mixed sizes are all reported in one DatasetError, each line naming the file."""
    files = list_images(folder)
    if not files:
        others = [p.name for p in sorted(folder.iterdir())[:5]] if folder.is_dir() else []
        hint = f" (found only: {', '.join(others)})" if others else ""
        raise DatasetError(f"{folder}: no image files (.jpg, .png, ...){hint}")
    problems, sizes = [], {}
    for path in files:
        try:
            w, h = image_size(path)
        except ImageError as err:
            problems.append(str(err))
            continue
        if w % 2:
            problems.append(f"{path}: width {w} is odd; an aligned pair needs two equal halves")
        sizes.setdefault((w, h), path)
    if problems:
        shown = "\n  ".join(problems[:max_problems])
        more = f"\n  ... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise DatasetError(f"{folder}: {len(problems)} of {len(files)} files cannot be used:\n  {shown}{more}")
    return files


@dataclass(frozen=True)
class Augment:
    """Per-sample geometry, identical for both halves: resize, crop offset, mirror."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def __call__(self, images: list[Image.Image], generator: torch.Generator | None) -> list[Image.Image]:
        def rand(n: int) -> int:  # uniform in [0, n]
            if generator is None or n <= 0:
                return n // 2
            return int(torch.randint(0, n + 1, (1,), generator=generator))

        if self.preprocess == "resize_and_crop":
            size = (self.load_size, self.load_size)
            images = [im.resize(size, Image.BICUBIC) for im in images]
        elif self.preprocess == "resize":
            size = (self.crop_size, self.crop_size)
            images = [im.resize(size, Image.BICUBIC) for im in images]
        if self.preprocess in ("resize_and_crop", "crop"):
            w, h = images[0].size
            if w < self.crop_size or h < self.crop_size:
                raise ImageError(f"image half of {w}x{h} is smaller than crop_size {self.crop_size}")
            x, y = rand(w - self.crop_size), rand(h - self.crop_size)
            box = (x, y, x + self.crop_size, y + self.crop_size)
            images = [im.crop(box) for im in images]
        if self.flip and generator is not None and rand(1):
            images = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]
        return images


class AlignedDataset(Dataset):
    """Pairs (real_a, real_b) as tensors in [-1, 1], real_a the input x and real_b the target y.

    Index it with an int (no augmentation: centre crop, no flip, as for validation samples) or with
    (index, seed) from `EpochSampler` for the training jitter.
    """

    def __init__(
        self,
        folder: Path | str,
        direction: str = "AtoB",
        augment: Augment | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        check: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.files = check_aligned_folder(self.folder) if check else list_images(self.folder)
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        self.direction = direction
        self.augment = augment or Augment()
        self.in_mode = mode_for_channels(in_channels)
        self.out_mode = mode_for_channels(out_channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        path = self.files[index]
        left, right = split_pair(open_image(path, "RGB"), path)
        a, b = (left, right) if self.direction == "AtoB" else (right, left)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        a, b = self.augment([a, b], generator)
        return {
            "real_a": to_tensor(a.convert(self.in_mode)),  # (C_in, H, W): x
            "real_b": to_tensor(b.convert(self.out_mode)),  # (C_out, H, W): y
            "path": str(path),
        }

    def render(self, image: torch.Tensor, real_a: torch.Tensor) -> Image.Image:
        """An RGB picture of `image` (either side, (C, H, W)) for sample grids; `real_a` is the
        input it belongs to (colorization needs its L channel)."""
        return to_image(image).convert("RGB")


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) for one epoch, in a shuffled order that depends only on
    (seed, epoch); `start` skips the samples a resumed run has already seen."""

    def __init__(self, size: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True) -> None:
        self.size, self.start = size, start
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(size, generator=generator) if shuffle else torch.arange(size)
        self.seeds = torch.randint(0, 2**62, (size,), generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in range(self.start, self.size):
            yield int(self.order[i]), int(self.seeds[i])

    def __len__(self) -> int:
        return self.size - self.start
