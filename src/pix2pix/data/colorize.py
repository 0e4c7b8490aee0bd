"""Colorization in CIELAB (appendix 6.2): any folder of colour photos is a dataset, L in, ab out.

The paper trains BW -> colour on ImageNet in Lab space: the generator sees the lightness L
(1 channel) and predicts the chroma ab (2 channels); the output photo is the input's L with the
predicted ab, converted back to sRGB. Normalisation to the generator's tanh range [-1, 1]:

    real_a = L / 50 - 1      L in [0, 100]
    real_b = ab / 110        a, b of sRGB colours lie within about [-87, 99] and [-108, 95]

sRGB <-> CIELAB uses the standard formulas (IEC 61966-2-1 sRGB, D65 white, CIE 1976 L*a*b*),
written here in torch so there is no extra dependency.

This module also holds the helpers for "any folder of photos" that the task datasets share
(colorization, inpainting, edges): a header check of every file, a seeded train/val split, and
writing aligned pairs (A | B) for users of other tools.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .aligned import Augment
from .color import (  # noqa: F401 - the Lab maths live in color.py; these names stay importable here
    AB_SCALE,
    L_SCALE,
    grey_image,
    image_to_l_ab,
    l_ab_to_image,
    lab_to_net,
    lab_to_rgb,
    net_to_lab,
    rgb_to_lab,
)
from .photos import PhotoDataset, write_pair_dataset


class ColorizationDataset(PhotoDataset):
    """Any folder of photos (recursively) as colorization pairs: real_a = L (1, H, W), real_b =
    ab (2, H, W), normalised as above. Grey photos are kept: their ab is zero.

    Takes the dataset contract of `make_dataset`: (folder, direction, augment, in_channels,
    out_channels); indexed with an int (no jitter) or (index, seed).
    """

    def __init__(
        self,
        folder: Path | str,
        direction: str = "AtoB",
        augment: Augment | None = None,
        in_channels: int = 1,
        out_channels: int = 2,
        check: bool = True,
    ) -> None:
        if (in_channels, out_channels) != (1, 2):
            raise ValueError(
                f"dataset_mode colorization maps L (1 channel) to ab (2 channels); got in_channels "
                f"{in_channels}, out_channels {out_channels}: pass --in-channels 1 --out-channels 2 "
                "(or --preset colorization)"
            )
        if direction != "AtoB":
            raise ValueError("dataset_mode colorization always maps L -> ab; leave direction at AtoB")
        super().__init__(folder, augment, check)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        _, path, _, photo = self.load(key)
        real_a, real_b = image_to_l_ab(photo)
        return {"real_a": real_a, "real_b": real_b, "path": str(path)}  # (1, H, W): L, (2, H, W): ab

    def render(self, image: torch.Tensor, real_a: torch.Tensor) -> Image.Image:
        """L alone renders grey; ab (predicted or real) is shown with the L of `real_a`."""
        return l_ab_to_image(real_a, image if image.shape[0] == 2 else None)


def make_colorization_dataset(src: Path | str, out: Path | str, **options) -> dict[str, int]:
    """Aligned grey | colour pairs from any folder of photos (for tools that read aligned pairs;
    pix2pix itself trains on the photos directly with dataset_mode colorization). The grey half
    is the Lab lightness L, the same signal a colorization model sees. Options: see
    `write_pair_dataset`."""
    return write_pair_dataset(src, out, grey_image, **options)
