"""A small procedurally generated paired dataset, "shapes": label map -> rendered scene.

It ships as code, not files: `make_shapes_dataset(folder)` writes aligned pairs (label | photo)
that look like a miniature of the paper's labels -> photo tasks. The label map has flat class
colours; the "photo" has a sky-to-ground background, shaded spheres, striped brick blocks, trees
with a lit edge, and soft shadows. The mapping is deterministic given the labels (plus a little
texture noise), so a small U-Net learns it in a few CPU minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# class -> label colour (RGB), like a Cityscapes/facades palette
LABEL_COLOURS = {
    "ground": (128, 64, 128),
    "sky": (70, 130, 180),
    "sphere": (220, 20, 60),
    "block": (250, 170, 30),
    "tree": (107, 142, 35),
}


def _render(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (label, photo) pair, each (size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S) in [0, 1)
    horizon = rng.uniform(0.45, 0.7)
    label = np.zeros((size, size, 3), np.uint8)
    is_sky = yy < horizon
    label[is_sky] = LABEL_COLOURS["sky"]
    label[~is_sky] = LABEL_COLOURS["ground"]
    # photo background: sky brightens towards the horizon, ground darkens away from it
    t_sky = (yy / horizon)[..., None]
    sky = (1 - t_sky) * np.array([60, 110, 200]) + t_sky * np.array([200, 220, 240])
    t_ground = ((yy - horizon) / (1 - horizon))[..., None]
    ground = (1 - t_ground) * np.array([150, 140, 110]) + t_ground * np.array([80, 75, 60])
    photo = np.where(is_sky[..., None], sky, ground)
    light = np.array([-0.5, -0.7])  # light from the upper left: shading and shadows agree

    for _ in range(rng.integers(2, 5)):
        kind = rng.choice(["sphere", "block", "tree"])
        r = rng.uniform(0.08, 0.16)
        cx = rng.uniform(r, 1 - r)
        cy = rng.uniform(horizon, 1 - r * 0.5)  # objects stand on the ground
        if kind == "sphere":
            d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
            mask = d2 < 1
            nz = np.sqrt(np.clip(1 - d2, 0, 1))
            shade = np.clip(0.35 + 0.65 * (nz - light[0] * (xx - cx) / r - light[1] * (yy - cy) / r) / 2, 0, 1)
            colour = shade[..., None] * np.array([230, 60, 50]) + (shade[..., None] ** 8) * 120
        elif kind == "block":
            w, h = r * rng.uniform(0.9, 1.5), r * rng.uniform(0.9, 1.5)
            mask = (np.abs(xx - cx) < w) & (np.abs(yy - cy) < h)
            bricks = ((yy - cy) * size / 3).astype(int) % 2  # horizontal courses of bricks
            colour = (
                np.where(bricks[..., None] == 1, [200, 120, 40], [170, 95, 30])
                * (1.0 - 0.3 * ((xx - cx + w) / (2 * w)))[..., None]
            )
        else:  # tree: a triangle, lit on its left edge
            top, base = cy - 1.6 * r, cy + r
            half_width = r * (yy - top) / (base - top)
            mask = (yy > top) & (yy < base) & (np.abs(xx - cx) < half_width)
            lit = np.clip(1 - (xx - cx + half_width) / (2 * half_width + 1e-6), 0, 1)
            colour = (0.5 + 0.5 * lit)[..., None] * np.array([60, 140, 50])
        # soft shadow cast down-right onto the background, then the object over it
        dy, dx = int(0.04 * size) + 1, int(0.05 * size) + 1
        shadow = np.zeros_like(mask)
        shadow[dy:, dx:] = mask[:-dy, :-dx]
        shadow &= ~mask
        photo = np.where(shadow[..., None], photo * 0.6, photo)
        photo = np.where(mask[..., None], colour, photo)
        label[mask] = LABEL_COLOURS[kind]

    photo = photo + rng.normal(0, 4, photo.shape)  # a little sensor noise: texture D can see
    return label, np.clip(photo, 0, 255).astype(np.uint8)


def make_shapes_dataset(folder: Path | str, train: int = 400, val: int = 16, size: int = 64, seed: int = 0) -> Path:
    """Write `train` + `val` aligned pairs (label | photo, each size x size) as PNG under
    folder/train and folder/val. Deterministic in `seed`. Returns the folder."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            label, photo = _render(size, rng)
            pair = np.concatenate([label, photo], axis=1)  # (S, 2S, 3): A | B
            Image.fromarray(pair).save(folder / split / f"{i:04d}.png")
    return folder
