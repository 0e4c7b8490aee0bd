"""Any folder of photos (recursively) as the source of a task dataset: colorization and
inpainting train on photos directly; edges and colorize write aligned pairs from them."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..progress import progress_bar
from .aligned import Augment, DatasetError
from .images import ImageError, image_size, list_images, open_image


class PhotoDataset(Dataset):
    """The photos under `folder` (checked up front), each loaded with the shared seeded jitter;
    subclasses turn a photo into (real_a, real_b)."""

    def __init__(self, folder: Path | str, augment: Augment | None, check: bool) -> None:
        self.folder = Path(folder)
        self.files = check_photo_folder(self.folder) if check else list_images(self.folder)
        self.augment = augment or Augment()

    def __len__(self) -> int:
        return len(self.files)

    def load(self, key: int | tuple[int, int]) -> tuple[int, Path, torch.Generator | None, Image.Image]:
        """(index, path, the sample's generator or None, the jittered RGB photo) for an int key
        (no jitter) or an (index, seed) key from EpochSampler."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        path = self.files[index]
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        (photo,) = self.augment([open_image(path, "RGB")], generator)
        return index, path, generator, photo


def check_photo_folder(folder: Path, max_problems: int = 50) -> list[Path]:
    """Every image file under `folder`, after reading each header; all unreadable files are
    reported in one DatasetError, each naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of photos")
    files = list_images(folder)
    if not files:
        others = [p.name for p in sorted(folder.iterdir())[:5]]
        hint = f" (found only: {', '.join(others)})" if others else ""
        raise DatasetError(f"{folder}: no image files (.jpg, .png, ...){hint}")
    problems = []
    for path in files:
        try:
            image_size(path)
        except ImageError as err:
            problems.append(str(err))
    if problems:
        shown = "\n  ".join(problems[:max_problems])
        more = f"\n  ... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise DatasetError(f"{folder}: {len(problems)} of {len(files)} files cannot be used:\n  {shown}{more}")
    return files


def split_files(files: list[Path], val_fraction: float, seed: int = 0) -> dict[str, list[Path]]:
    """A seeded split into {'train': [...], 'val': [...]}: round(n * val_fraction) files (at
    least one when the fraction is positive and there are two or more) go to val."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(files) * val_fraction)
    if val_fraction > 0 and len(files) >= 2:
        n_val = min(max(n_val, 1), len(files) - 1)
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return {
        "train": [f for i, f in enumerate(files) if i not in val],
        "val": [f for i, f in enumerate(files) if i in val],
    }


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` and centre-crop to size x size (0: keep as it is)."""
    if size <= 0:
        return image
    return ImageOps.fit(image, (size, size), Image.BICUBIC)


def write_pair_dataset(
    src: Path | str,
    out: Path | str,
    make_input: Callable[[Image.Image], Image.Image],
    size: int = 256,
    val_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Write the photos under `src` as aligned pairs make_input(photo) | photo (PNG) into
    out/train and out/val, keeping relative paths. Returns the number of pairs per split."""
    src, out = Path(src), Path(out)
    files = check_photo_folder(src)
    splits = split_files(files, val_fraction, seed)
    jobs = [(f, out / split / f.relative_to(src).with_suffix(".png")) for split, fs in splits.items() for f in fs]
    seen: dict[Path, Path] = {}
    for source, target in jobs:
        if target in seen:
            raise ImageError(f"{source} and {seen[target]} would both be written to {target}")
        seen[target] = source
    if not overwrite:
        existing = [t for _, t in jobs if t.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} exists ({len(existing)} pairs would be overwritten); pass --overwrite"
            )
    bar = progress_bar(len(jobs), "pairs") if progress else None
    try:
        for source, target in jobs:
            photo = fit_square(open_image(source, "RGB"), size)
            left = make_input(photo).convert("RGB")
            if left.size != photo.size:
                raise ValueError(f"{source}: input image is {left.size}, photo {photo.size}; they must match")
            pair = Image.new("RGB", (2 * photo.width, photo.height))
            pair.paste(left, (0, 0))
            pair.paste(photo, (photo.width, 0))
            target.parent.mkdir(parents=True, exist_ok=True)
            pair.save(target)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return {split: len(fs) for split, fs in splits.items()}
