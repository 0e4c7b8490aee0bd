"""The training datasets by `dataset_mode`, and how a run's data section configures them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .aligned import AlignedDataset, Augment
from .colorize import ColorizationDataset
from .folders import FoldersDataset
from .inpaint import InpaintingDataset

# dataset_mode -> class; each takes (folder, direction, augment, in_channels, out_channels)
DATASETS: dict[str, type[Dataset]] = {
    "aligned": AlignedDataset,
    "folders": FoldersDataset,  # A/ and B/ matched by file name
    "colorization": ColorizationDataset,  # any photos: L -> ab in Lab
    "inpainting": InpaintingDataset,  # any photos: with a hole -> whole
}
# TrainConfig fields that a mode takes beyond those five, passed on as keyword arguments
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {"inpainting": ("hole", "hole_size")}


def make_dataset(
    mode: str,
    folder: Path,
    direction: str = "AtoB",
    augment: Augment | None = None,
    in_channels: int = 3,
    out_channels: int = 3,
    **options: Any,
) -> Dataset:
    """The dataset of `mode` (TrainConfig.dataset_mode) over one split folder; `options` are the
    mode's own settings (DATASET_OPTIONS, e.g. inpainting's hole and hole_size)."""
    if mode not in DATASETS:
        raise ValueError(f"dataset_mode {mode!r} is not available; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[mode](folder, direction, augment, in_channels, out_channels, **options)
