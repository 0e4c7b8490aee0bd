"""Label maps: colour label images <-> class ids, for evaluation (FCN-scores) and the demo.

Palettes ship with the package as JSON (`palettes/*.json`), one entry per label: name, id,
trainId, category, color, ignoreInEval.

- `cityscapes`: the 35 official Cityscapes labels (the public label table of cityscapesScripts).
  The 19 evaluated classes have trainId 0-18; the others map to 255, ignored.
- `facades`: the 12 classes of the CMP Facade Database (Tylecek and Sara 2013), ids 1-12 in the
  order of its label list (background, facade, window, door, cornice, sill, balcony, blind,
  deco, molding, pillar, shop), trainId = id - 1. The colours are MATLAB's jet(12) colour map,
  which the CMP label images (and so the pix2pix facades label halves) use.

The label halves of the pix2pix datasets are JPEG and were resized, so their colours are
noisy: `colors_to_ids` maps each pixel to the nearest palette colour (optionally only within
`max_distance`).

Example:
    >>> palette = load_palette("cityscapes")
    >>> ids = colors_to_ids(label_image, palette)  # doctest: +SKIP
    >>> train_ids = to_train_ids(ids, palette)  # (H, W) uint8, 0-18 or 255  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE = 255  # train id of labels that are not evaluated, and the id of unmatched pixels


@dataclass(frozen=True)
class Label:
    name: str
    id: int
    train_id: int
    category: str
    color: tuple[int, int, int]
    ignore_in_eval: bool


@dataclass(frozen=True)
class Palette:
    """A label set. Several labels may share a colour (Cityscapes: the void labels are all
    black, polegroup looks like pole, license plate like car); `color_ids` gives each distinct
    colour one id: an evaluated label first, else the smallest id."""

    name: str
    labels: tuple[Label, ...]

    @cached_property
    def colors(self) -> np.ndarray:
        """(K, 3) uint8: the distinct colours, in the order of `color_ids`."""
        return np.array([c for c, _ in self._color_table()], dtype=np.uint8).reshape(-1, 3)

    @cached_property
    def color_ids(self) -> np.ndarray:
        """(K,) uint8: the id each distinct colour maps to."""
        return np.array([i for _, i in self._color_table()], dtype=np.uint8)

    def _color_table(self) -> list[tuple[tuple[int, int, int], int]]:
        table: dict[tuple[int, int, int], Label] = {}
        for label in self.labels:
            if label.id < 0:
                continue  # e.g. Cityscapes' license plate: not a class of the label maps
            best = table.get(label.color)
            if best is None or (best.ignore_in_eval, best.id) > (label.ignore_in_eval, label.id):
                table[label.color] = label
        return [(color, label.id) for color, label in table.items()]

    @property
    def train_classes(self) -> list[str]:
        """Names of the evaluated classes, indexed by train id."""
        named = {label.train_id: label.name for label in self.labels if label.train_id not in (IGNORE, -1)}
        return [named[i] for i in range(len(named))]

    @property
    def num_classes(self) -> int:
        return len(self.train_classes)


def list_palettes() -> list[str]:
    folder = resources.files("pix2pix") / "data" / "palettes"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_palette(name: str) -> Palette:
    """A shipped palette by name ('cityscapes', 'facades') or a JSON file of the same form (a
    list of labels, or {"labels": [...]})."""
    path = Path(name)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"palette file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        shipped = resources.files("pix2pix") / "data" / "palettes" / f"{name}.json"
        if not shipped.is_file():
            raise ValueError(f"unknown palette {name!r}; shipped palettes: {', '.join(list_palettes())}")
        text, source = shipped.read_text(), f"palette {name}"
    data = json.loads(text)
    entries = data["labels"] if isinstance(data, dict) else data
    try:
        labels = tuple(
            Label(
                name=e["name"],
                id=int(e["id"]),
                train_id=int(e["trainId"]),
                category=e.get("category", ""),
                color=tuple(int(c) for c in e["color"]),
                ignore_in_eval=bool(e.get("ignoreInEval", False)),
            )
            for e in entries
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: each label needs name, id, trainId and color ({err!r})") from None
    palette_name = data.get("name", path.stem) if isinstance(data, dict) else path.stem
    return Palette(palette_name, labels)


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}")
    return array.astype(np.uint8, copy=False)


def colors_to_ids(image: Image.Image | np.ndarray, palette: Palette, max_distance: float | None = None) -> np.ndarray:
    """Colour label image (PIL or (H, W, 3) uint8) -> label ids (H, W) uint8, each pixel the id
    of the nearest palette colour (Euclidean in RGB). Pixels farther than `max_distance` from
    every palette colour get IGNORE (255)."""
    rgb = _as_rgb_array(image).astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W)
    unique, inverse = np.unique(packed.ravel(), return_inverse=True)  # JPEG: thousands, not millions
    colours = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)  # (U, 3)
    palette_colours = palette.colors.astype(np.int32)  # (K, 3)
    d2 = ((colours[:, None, :] - palette_colours[None, :, :]) ** 2).sum(-1)  # (U, K)
    nearest = d2.argmin(1)
    ids = palette.color_ids[nearest]
    if max_distance is not None:
        ids = np.where(d2[np.arange(len(unique)), nearest] > max_distance**2, IGNORE, ids).astype(np.uint8)
    return ids[inverse].reshape(packed.shape)


def ids_to_colors(ids: np.ndarray, palette: Palette) -> Image.Image:
    """Label ids (H, W) -> colour label image (RGB). Ids not in the palette are black."""
    ids = np.asarray(ids)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for label in palette.labels:
        if 0 <= label.id < 256:
            lut[label.id] = label.color
    if ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
        raise ValueError(f"label ids must be in 0-255, got {ids.min()}..{ids.max()}")
    return Image.fromarray(lut[ids.astype(np.uint8)], "RGB")


def to_train_ids(ids: np.ndarray, palette: Palette) -> np.ndarray:
    """Label ids (H, W) -> train ids (H, W) uint8: the evaluated classes 0..num_classes-1, all
    other labels (and unknown ids) IGNORE."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label in palette.labels:
        if 0 <= label.id < 256 and 0 <= label.train_id < 255 and not label.ignore_in_eval:
            lut[label.id] = label.train_id
    return lut[np.asarray(ids).astype(np.uint8)]


def train_ids_to_colors(train_ids: np.ndarray, palette: Palette) -> Image.Image:
    """Train ids (H, W) -> colour label image; IGNORE pixels are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for label in palette.labels:
        if 0 <= label.train_id < 255 and not label.ignore_in_eval:
            lut[label.train_id] = label.color
    return Image.fromarray(lut[np.asarray(train_ids).astype(np.uint8)], "RGB")
