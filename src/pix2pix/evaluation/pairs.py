"""The images of a paired test set as the scorer and the segmenter read them: a split's files,
resized photos and label ids at the scoring size, in the value ranges each side needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.aligned import split_folder
from ..data.images import list_images, to_tensor
from ..data.labels import Palette, colors_to_ids, to_train_ids


class EvaluationError(ValueError):
    pass


def resize(img: Image.Image, size: int, resample: int = Image.BICUBIC) -> Image.Image:
    return img if img.size == (size, size) else img.resize((size, size), resample)


def to_unit(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0  # (H, W, 3) in [0, 1]


def to_net(img: Image.Image) -> torch.Tensor:
    return to_tensor(img.convert("RGB"))  # (3, H, W) in [-1, 1], as in training


def label_ids(label_image: Image.Image, palette: Palette, size: int) -> np.ndarray:
    """Colour label map -> train ids (size, size) uint8: nearest palette colour at the stored
    resolution, then nearest-neighbour resizing."""
    ids = to_train_ids(colors_to_ids(label_image, palette), palette)
    return np.asarray(Image.fromarray(ids).resize((size, size), Image.NEAREST))


def list_pairs(data: str | Path, split: str) -> list[Path]:
    folder = split_folder(Path(data), split)
    files = list_images(folder)
    if not files:
        raise EvaluationError(f"{folder}: no images to evaluate")
    return files
