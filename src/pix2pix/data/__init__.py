"""Datasets and preparation tools. Every training dataset yields dicts with `real_a` (the input x,
(C_in, H, W) in [-1, 1]), `real_b` (the target y, (C_out, H, W)) and `path`, is indexed with an int
(no augmentation) or with (index, seed) from EpochSampler (seeded jitter), and can `render` a
tensor of either side as an RGB image for sample grids.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from .aligned import AlignedDataset, Augment

# dataset_mode -> class; each takes (folder, direction, augment, in_channels, out_channels)
DATASETS: dict[str, type[Dataset]] = {"aligned": AlignedDataset}


def make_dataset(
    mode: str,
    folder: Path,
    direction: str = "AtoB",
    augment: Augment | None = None,
    in_channels: int = 3,
    out_channels: int = 3,
) -> Dataset:
    """The dataset of `mode` (TrainConfig.dataset_mode) over one split folder."""
    if mode not in DATASETS:
        raise ValueError(f"dataset_mode {mode!r} is not available; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[mode](folder, direction, augment, in_channels, out_channels)
